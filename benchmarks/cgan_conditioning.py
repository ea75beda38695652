"""How early the conditional GAN draws the digit it is asked for, with each way of telling D the label.

    python benchmarks/cgan_conditioning.py [--epochs 100] [--seeds 0 1 2] [--designs projection concat]

Every run is ``python -m labkit train cgan`` at its defaults (``labkit.gan.recipe.run_cgan``), once per seed with
D told the label by projection (Miyato & Koyama 2018, the default) and once with the one-hot beside the image
(Mirza & Osindero 2014, ``d_conditioning="concat"``). Each run records the conditional accuracy of 500 samples
after every epoch (``metrics.ConditionalAccuracyPerEpoch``, as every cGAN run does) and, at its end, the
conditional accuracy and classifier Fréchet distance of 1,000 samples, from the average of G's weights. One JSON
line per run; the summary (per design: the accuracy after epochs 1, 2, 5, 10, 20, 50 and the last, mean and
spread over the seeds, the final numbers, seconds per epoch) goes to ``--out``. Notebook 03, "Why the label is
heard late", quotes it.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import write_result

from labkit import data
from labkit.engine import environment
from labkit.gan.recipe import CGANSettings, run_cgan

DESIGNS = ("projection", "concat")
SHOWN_EPOCHS = (1, 2, 5, 10, 20, 50)
FINAL = ("conditional_accuracy", "fid_classifier", "class_coverage", "seconds_per_epoch")


def run_once(design: str, seed: int, epochs: int | None, dev, folder: Path) -> dict:
    cfg = CGANSettings(seed=seed, d_conditioning=design, **({"epochs": epochs} if epochs else {}))
    trained = run_cgan(cfg, out=folder / f"{design}-{seed}", device=dev, progress=False)
    curve = [r["conditional_accuracy"] for r in trained.history]
    final = {k: trained.final[k] for k in FINAL}
    return {"design": design, "seed": seed, "epochs": cfg.epochs, **final, "curve": curve}


def mean_sd(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else float("nan")}


def summarise(rows: list[dict]) -> dict:
    """Per design: the accuracy after each shown epoch and the last, and the final measures, over the seeds."""
    summary = {}
    for design in DESIGNS:
        mine = [r for r in rows if r["design"] == design]
        if not mine:
            continue
        last = min(len(r["curve"]) for r in mine)
        shown = [e for e in SHOWN_EPOCHS if e < last] + [last]
        summary[design] = {
            "seeds": [r["seed"] for r in mine],
            "accuracy_after_epoch": {str(e): mean_sd([r["curve"][e - 1] for r in mine]) for e in shown},
            **{k: mean_sd([r[k] for r in mine]) for k in FINAL},
        }
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the cGAN's full settings)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--designs", nargs="+", choices=DESIGNS, default=list(DESIGNS))
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cgan_conditioning.json"))
    parser.add_argument("--note", default=None, help="a sentence on how it was run, shown with the result")
    args = parser.parse_args()
    dev = environment.pick_device(args.device)
    mnist = data.load_mnist(dev, verbose=False)
    started, rows = time.time(), []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:  # seed-major: an interrupted run still has both designs of the first seeds
            for design in args.designs:
                row = run_once(design, seed, args.epochs, dev, Path(folder))
                print(json.dumps(row), flush=True)
                rows.append(row)
    result = {"benchmark": "benchmarks/cgan_conditioning.py", "seeds": args.seeds, "designs": summarise(rows)}
    write_result(args.out, {**result, "runs": rows}, data=mnist, device=dev, started=started, note=args.note)


if __name__ == "__main__":
    main()
