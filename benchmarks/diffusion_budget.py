"""What a CPU's minutes buy a diffusion model: sample quality after a number of training steps, for UNet widths
and batch sizes, with each setting's seconds per step, so that quality can be read against training time.

    python benchmarks/diffusion_budget.py [--config '{"width": 16, "batch_size": 64}' --checks 1000 2000 ...]
                                          [--samples 500] [--out benchmarks/results/diffusion_budget.json]

Each ``--config`` (a JSON object of ``DiffusionSettings`` fields; by default the two of the committed result:
width 16 on batches of 64, and width 32 on batches of 128) first times 10 training steps on random digits (after
3 to warm up), then trains flow matching on the MNIST training digits and, after each number of steps in
``--checks``, draws ``--samples`` images with the default sampler and measures their classifier Fréchet distance
to the test digits and the classes covered. A conditional config (``"conditional": true``) trains with the labels
and draws the digits 0-9 in turn at its guidance weight, and adds their conditional accuracy. One JSON line per
measurement; all of them, the machine and the note go to ``--out``. ``labkit.diffusion.recipe``'s CPU defaults quote it.

    python benchmarks/diffusion_budget.py --memory-formats [--rounds 5] [--out ...]

times the first config's training step with the network in contiguous (NCHW) and in channels-last (NHWC) memory,
side by side: ``--rounds`` rounds of 20 steps each, the two layouts taking turns so that a machine that slows down
slows both; the ratio is channels-last's median over contiguous's (``labkit.diffusion.training.CHANNELS_LAST``).
"""

import argparse
import json
import statistics
import time

import torch
from common import write_result

from labkit import datasets, metrics
from labkit.data import batches
from labkit.diffusion.recipe import DiffusionSettings
from labkit.engine import environment
from labkit.models import classes_in_turn

DEFAULT_CONFIGS = ({"width": 16, "batch_size": 64}, {"width": 32, "batch_size": 128})
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
DEFAULT_CHECKS = {16: (1000, 2000, 3000, 4000), 32: (150, 300, 450, 600)}


def seconds_per_step(cfg: DiffusionSettings, dev) -> float:
    """The mean seconds of 10 training steps on a batch of random images, after 3 to warm up."""
    training = cfg.training(dev, (1, 28, 28))
    x = torch.rand(cfg.batch_size, 1, 28, 28, device=dev)
    for _ in range(3):
        training.train_step(x)
    start = time.perf_counter()
    for _ in range(10):
        training.train_step(x)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return (time.perf_counter() - start) / 10


def memory_format_rounds(cfg: DiffusionSettings, dev, rounds: int, steps: int = 20):
    """Yield one row per round and layout: the mean seconds of ``steps`` training steps on a batch of random
    images, with the network (and so every activation) in that memory layout."""
    trainings = {}
    for layout in LAYOUTS:
        torch.manual_seed(cfg.seed)
        training = cfg.training(dev, (1, 28, 28))  # channels-last where labkit keeps it so: set both ways here
        for module in training.modules.values():
            module.to(memory_format=LAYOUTS[layout])
        trainings[layout] = training
    x = torch.rand(cfg.batch_size, 1, 28, 28, device=dev)
    for training in trainings.values():
        for _ in range(3):  # warm up
            training.train_step(x)
    for round_ in range(rounds):
        for layout, training in trainings.items():
            start = time.perf_counter()
            for _ in range(steps):
                training.train_step(x)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            yield {"round": round_, "memory_format": layout, "seconds_per_step": (time.perf_counter() - start) / steps}


def quality_after_steps(cfg: DiffusionSettings, checks, mnist, n_samples: int, dev):
    """Train ``cfg`` on ``mnist`` and yield the judge's numbers after each number of steps in ``checks``."""
    torch.manual_seed(cfg.seed)
    training = cfg.training(dev, mnist.image_shape)
    training.plan(max(checks))  # a learning rate that falls (lr_schedule "linear") ends at the last check
    classifier, _ = metrics.digit_classifier(mnist, seed=0)
    step, epoch, pending = 0, 0, sorted(checks)
    asked = classes_in_turn(n_samples, 10, dev)  # what a conditional model draws when given no labels
    while pending:
        epoch += 1
        for xb, yb in batches(mnist.train_x, mnist.train_y, batch_size=cfg.batch_size, shuffle=True):
            training.train_step(xb, yb)  # the labels reach only a conditional network
            step += 1
            if step == pending[0]:
                pending.pop(0)
                images = training.draw(n_samples, seed=1)
                quality = metrics.sample_quality(classifier, mnist.test_x, images)
                if cfg.conditional:
                    accuracy = metrics.conditional_accuracy(images, asked, classifier)
                    quality["conditional_accuracy"] = accuracy["conditional_accuracy"]
                yield {"step": step, "epoch": epoch, **quality}
                if not pending:
                    return


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=json.loads, action="append", help="DiffusionSettings fields, as JSON")
    parser.add_argument("--checks", type=int, nargs="+", help="steps after which to measure (default: per width)")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default="benchmarks/results/diffusion_budget.json")
    parser.add_argument("--note", default=None, help="a sentence on how it was run, shown with the table")
    parser.add_argument("--memory-formats", action="store_true", help="time contiguous against channels-last steps")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of --memory-formats")
    args = parser.parse_args()
    dev = environment.pick_device(args.device)
    if args.memory_formats:
        started, fields = time.time(), (args.config or DEFAULT_CONFIGS)[0]
        cfg = DiffusionSettings(epochs=1, **fields)
        rows = []
        for row in memory_format_rounds(cfg, dev, args.rounds):
            print(json.dumps({**fields, **row}), flush=True)
            rows.append({**fields, **row})
        median = {
            layout: statistics.median(r["seconds_per_step"] for r in rows if r["memory_format"] == layout)
            for layout in LAYOUTS
        }
        ratio = median["channels_last"] / median["contiguous"]
        print(json.dumps({"median_seconds_per_step": median, "channels_last_over_contiguous": ratio}), flush=True)
        result = {
            "benchmark": "benchmarks/diffusion_budget.py --memory-formats",
            "measurements": rows,
            "median_seconds_per_step": median,
            "channels_last_over_contiguous": ratio,
        }
        write_result(args.out, result, data=None, device=dev, started=started, note=args.note)
        return
    mnist = datasets.load_dataset("mnist", dev)
    started, rows = time.time(), []
    for fields in args.config or DEFAULT_CONFIGS:
        cfg = DiffusionSettings(epochs=1, **fields)
        step_seconds = seconds_per_step(cfg, dev)
        checks = args.checks or DEFAULT_CHECKS.get(cfg.width, (500, 1000))
        for measured in quality_after_steps(cfg, checks, mnist, args.samples, dev):
            row = {**fields, "seconds_per_step": step_seconds, "training_seconds": measured["step"] * step_seconds}
            row.update(measured)
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"benchmark": "benchmarks/diffusion_budget.py", "samples": args.samples, "measurements": rows}
    write_result(args.out, result, data=mnist, device=dev, started=started, note=args.note)


if __name__ == "__main__":
    main()
