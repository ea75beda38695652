"""Wall time of a whole training process: labkit's command line against the pytorch/examples VAE.

    python benchmarks/whole_process.py [--repeats 3] [--epochs 10] [--device cpu]

Both train the classic VAE (784-400-20, BCE summed over pixels + KL, Adam 1e-3) at batch 128 for
the same epochs on the same images: labkit's MNIST (the offline subset of 4,000 / 1,000 digits
without network) written as torchvision IDX files into a temporary data root, which the
pytorch/examples script reads through its DataLoader (benchmarks/pytorch_examples_vae.py, as
published but for the data path) and labkit through ``LABKIT_DATA``. Timed from process start to
exit, so imports, data loading, the per-epoch test passes and every figure each writes count:
``python -m labkit train vae --variant classic --batch-size 128`` (a fresh output folder each
time) and ``python pytorch_examples_vae.py --data ROOT``. Repeats alternate which goes first.
Prints one JSON line per process run, then the medians and the ratio examples / labkit.

``--n-train 60000`` measures at full MNIST's size when only the offline digits are at hand: the
training split is grown to that many images by shifting the offline training digits by up to two
pixels (the same images for both processes; said so in the output). On 4,000 images the fixed
costs that both processes pay (importing torch, creating the optimiser) are most of the time.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_mnist

from labkit import data

HERE = Path(__file__).resolve().parent
EXAMPLES_SCRIPT = HERE / "pytorch_examples_vae.py"
BATCH_SIZE = 128  # pytorch/examples' default; labkit is given the same


def run_labkit(root: Path, out: Path, epochs: int, device: str | None) -> dict:
    command = [
        sys.executable,
        "-m",
        "labkit",
        "train",
        "vae",
        "--variant",
        "classic",
        "--epochs",
        str(epochs),
        "--batch-size",
        str(BATCH_SIZE),
        "--out",
        str(out),
        "--no-progress",
    ]
    if device:
        command += ["--device", device]
    env = {**os.environ, "LABKIT_DATA": str(root), "LABKIT_OFFLINE": "1", "LABKIT_SMOKE": "0", "MPLBACKEND": "Agg"}
    seconds, result = _timed(command, env=env, cwd=HERE.parent)
    metrics = json.loads((out / "metrics.json").read_text())
    hyper = metrics["hyperparameters"]
    if metrics["dataset"]["source"] != "local" or hyper["batch_size"] != BATCH_SIZE or hyper["variant"] != "classic":
        raise RuntimeError(f"labkit did not train what was asked: {metrics['dataset']}, {hyper}")
    return {
        "seconds": seconds,
        "test_loss_nats": metrics["final"]["test_neg_elbo_nats"],
        "batch_size": hyper["batch_size"],
        "variant": hyper["variant"],
        "device": metrics["device"],
        "n_train": metrics["dataset"]["n_train"],
        "n_test": metrics["dataset"]["n_test"],
        "data_origin": metrics["dataset"]["origin"],
    }


def run_examples(root: Path, work: Path, epochs: int, device: str | None) -> dict:
    (work / "results").mkdir(parents=True)  # the script saves its images into results/ of its folder
    command = [
        sys.executable,
        str(EXAMPLES_SCRIPT),
        "--data",
        str(root),
        "--epochs",
        str(epochs),
        "--batch-size",
        str(BATCH_SIZE),
    ]
    if device == "cpu":
        command.append("--no-cuda")
    seconds, result = _timed(command, env=dict(os.environ), cwd=work)
    losses = re.findall(r"====> Test set loss: ([0-9.]+)", result.stdout)
    return {
        "seconds": seconds,
        "loop_seconds": float(re.findall(r"====> Loop seconds: ([0-9.]+)", result.stdout)[-1]),  # in its process
        "test_loss_nats": float(losses[-1]),
        "batch_size": BATCH_SIZE,
        "images_written": len(list((work / "results").glob("*.png"))),
    }


def _timed(command: list[str], env: dict, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return seconds, result


def shifted_copies(x, y, n: int, seed: int = 0):
    """``n`` images made from ``x`` (N, 1, H, W) and their labels: the originals, then copies shifted
    by up to two pixels in each direction (zeros move in), cycling through the digits."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    h, w = x.shape[-2:]
    padded = F.pad(x, (2, 2, 2, 2))
    images, labels, total = [x], [y], len(x)
    while total < n:
        dy, dx = (int(v) for v in torch.randint(0, 5, (2,), generator=g))
        take = min(len(x), n - total)
        images.append(padded[:take, :, dy : dy + h, dx : dx + w])
        labels.append(y[:take])
        total += take
    return torch.cat(images), torch.cat(labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each process (the median is reported)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--n-train",
        type=int,
        default=None,
        dest="n_train",
        help="grow the training split to N images by shifting the digits (default: as loaded)",
    )
    parser.add_argument(
        "--device", default=None, help="cpu forces both onto the CPU (default: each picks CUDA when there is a GPU)"
    )
    args = parser.parse_args()
    mnist = data.load_mnist("cpu", source="offline-subset", smoke=False, verbose=False)
    described = f"MNIST {mnist.source}, {mnist.n_train} train / {mnist.n_test} test"
    if args.n_train and args.n_train > mnist.n_train:
        mnist.train_x, mnist.train_y = shifted_copies(mnist.train_x, mnist.train_y, args.n_train)
        described = (
            f"MNIST {mnist.source} grown to {args.n_train} train images by shifts of up to 2 pixels "
            f"/ {mnist.n_test} test"
        )
    seconds = {"labkit": [], "pytorch_examples": []}
    losses = {"labkit": [], "pytorch_examples": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_mnist(mnist, root)
        for repeat in range(args.repeats):
            order = ("labkit", "pytorch_examples") if repeat % 2 == 0 else ("pytorch_examples", "labkit")
            for side in order:
                work = Path(tmp) / f"{side}-{repeat}"
                if side == "labkit":
                    row = run_labkit(root, work, args.epochs, args.device)
                else:
                    row = run_examples(root, work, args.epochs, args.device)
                seconds[side].append(row["seconds"])
                losses[side].append(row["test_loss_nats"])
                print(
                    json.dumps(
                        {
                            "process": side,
                            "repeat": repeat,
                            "epochs": args.epochs,
                            "data": described,
                            **{k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()},
                        }
                    ),
                    flush=True,
                )
    medians = {side: statistics.median(values) for side, values in seconds.items()}
    print(
        json.dumps(
            {
                "summary": "whole process, median wall seconds",
                "repeats": args.repeats,
                "epochs": args.epochs,
                "batch_size": BATCH_SIZE,
                **{f"{side}_seconds": round(m, 2) for side, m in medians.items()},
                **{f"{side}_test_loss_nats": round(statistics.median(v), 2) for side, v in losses.items()},
                "ratio_examples_over_labkit": round(medians["pytorch_examples"] / medians["labkit"], 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
