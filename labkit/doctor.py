"""``python -m labkit doctor``: is this machine ready for the course? It prints the environment, then
runs one short epoch of every model on the device present, as a table of checks with their seconds.

Run it when something is off: each row is one thing the notebooks rely on (mixed precision, resuming
from a checkpoint, notebook 04's reuse of earlier runs, a compiled DCGAN, two GPUs). The exit status
is non-zero when any check fails, so a script or CI can run it too.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import experiments
from .engine import environment
from .engine.family import DoctorCheck
from .engine.loop import fit
from .engine.runs import installed_version
from .engine.training import Precision

N_TRAIN, N_TEST = 512, 256  # MNIST images per check: an epoch is a few steps
N_ART = 32  # 64x64 images for the DCGAN checks: one step of 32
PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "scikit-learn",
    "matplotlib",
    "torchmetrics",
    "mlxtend",
    "ipywidgets",
    "pillow",
    "kagglehub",
)


@dataclass
class Result:
    name: str
    ok: bool | None  # None: skipped
    seconds: float
    detail: str


# --------------------------------------------------------------------------- the environment


def machine(device: torch.device) -> list[tuple[str, str]]:
    """What the checks run on: versions, the device and whether torch supports it, where things go."""
    gpus = (
        [
            f"{torch.cuda.get_device_name(i)} (capability {'.'.join(map(str, torch.cuda.get_device_capability(i)))})"
            for i in range(torch.cuda.device_count())
        ]
        if torch.cuda.is_available()
        else []
    )
    problem = environment.unsupported_gpu() if gpus else None
    runs, why = environment.runs_location()
    rows = [
        ("python", f"{platform.python_version()} on {platform.platform()}"),
        *((name, installed_version(name)) for name in PACKAGES),
        (
            "torch CUDA build",
            f"{torch.version.cuda or 'none (CPU build)'}; kernels for "
            f"{', '.join(torch.cuda.get_arch_list()) or 'no GPU architecture'}",
        ),
        ("GPUs", "; ".join(gpus) or "none visible"),
        ("GPU supported by this torch", "n/a" if not gpus else ("no: " + problem if problem else "yes")),
        ("device used", str(device)),
        ("precision 'auto' picks", Precision(device, "auto").mode),
        ("platform", "Colab" if environment.on_colab() else "Kaggle" if environment.on_kaggle() else "local"),
        ("smoke mode (LABKIT_SMOKE)", str(environment.smoke_mode())),
        ("data root", str(environment.data_root())),
        ("runs folder", f"{runs} ({why})"),
        ("CPU cores", str(os.cpu_count())),
    ]
    return rows


# --------------------------------------------------------------------------- the checks


def _finite(record: dict) -> str:
    bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"non-finite {', '.join(bad)}")
    shown = [k for k in record if k.startswith("test_")][:2] or [k for k in record if k.startswith("train_")][:2]
    return ", ".join(f"{k} {record[k]:.4g}" for k in shown)


def _classifier(device: torch.device):
    from . import metrics

    return metrics.ClassifierTraining(metrics.DigitClassifier().to(device))


def model_checks() -> list[DoctorCheck]:
    """The short epochs the doctor trains: every recipe's (``labkit.experiments.FAMILIES``), then the digit
    classifier that judges the samples."""
    recipes = experiments.RECIPES.values()
    return [
        *(check for recipe in recipes for check in recipe.doctor),
        DoctorCheck("classifier", _classifier, "labelled digits"),
    ]


class Doctor:
    """The data and device the checks share, and the checks themselves (each returns its detail line)."""

    def __init__(self, dev: torch.device):
        from .art import synthetic_art
        from .data import load_mnist

        self.device = dev
        mnist = load_mnist(dev, smoke=True, verbose=False)
        self.x, self.y = mnist.train_x[:N_TRAIN], mnist.train_y[:N_TRAIN]
        self.test_x, self.test_y = mnist.test_x[:N_TEST], mnist.test_y[:N_TEST]
        self.art = synthetic_art(N_ART, 64).to(dev).float().div_(255)
        self.mnist = mnist

    def epoch(self, check: DoctorCheck, precision: str, compile: bool = False, channels_last: bool = False) -> str:
        torch.manual_seed(0)
        training = check.build(self.device)
        if channels_last:  # in place: the optimisers keep the same parameters
            for module in training.modules.values():
                module.to(memory_format=torch.channels_last)
        if check.data == "art":
            x, test_x, batch_size, labels = self.art, None, 32, {}
        else:
            x, test_x, batch_size = self.x, self.test_x, 64
            labels = {"train_y": self.y, "test_y": self.test_y} if check.data == "labelled digits" else {}
        epochs = 2 if compile else 1  # a compiled model's second epoch runs the compiled code
        history = fit(
            training,
            x,
            test_x,
            epochs=epochs,
            batch_size=batch_size,
            progress=False,
            precision=precision,
            compile=compile,
            **labels,
        )
        return f"{training.precision.mode}: {_finite(history.last)}, {history.last['seconds']:.2f} s/epoch"

    def resume(self) -> str:
        """Two epochs in one go equal one epoch, a new process's worth of fresh objects, and a resumed one."""
        settings = experiments.RECIPES[experiments.QUICKEST].settings
        x = self.x
        with tempfile.TemporaryDirectory() as folder:

            def run(epochs: int, seed: int, checkpoint):
                torch.manual_seed(seed)
                training = settings(epochs=epochs).fresh_training(self.device)
                fit(
                    training,
                    x,
                    self.test_x,
                    epochs=epochs,
                    batch_size=64,
                    progress=False,
                    checkpoint=checkpoint,
                    config={"epochs": epochs},
                )
                return training

            whole = run(2, 0, None)
            run(1, 0, Path(folder))
            resumed = run(2, 123, Path(folder))  # other seed: everything must come from the checkpoint
        with torch.no_grad():
            worst = max(
                float((a - b).abs().max()) for a, b in zip(whole.model.parameters(), resumed.model.parameters())
            )
        tolerance = 0.0 if self.device.type == "cpu" else 1e-5  # GPU kernels may sum in another order
        if worst > tolerance:
            raise AssertionError(f"the resumed run's weights differ from an uninterrupted run's by up to {worst:.3g}")
        return f"resumed weights equal an uninterrupted run's (largest difference {worst:.1g})"

    def reuse(self) -> str:
        """Notebook 04 loads notebook 01's run from its checkpoint instead of training again."""
        name = experiments.QUICKEST
        with tempfile.TemporaryDirectory() as folder, _environment(LABKIT_RUNS=folder, LABKIT_SMOKE="1"):
            cfg = experiments.RECIPES[name].settings(epochs=1)
            first = experiments.trained(name, self.mnist, self.device, cfg, progress=False)
            again = experiments.trained(name, self.mnist, self.device, cfg, progress=False)
        if first.reused or not again.reused:
            raise AssertionError("the second call trained again instead of reusing the run")
        return "the second call reused the checkpoint of the first"

    def ddp(self) -> str:
        """Two processes with torchrun, one GPU each, through the command line."""
        with tempfile.TemporaryDirectory() as folder:
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                "2",
                "-m",
                "labkit",
                "train",
                experiments.QUICKEST,
                "--epochs",
                "1",
                "--out",
                folder,
                "--no-progress",
            ]
            env = {**os.environ, "LABKIT_SMOKE": "1"}
            done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
            if done.returncode != 0 or not (Path(folder) / "metrics.json").is_file():
                raise RuntimeError(f"torchrun exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
        return "2 processes trained an epoch and rank 0 wrote metrics.json"


@contextlib.contextmanager
def _environment(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def checks(doctor: Doctor) -> list[tuple[str, Callable[[], str] | str]]:
    """(name, check) in the order they run; a string instead of a check says why it is skipped."""
    dev = doctor.device
    auto = Precision(dev, "auto").mode
    rows: list[tuple[str, Callable[[], str] | str]] = []
    for check in model_checks():
        rows.append((f"{check.name}: one epoch, precision auto ({auto})", lambda c=check: doctor.epoch(c, "auto")))
        forced = f"{check.name}: one epoch, float16 forced (as on a T4)"
        if not check.float16_on_cpu and dev.type == "cpu":  # PyTorch's CPU float16 convolutions are slow
            rows.append((forced, "its float16 convolutions take minutes on a CPU; the tests check it"))
        else:
            rows.append((forced, lambda c=check: doctor.epoch(c, "fp16")))
    rows.append(("resume from a checkpoint", doctor.resume))
    rows.append(("notebook 04 reuses a run", doctor.reuse))
    channels_last = dev.type == "cuda"
    for check in (check for check in model_checks() if check.compiled):
        rows.append(
            (
                f"{check.name}: {'channels-last, ' if channels_last else ''}compiled, two epochs",
                lambda c=check: doctor.epoch(c, "auto", compile=True, channels_last=channels_last),
            )
        )
    gpus = torch.cuda.device_count() if dev.type == "cuda" else 0
    rows.append(("2-process DDP (torchrun)", doctor.ddp if gpus >= 2 else f"needs 2 GPUs, {gpus} visible"))
    return rows


def run_checks(rows, out=print) -> list[Result]:
    """Run each check, print its row as soon as it ends, and return the results."""
    results = []
    width = max([len("check"), *(len(name) for name, _ in rows)]) + 2  # the longest check's name, then a gap
    out(f"{'check':<{width}}{'result':<8}{'seconds':>8}  detail")
    for name, check in rows:
        if isinstance(check, str):
            result = Result(name, None, 0.0, check)
        else:
            start = time.perf_counter()
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # the table is the output, not the checks' prints
                    detail = check()
                result = Result(name, True, 0.0, detail)
            except Exception as e:  # noqa: BLE001 - every failure is a row of the table, not a crash
                where = traceback.extract_tb(e.__traceback__)[-1]
                result = Result(
                    name,
                    False,
                    0.0,
                    f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                    f"({Path(where.filename).name}:{where.lineno})",
                )
            result.seconds = time.perf_counter() - start
        word = {True: "pass", False: "FAIL", None: "skip"}[result.ok]
        out(f"{name:<{width}}{word:<8}{result.seconds:>8.1f}  {result.detail}")
        results.append(result)
    return results


def main(device: str | None = None, out=print) -> int:
    """Print the environment and the table of checks; 0 when nothing failed, 1 otherwise."""
    dev = environment.pick_device(device)
    out("labkit doctor\n")
    for key, value in machine(dev):
        out(f"  {key:<30}{value}")
    out("")
    started = time.perf_counter()
    results = run_checks(checks(Doctor(dev)), out)
    failed = [r.name for r in results if r.ok is False]
    out(
        f"\n{sum(r.ok is True for r in results)} passed, {len(failed)} failed, "
        f"{sum(r.ok is None for r in results)} skipped in {time.perf_counter() - started:.0f} s on {dev}"
    )
    if failed:
        out(
            "Failed: " + "; ".join(failed) + ". The detail column says where; `python -m labkit doctor` again "
            "after a fix. If it stays red, report the whole output with your question."
        )
    return 1 if failed else 0
