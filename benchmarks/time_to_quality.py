"""Time to quality, measured inside the running process: what a student waits for once the kernel runs.

    python benchmarks/time_to_quality.py [--parts vae gan cgan dcgan] [--seeds 0 1 2] [--repeats 3] [--out FILE.json]

A student's kernel has already imported torch when they press run, so every figure here is seconds of
training inside a process (``fit``'s epochs and, where said, its test passes), never Python's start-up.
The four measurements of the issue "Quality per minute", at the kit's defaults:

* **vae**: labkit's VAE (notebook 02's defaults, in a fresh process of its own) against the pytorch/examples
  VAE script (vendored, ``pytorch_examples_vae.py``), on the same digits written as IDX files. The target is the
  script's test loss after its 10 epochs; labkit's seconds are its training and test passes until the first
  epoch whose test -ELBO is at most that; the script's are its own 10-epoch ``for epoch`` loop, which it times
  and prints. Both processes import ``torch._dynamo`` (which Adam's first step would import) before their
  loop. Repeats alternate which goes first; medians. Ratio: script seconds / labkit seconds (goal: >= 3),
  and labkit's full epochs must still end below the script's end.
* **gan**: the MNIST GAN (``python -m labkit train gan``'s recipe, in this process) for each seed: the
  classifier Fréchet distance of its samples at its default epochs (goal: mean <= 12).
* **cgan**: the conditional GAN for each seed: conditional accuracy after 20 epochs (its per-epoch record;
  goal >= 0.9) and at its default epochs (>= 0.95), and its Fréchet distance.
* **dcgan**: the DCGAN on abstract art (offline: the procedural stand-in), the paper's transposed-convolution
  generator for 30 epochs sampled from G itself (the CPU settings before) against the defaults: the
  sliced Wasserstein distance to the real images (``labkit.swd``) with its real-data floor, and the training
  seconds. Ratio: (before - floor) / (after - floor), in no more training seconds (goal: >= 2). Each run's
  sample grid is copied beside ``--out``.

One JSON line per measurement, then one summary line per part with its ratio or goal last; ``--out`` keeps
every line in one JSON file, each run's lines after the line that says which machine ran them. A file already
there keeps the lines of the parts this run does not measure (``--parts gan cgan`` adds those two to the others).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import write_mnist
from whole_process import run_examples

from labkit import data
from labkit.engine.runs import installed_version

HERE = Path(__file__).resolve().parent
SCRIPT_EPOCHS = 10  # the pytorch/examples default
CGAN_EARLY_EPOCHS = 20  # the conditional GAN must know the label by then
# the DCGAN's CPU settings before: the transposed G for 30 epochs, sampled from G itself
DCGAN_BEFORE = {"upsample": "transposed", "ema": 0.0, "epochs": 30}
DCGAN_SMOKE_BEFORE = {**DCGAN_BEFORE, "epochs": 1}  # LABKIT_SMOKE=1: every part in a minute or two
GOALS = {"vae": 3.0, "gan": 12.0, "cgan": (0.9, 0.95), "dcgan": 2.0}
# labkit's VAE in a process of its own: notebook 02's defaults and training, ``fit`` timed from its start to the
# end of each epoch (training and test pass); prints the test -ELBO and the seconds after every epoch as JSON.
VAE_PROCESS = """
import json, sys, time
import torch._dynamo  # a one-time import that Adam's first step would make inside the loop; the script makes it too
from labkit import data, models
from labkit.engine import environment
from labkit.engine.loop import fit
from labkit.vae import VAESettings
mnist = data.load_mnist("cpu", verbose=False)
cfg = VAESettings(epochs=int(sys.argv[1]))
environment.seed_everything(cfg.seed)
training = cfg.training("cpu")
models.start_at_mean_image(training.model.decoder, mnist.train_x)  # as run_vae does
seconds, start = [], time.perf_counter()
mark = lambda epoch, record, history: seconds.append(time.perf_counter() - start)
history = fit(training, mnist.train_x, mnist.test_x, epochs=cfg.epochs, batch_size=cfg.batch_size,
              progress=False, callbacks=[mark])
print(json.dumps({"test_neg_elbo": history.series("test_neg_elbo"), "seconds": seconds, "source": mnist.source}))
"""


def first_epoch_at_most(values: list[float], target: float) -> int | None:
    """The first epoch (1-based) whose value is at most ``target``, or None."""
    return next((i + 1 for i, v in enumerate(values) if v <= target), None)


def emit(row: dict, lines: list) -> None:
    row = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
    print(json.dumps(row), flush=True)
    lines.append(row)


def labkit_vae(root: Path, epochs: int) -> dict:
    """One run of ``VAE_PROCESS`` on the benchmark's IDX files: its per-epoch test -ELBO and seconds."""
    env = {**os.environ, "LABKIT_DATA": str(root), "LABKIT_OFFLINE": "1", "LABKIT_SMOKE": "0"}
    done = subprocess.run(
        [sys.executable, "-c", VAE_PROCESS, str(epochs)], env=env, cwd=HERE.parent, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"labkit's VAE process failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["source"] != "local":
        raise RuntimeError(f"labkit did not read the benchmark's files (source {result['source']!r})")
    return result


def part_vae(mnist: data.ImageData, work: Path, repeats: int, lines: list) -> dict:
    """The VAE's seconds to the script's 10-epoch test loss, against the script's 10-epoch loop."""
    from labkit.vae import VAESettings

    root = work / "data"
    write_mnist(mnist, root)
    epochs = VAESettings().epochs
    script, labkit = [], []
    for repeat in range(repeats):
        for side in ("script", "labkit") if repeat % 2 == 0 else ("labkit", "script"):
            if side == "script":
                row = run_examples(root, work / f"script-{repeat}", SCRIPT_EPOCHS, "cpu")
                script.append(row)
                emit(
                    {
                        "part": "vae",
                        "process": "pytorch_examples",
                        "repeat": repeat,
                        "epochs": SCRIPT_EPOCHS,
                        "loop_seconds": row["loop_seconds"],
                        "test_neg_elbo": row["test_loss_nats"],
                    },
                    lines,
                )
            else:
                labkit.append(labkit_vae(root, epochs))
                curve = labkit[-1]["test_neg_elbo"]
                emit(
                    {
                        "part": "vae",
                        "process": "labkit",
                        "repeat": repeat,
                        "epochs": epochs,
                        "seconds_per_epoch": labkit[-1]["seconds"],
                        "test_neg_elbo": curve,
                    },
                    lines,
                )
    target = statistics.median(r["test_loss_nats"] for r in script)  # the same in every repeat (seed 1)
    reached = [first_epoch_at_most(r["test_neg_elbo"], target) for r in labkit]
    seconds = [r["seconds"][e - 1] for r, e in zip(labkit, reached) if e is not None]
    script_seconds = statistics.median(r["loop_seconds"] for r in script)
    summary = {
        "part": "vae",
        "target_test_neg_elbo": target,
        "labkit_epochs_to_target": reached,
        "labkit_final_test_neg_elbo": statistics.median(r["test_neg_elbo"][-1] for r in labkit),
        "labkit_epochs": epochs,
        "script_loop_seconds": script_seconds,
    }
    if len(seconds) < len(labkit):
        return {**summary, "reached": False, "goal": GOALS["vae"]}
    summary["labkit_seconds_to_target"] = statistics.median(seconds)
    ratio = script_seconds / summary["labkit_seconds_to_target"]
    return {**summary, "goal": GOALS["vae"], "met": ratio >= GOALS["vae"], "ratio_script_over_labkit": ratio}


def train_recipe(model: str, work: Path, **settings) -> dict:
    """``python -m labkit train MODEL`` with ``settings``, in this process, into ``work``: its metrics.json."""
    from labkit.experiments import RECIPES

    recipe = RECIPES[model]
    cfg = recipe.settings(**settings)
    trained = recipe.run(cfg, out=work / f"{model}-{'-'.join(f'{k}{v}' for k, v in settings.items())}", progress=False)
    return {**trained.metrics, "folder": str(trained.folder)}


def training_seconds(metrics: dict) -> float:
    """Seconds of training (``fit``'s epochs, no test passes or figures) recorded in a run's history."""
    return sum(record["seconds"] for record in metrics["history"])


def part_gan(seeds: list[int], work: Path, lines: list) -> dict:
    """The MNIST GAN's classifier Fréchet distance at its default epochs, for each seed."""
    fids = []
    for seed in seeds:
        metrics = train_recipe("gan", work, seed=seed)
        fids.append(metrics["final"]["fid_classifier"])
        emit(
            {
                "part": "gan",
                "seed": seed,
                "epochs": len(metrics["history"]),
                "fid_classifier": fids[-1],
                "class_coverage": metrics["final"]["class_coverage"],
                "seconds": training_seconds(metrics),
            },
            lines,
        )
    mean = statistics.mean(fids)
    return {"part": "gan", "fid_classifier_mean": mean, "goal": GOALS["gan"], "met": mean <= GOALS["gan"]}


def part_cgan(seeds: list[int], work: Path, lines: list) -> dict:
    """The conditional GAN's conditional accuracy after ``CGAN_EARLY_EPOCHS`` and at its default epochs."""
    early, final = [], []
    for seed in seeds:
        metrics = train_recipe("cgan", work, seed=seed)
        early.append(metrics["history"][min(CGAN_EARLY_EPOCHS, len(metrics["history"])) - 1]["conditional_accuracy"])
        final.append(metrics["final"]["conditional_accuracy"])
        emit(
            {
                "part": "cgan",
                "seed": seed,
                "epochs": len(metrics["history"]),
                f"conditional_accuracy@{CGAN_EARLY_EPOCHS}": early[-1],
                "conditional_accuracy": final[-1],
                "fid_classifier": metrics["final"]["fid_classifier"],
                "seconds": training_seconds(metrics),
            },
            lines,
        )
    goal_early, goal_final = GOALS["cgan"]
    met = min(early) >= goal_early and min(final) >= goal_final
    return {
        "part": "cgan",
        f"min_accuracy@{CGAN_EARLY_EPOCHS}": min(early),
        "min_accuracy": min(final),
        "goal": [goal_early, goal_final],
        "met": met,
    }


def part_dcgan(seeds: list[int], work: Path, lines: list, grids: Path | None) -> dict:
    """The DCGAN's sliced Wasserstein distance before (transposed G, 30 epochs) and at the defaults."""
    from labkit.engine.environment import smoke_mode
    from labkit.gan.recipe import DCGANSettings

    before = DCGAN_SMOKE_BEFORE if smoke_mode() else DCGAN_BEFORE
    after = DCGANSettings()
    runs = {"before": before, "after": {"upsample": after.upsample, "ema": after.ema, "epochs": after.epochs}}
    found = {side: [] for side in runs}
    for seed in seeds:
        for side, settings in runs.items():
            metrics = train_recipe("dcgan", work, seed=seed, **settings)
            final = metrics["final"]
            row = {
                "part": "dcgan",
                "side": side,
                "seed": seed,
                **settings,
                "seconds": training_seconds(metrics),
                "sliced_wasserstein": final["sliced_wasserstein"],
                "sliced_wasserstein_real": final["sliced_wasserstein_real"],
                "data": f"{metrics['dataset']['name']} ({metrics['dataset']['source']})",
            }
            found[side].append(row)
            emit(row, lines)
            if grids is not None:
                shutil.copy(Path(metrics["folder"]) / "samples.png", grids / f"dcgan_{side}_seed{seed}.png")
    mean = {
        side: {
            k: statistics.mean(r[k] for r in rows) for k in ("sliced_wasserstein", "sliced_wasserstein_real", "seconds")
        }
        for side, rows in found.items()
    }
    floor = mean["before"]["sliced_wasserstein_real"]
    ratio = (mean["before"]["sliced_wasserstein"] - floor) / (mean["after"]["sliced_wasserstein"] - floor)
    in_budget = mean["after"]["seconds"] <= mean["before"]["seconds"]
    return {
        "part": "dcgan",
        "before": mean["before"],
        "after": mean["after"],
        "goal": GOALS["dcgan"],
        "met": ratio >= GOALS["dcgan"] and in_budget,
        "ratio_distance_to_floor_before_over_after": ratio,
    }


def merge_runs(kept: list[dict], new: list[dict]) -> list[dict]:
    """The lines of an earlier ``--out`` file whose parts ``new`` does not measure, each after its run's header
    line (headers left without a part dropped), then ``new``."""
    measured = {line.get("part", line.get("summary")) for line in new} - {None}
    runs: list[list[dict]] = []
    for line in kept:
        if "benchmark" in line or not runs:
            runs.append([])
        if line.get("part", line.get("summary")) not in measured:
            runs[-1].append(line)
    return [line for run in runs if run and (len(run) > 1 or "benchmark" not in run[0]) for line in run] + new


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=tuple(GOALS), default=list(GOALS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of the GANs (dcgan: the first)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each VAE process (medians reported)")
    parser.add_argument("--out", default=None, help="write every line as one JSON file here, the DCGAN grids beside")
    args = parser.parse_args()
    mnist = data.load_mnist("cpu", verbose=False)
    lines = []
    machine = {
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "platform": platform.platform(),
    }
    emit({"benchmark": "time_to_quality", "data": mnist.label, "torch": installed_version("torch"), **machine}, lines)
    grids = Path(args.out).parent if args.out else None
    if grids:
        grids.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.parts:
            work = Path(tmp) / part
            work.mkdir()
            if part == "vae":
                summary = part_vae(mnist, work, args.repeats, lines)
            elif part == "dcgan":
                summary = part_dcgan(args.seeds[:1], work, lines, grids)
            else:
                summary = {"gan": part_gan, "cgan": part_cgan}[part](args.seeds, work, lines)
            emit({"summary": part, **summary}, lines)
    if args.out:
        out = Path(args.out)
        if out.exists():
            lines = merge_runs(json.loads(out.read_text())["lines"], lines)
        out.write_text(json.dumps({"benchmark": "benchmarks/time_to_quality.py", "lines": lines}, indent=1) + "\n")


if __name__ == "__main__":
    main()
