"""Which running average of the weights to sample from: one diffusion training at the CPU defaults, with several
averages kept side by side, each judged at the end on the same samples' noise.

    python benchmarks/diffusion_ema.py [--samples 1000] [--out benchmarks/results/diffusion_ema.json]

The averages differ in the cap on their decay at step n, (1 + n) / (k + n), an average over about the last
1 / (k - 1) of the run (Karras et al. 2024 call such a profile a power-function EMA), and in the decay they
settle to: each ``VARIANTS`` entry is (k, decay). The training is ``DiffusionSettings()`` at its defaults (on a
CPU: 65 epochs of the offline digits when the committed result was measured, 72 since) with the learning rate
falling to 0 at the last step, exactly as ``python -m labkit train diffusion`` trains; then ``--samples`` images
are drawn with each average (16 Heun steps, the same noise) and judged by the classifier Fréchet distance. The
trained weights themselves are judged too. One JSON line per average; all of them, the machine and the note go to
``--out``.
``labkit.diffusion.training.EMA_WARMUP`` quotes it.
"""

import argparse
import json
import time

import torch
from common import write_result
from torch.optim.swa_utils import AveragedModel

from labkit import datasets, metrics
from labkit.data import batches
from labkit.diffusion.recipe import DiffusionSettings
from labkit.engine import environment

VARIANTS = {"k3": (3, 1.0), "k5": (5, 1.0), "k10": (10, 0.999), "k20": (20, 1.0), "k40": (40, 1.0)}
VARIANTS.update({"k10_decay0.995": (10, 0.995), "k10_decay0.99": (10, 0.99)})


def capped_average(k: int, decay: float):
    """``AveragedModel``'s update for the decay min((1 + n) / (k + n), decay) at step n."""

    @torch.no_grad()
    def update(averaged, current, n_averaged):
        weight = 1 - torch.clamp((1 + n_averaged.double()) / (k + n_averaged.double()), max=decay)
        for average, value in zip(averaged, current):
            average.lerp_(value, weight.to(average.dtype)) if average.is_floating_point() else average.copy_(value)

    return update


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default="benchmarks/results/diffusion_ema.json")
    parser.add_argument("--note", default=None, help="a sentence on how it was run, shown with the table")
    args = parser.parse_args()
    dev = environment.pick_device(args.device)
    mnist = datasets.load_dataset("mnist", dev)
    classifier, _ = metrics.digit_classifier(mnist, seed=0)
    started = time.time()
    cfg = DiffusionSettings()
    torch.manual_seed(cfg.seed)
    training = cfg.training(dev, mnist.image_shape)
    n_batches = -(-len(mnist.train_x) // cfg.batch_size)
    training.plan(cfg.epochs * n_batches)
    averages = {
        name: AveragedModel(training.net, multi_avg_fn=capped_average(k, decay), use_buffers=True)
        for name, (k, decay) in VARIANTS.items()
    }
    for _ in range(cfg.epochs):
        for xb, yb in batches(mnist.train_x, mnist.train_y, batch_size=cfg.batch_size, shuffle=True):
            training.train_step(xb, yb)
            for average in averages.values():
                average.update_parameters(training.net)
    rows = []
    for name in ("weights", *averages):
        if name != "weights":
            training.modules["ema"] = averages[name]  # what draw samples from
        k, decay = VARIANTS.get(name, (None, None))
        images = training.draw(args.samples, seed=0, averaged=name != "weights")
        row = {"average": name, "k": k, "decay": decay, **metrics.sample_quality(classifier, mnist.test_x, images)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {
        "benchmark": "benchmarks/diffusion_ema.py",
        "samples": args.samples,
        "steps": cfg.epochs * n_batches,
        "measurements": rows,
    }
    write_result(args.out, result, data=mnist, device=dev, started=started, note=args.note)


if __name__ == "__main__":
    main()
