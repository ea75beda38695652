"""Judging what a submitted generative model draws (``draw(n, seed=...)``: the GANs, the diffusion
models) again, as its recipe judged it: as many images, drawn with the run's seed, the same numbers.
"""

from __future__ import annotations

from .. import metrics

SAMPLES_JUDGED = (1000, 256)  # images a run that draws is judged on (full, smoke), as many as its recipe judged


def _classes_drawn(training) -> int:
    """How many classes the ``draw`` of a training takes in turn: the ``num_classes`` of its conditional
    network (the cGAN's generator, a conditional diffusion UNet), 0 when it draws without a label."""
    return max((getattr(module, "num_classes", 0) or 0 for module in training.modules.values()), default=0)


def judge_drawn(training, data, smoke: bool, seed: int) -> tuple[dict[str, float], int]:
    """The numbers of a training that draws, judged again: ``SAMPLES_JUDGED`` images drawn with the run's
    ``seed`` (a conditional model draws the classes in turn), their classifier Fréchet distance and, when
    conditional, how often the digit classifier reads the class asked for. Returns (the numbers, how many
    digits the images cover), the second for ``grading`` to hold against the coverage the run claims."""
    n = SAMPLES_JUDGED[1] if smoke else SAMPLES_JUDGED[0]
    images = training.draw(n, seed=seed)  # (n, C, H, W) in [0, 1]
    quality = metrics.digit_sample_quality(data, images, seed=seed)
    again = {"fid_classifier": quality["fid_classifier"]}
    classes = _classes_drawn(training)
    if classes:
        accuracy = metrics.drawn_class_accuracy(images, classes, data, seed=seed)  # draw's classes in turn
        again["conditional_accuracy"] = accuracy["conditional_accuracy"]
    return again, quality["class_coverage"]
