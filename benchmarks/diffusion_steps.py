"""Diffusion's quality against its cost: the classifier Fréchet distance of 1,000 samples for every sampler
at 1, 2, 4, ..., 64 steps (and DDPM's ancestral sampler at all its noise levels), with the network
evaluations per sample and the seconds per 1,000 samples.

    python benchmarks/diffusion_steps.py [--epochs N] [--steps 1 2 4 8 16 32 64] [--work DIR]
                                         [--objectives flow eps] [--out benchmarks/results/diffusion_steps.json]

Two models are trained at the command line's defaults for this machine (``python -m labkit train diffusion``,
with ``--objective flow`` and ``--objective eps``, or only those of ``--objectives``; on a CPU notebook 05 trains
fewer epochs) into ``--work`` (a run
already complete there is reused, a partial one resumed); then each is sampled with each of its samplers:
Euler and Heun for flow matching, DDIM and DDPM for the noise-predicting model, from the same starting noise
(seed 0). One JSON line per measurement; the table, the real-data floor (real training digits against the
test digits), what the weights' average changes (the default sampler from the trained weights instead) and the
machine go to ``--out``. Notebook 05's figure of quality against steps and the README quote it.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from common import write_result

from labkit import datasets, metrics
from labkit.diffusion.recipe import DiffusionSettings, run_diffusion
from labkit.diffusion.samplers import SAMPLERS, network_evaluations
from labkit.engine import environment

N_SAMPLES = 1000


def measure(training, data, sampler: str, steps: int, averaged: bool = True) -> dict:
    """The judge's numbers for ``N_SAMPLES`` images drawn with ``sampler`` in ``steps`` steps, and their cost."""
    training.sampler, training.sample_steps = sampler, steps
    dev = next(training.net.parameters()).device
    start = time.perf_counter()
    images = training.draw(N_SAMPLES, seed=0, averaged=averaged)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    quality = metrics.digit_sample_quality(data, images, seed=0)
    return {
        "objective": training.objective,
        "sampler": sampler,
        "sample_steps": steps,
        "network_evaluations": network_evaluations(sampler, steps),
        "weights": "average" if averaged else "trained",
        "fid_classifier": quality["fid_classifier"],
        "class_coverage": quality["class_coverage"],
        "sampling_seconds_per_1000": seconds * 1000 / N_SAMPLES,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs of each model (default: the command line's)")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--no-ddpm", action="store_true", help="leave out DDPM's sampler (all noise levels: slow)")
    parser.add_argument("--objectives", nargs="+", choices=("flow", "eps"), default=["flow", "eps"])
    parser.add_argument("--work", default=None, help="where the two models' runs go (default: a temporary folder)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "diffusion_steps.json"))
    parser.add_argument("--note", default=None, help="a sentence on how it was run, shown with the table")
    args = parser.parse_args()
    dev = environment.pick_device(args.device)
    mnist = datasets.load_dataset("mnist", dev)
    floor = metrics.digit_sample_quality(mnist, mnist.train_x[:N_SAMPLES].cpu())["fid_classifier"]
    started, rows, trained = time.time(), [], {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        for objective in args.objectives:
            cfg = DiffusionSettings(objective=objective, **({"epochs": args.epochs} if args.epochs is not None else {}))
            run = run_diffusion(cfg, out=work / cfg.run_name, device=str(dev), progress=False, data=mnist)
            trained[objective] = {
                "epochs": cfg.epochs,
                "train_seconds": run.final["train_seconds"],
                "parameters": run.final["parameters"],
                "default": {"sampler": cfg.sampler_name, "sample_steps": cfg.sampling_steps},
            }
            few_steps = [sampler for sampler in SAMPLERS[objective] if sampler != "ddpm"]
            measurements = [(sampler, steps) for sampler in few_steps for steps in args.steps]
            if objective == "eps" and not args.no_ddpm:
                measurements.append(("ddpm", run.training.schedule.steps))
            for sampler, steps in measurements:
                row = measure(run.training, mnist, sampler, steps)
                print(json.dumps(row), flush=True)
                rows.append(row)
            row = measure(run.training, mnist, cfg.sampler_name, cfg.sampling_steps, averaged=False)
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {
        "benchmark": "benchmarks/diffusion_steps.py",
        "samples": N_SAMPLES,
        "real_floor_fid_classifier": floor,
        "models": trained,
        "measurements": rows,
    }
    write_result(args.out, result, data=mnist, device=dev, started=started, note=args.note)


if __name__ == "__main__":
    main()
