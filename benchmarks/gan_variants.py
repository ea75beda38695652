"""The MNIST GAN's variants over several seeds: sample quality, D/G balance and cost, mean and spread.

    python benchmarks/gan_variants.py [--epochs 100] [--seeds 0 1 2] [--out benchmarks/results/gan_variants.json]

GAN papers warn that one run per variant misleads (Lucic et al. 2018, "Are GANs Created Equal?"),
so every variant of notebook 03's comparison trains once per seed, from the same settings otherwise:
plain, one-sided label smoothing, a slower discriminator, k = 2 generator steps, WGAN-GP and
spectral normalisation. Each run prints one JSON line (the classifier Fréchet distance of 1,000
samples to the test digits, classes covered, KL of the class histogram from uniform, the last
epoch's D/G numbers, seconds per epoch); the summary (mean and standard deviation per variant, and
the real-data floor: real training digits against the test digits) goes to ``--out``, which
``python -m labkit report`` renders into REPORT.md when it lies in the runs folder or here.
"""

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from common import write_result

from labkit import data, gan, metrics
from labkit.engine import environment, loop
from labkit.engine.training import seconds_per_epoch
from labkit.gan.recipe import GANSettings

VARIANTS = {
    "plain": {},
    "label smoothing 0.9": {"real_label": 0.9},
    "slower D (lr_d = 1e-4)": {"lr_d": 1e-4},
    "k = 2 generator steps": {"g_steps": 2},
    "WGAN-GP": {"loss": "wgan-gp"},
    "spectral norm": {"spectral_norm": True},
}
MEASURES = ("fid_classifier", "class_coverage", "class_kl_from_uniform", "d_real", "d_fake", "seconds_per_epoch")
N_SAMPLES = 1000


def run_once(name: str, cfg: GANSettings, mnist: data.ImageData, dev) -> dict:
    environment.seed_everything(cfg.seed)
    G, D = (m.to(dev) for m in cfg.networks())
    training = cfg.training(G, D)
    history = loop.fit(training, mnist.train_x, None, epochs=cfg.epochs, batch_size=cfg.batch_size, progress=False)
    samples = (gan.sample(G, N_SAMPLES, seed=cfg.seed) + 1) / 2
    quality = metrics.digit_sample_quality(mnist, samples)
    last = history.last
    return {
        "variant": name,
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "fid_classifier": quality["fid_classifier"],
        "class_coverage": quality["class_coverage"],
        "class_kl_from_uniform": quality["class_kl_from_uniform"],
        "d_real": last["train_d_real"],
        "d_fake": last["train_d_fake"],
        "scores": "critic" if cfg.loss == "wgan-gp" else "probability",
        "seconds_per_epoch": seconds_per_epoch(history),
    }


def summarise(rows: list[dict]) -> dict:
    """Mean and sample standard deviation of every measure per variant, in the order of VARIANTS."""
    summary = {}
    for name in VARIANTS:
        mine = [r for r in rows if r["variant"] == name]
        if not mine:
            continue
        summary[name] = {"seeds": [r["seed"] for r in mine], "scores": mine[0]["scores"]}
        for key in MEASURES:
            values = [r[key] for r in mine]
            spread = statistics.stdev(values) if len(values) > 1 else float("nan")
            summary[name][key] = {"mean": statistics.fmean(values), "sd": spread}
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the GAN's full settings)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gan_variants.json"))
    parser.add_argument("--note", default=None, help="a sentence on how it was run, shown with the table")
    args = parser.parse_args()
    dev = environment.pick_device(args.device)
    mnist = data.load_mnist(dev)
    base = GANSettings() if args.epochs is None else GANSettings(epochs=args.epochs)
    floor = metrics.digit_sample_quality(mnist, mnist.train_x[:N_SAMPLES].cpu())["fid_classifier"]
    started, rows = time.time(), []
    for seed in args.seeds:  # seed-major: an interrupted run still has every variant of the first seeds
        for name in args.variants:
            row = run_once(name, replace(base, seed=seed, **VARIANTS[name]), mnist, dev)
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {
        "benchmark": "benchmarks/gan_variants.py",
        "epochs": base.epochs,
        "seeds": args.seeds,
        "samples": N_SAMPLES,
        "real_floor_fid_classifier": floor,
        "variants": summarise(rows),
        "runs": rows,
    }
    write_result(args.out, result, data=mnist, device=dev, started=started, note=args.note)


if __name__ == "__main__":
    main()
