"""A run's output folder: its figures and its ``metrics.json``, the file reports are built from.

Notebooks and ``python -m labkit train`` write the same format (see COURSE.md, "Fixed interfaces").
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..data import ImageData
from . import distributed, environment, files, tensorboard
from .checkpoint import FILE_NAME as CHECKPOINT_FILE
from .loop import fit
from .optim import count_parameters
from .training import History, seconds_per_epoch

METRICS_FILE = "metrics.json"

_OPENED: list[Run] = []  # runs that made their folder in this process (``remove_unused_runs``)


def installed_version(package: str) -> str:
    """The installed version of ``package`` from its metadata (no import), or "not installed"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def versions_and_hardware() -> dict:
    """Library versions and hardware, recorded in every metrics.json (versions read from the
    installed packages' metadata: importing torchvision or scikit-learn just for this costs seconds)."""
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{name: installed_version(name) for name in ("torchvision", "numpy", "scikit-learn", "matplotlib")},
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "processes": distributed.world_size(),
    }  # > 1 under torchrun: batch_size is per process
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


class Run:
    """The folder one training run writes to (default ``runs/<name>``), created up front.

    ``save_figure`` writes PNGs beside ``metrics.json``; ``write_metrics`` writes the record.
    A folder that cannot be written is reported before any training starts. A run that fails
    before writing anything removes the folders it created (``remove_if_unused``), never a
    folder that was there before it.
    """

    def __init__(self, name: str, out: str | Path | None = None):
        self.name = name
        self.dir = Path(out) if out is not None else environment.runs_root() / name
        self.created = _missing_folders(self.dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.dir, prefix=".write-test-"):
                pass
        except OSError as e:
            self.remove_if_unused()
            raise PermissionError(
                f"cannot write to the output folder {self.dir} ({e.strerror or e}). Choose a writable "
                "folder with --out DIR (on Kaggle: under /kaggle/working) or set LABKIT_RUNS."
            ) from e
        if self.created:
            _OPENED.append(self)
        self.figures: dict[str, str] = {}

    def remove_if_unused(self) -> bool:
        """Remove the folders this run created, deepest first, as long as they are empty: what a run
        that failed before writing anything leaves. True when the run's folder is gone."""
        for folder in self.created:
            try:
                folder.rmdir()
            except FileNotFoundError:
                continue
            except OSError:  # not empty (something was written), or not ours to remove
                break
        return not self.dir.exists()

    @property
    def checkpoint_path(self) -> Path:
        """Where training saves its checkpoint after every epoch (``labkit.engine.checkpoint``)."""
        return self.dir / CHECKPOINT_FILE

    def save_figure(self, fig, name: str) -> Path:
        """Save a matplotlib figure as ``<name>.png`` in the run folder and remember it."""
        path = files.save_figure(fig, self.dir / f"{name}.png", dpi=110, bbox_inches="tight")
        self.figures[name] = path.name
        return path

    def write_metrics(
        self,
        *,
        model: str,
        epochs: int,
        seed: int,
        device: torch.device | str,
        data: ImageData,
        history: History,
        final: dict,
        hyperparameters: dict,
        **extra,
    ) -> Path:
        """Write ``metrics.json`` atomically (``labkit.engine.files``: a full disk leaves the old one).

        The file is strict JSON, which every tool reads: a number that is not finite (the seconds
        per epoch of a run that trained no epoch, a NaN loss) is written as ``null``, "not measured"."""
        record = {
            "model": model,
            "epochs": epochs,
            "seed": seed,
            "device": str(device),
            "smoke": environment.smoke_mode(),
            "dataset": data.info(),
            "hyperparameters": hyperparameters,
            "history": list(history),
            "final": final,
            "figures": dict(self.figures),
            "environment": versions_and_hardware(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **extra,
        }
        text = json.dumps(strict_json(record), indent=2, allow_nan=False)
        return files.write_text(self.dir / METRICS_FILE, text)

    def record(
        self,
        *,
        model: str,
        cfg,
        training,
        data: ImageData,
        history: History,
        final: dict,
        device: torch.device | str,
        note: str | None = None,
        **used,
    ) -> Trained:
        """Write ``metrics.json`` as every recipe and notebook does, and return the trained run.

        The hyperparameters are the settings as used: ``asdict(cfg)`` with the precision that
        ``auto`` chose and the values in ``used`` (for example the GAN's two learning rates).
        ``note``: a sentence the report shows under the run's title (what a CPU shrank: the DCGAN's epochs, the
        diffusion UNet)."""
        hyperparameters = {**asdict(cfg), "precision": training.precision.mode, **used}
        self.write_metrics(
            **({"note": note} if note else {}),
            model=model,
            epochs=len(history),
            seed=cfg.seed,
            device=device,
            data=data,
            history=history,
            final=final,
            hyperparameters=hyperparameters,
        )
        return Trained(self.name, cfg, training, history, load_metrics(self.dir), self.dir)


@dataclass
class Trained:
    """A trained model and its run: the training (the networks), settings, per-epoch history, the
    ``metrics.json`` record it wrote, its folder, and whether it was reused from an earlier run."""

    name: str
    cfg: object
    training: object
    history: History
    metrics: dict
    folder: Path
    reused: bool = False

    @property
    def final(self) -> dict:
        return self.metrics.get("final", {})

    @property
    def parameters(self) -> int:
        return sum(sum(p.numel() for p in m.parameters() if p.requires_grad) for m in self.training.modules.values())


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first: what ``mkdir(parents=True)``
    will create."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_unused_runs() -> list[Path]:
    """Remove the folders of the runs opened in this process that were left empty (the run failed
    before writing anything; ``Run.remove_if_unused``); return the run folders removed. A command
    that failed calls this before it reports the error, so that it leaves nothing behind."""
    removed = [run.dir for run in _OPENED if run.dir.exists() and run.remove_if_unused()]
    _OPENED.clear()
    return removed


def strict_json(value):
    """``value`` with every number that is not finite replaced by None (JSON's null), and tensors and
    NumPy numbers turned into Python floats: what ``json.dumps(..., allow_nan=False)`` accepts."""
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    number = float(value)  # a float, a 0-d tensor, a NumPy number
    return number if math.isfinite(number) else None


def start_run(
    name: str, seed: int, out: str | Path | None = None, device: str | None = None
) -> tuple[Run, torch.device]:
    """Open the run folder (failing now, not after training, if it is not writable), seed every
    generator and pick the device: the first step of every headless recipe. Under ``torchrun`` it
    also joins the job (``labkit.engine.distributed``), and the device is this process's GPU."""
    chosen = environment.pick_device(device)  # a device that is not here is refused before the folder is made
    run = Run(name, out)
    environment.seed_everything(seed)
    return run, distributed.init_from_env(chosen)


def training_cost(history: History, model: torch.nn.Module) -> dict:
    """Seconds per epoch (the first, warm-up epoch left out) and trainable parameters of a run: what every
    recipe's ``final`` records of its cost (notebook 04's ``compare.cost`` adds sampling)."""
    return {"seconds_per_epoch": seconds_per_epoch(history), "parameters": count_parameters(model)}


def fit_in_run(
    run: Run, training, data: ImageData, cfg, progress: bool = True, callbacks=(), labels: bool = False
) -> History:
    """``fit`` as every headless recipe calls it: checkpointed in the run folder after each epoch,
    so that the same command resumes a run that was cut off (and refuses another run's checkpoint).
    ``labels=True`` passes the labels to the steps (the conditional models). Under ``torchrun`` only
    rank 0 goes on to the figures and metrics.json: recipes return when
    ``labkit.engine.distributed.is_main()`` is false. Inside ``labkit.engine.tensorboard.log_every_run()``
    (``--tensorboard``) rank 0 also writes TensorBoard event files into ``run.dir / "tensorboard"``."""
    if labels and (data.train_y is None or data.test_y is None):
        raise ValueError(f"{training.name} is conditioned on labels, and {data.label} has none")
    with_labels = {"train_y": data.train_y, "test_y": data.test_y} if labels else {}
    logging = tensorboard.logging_every_run() and distributed.is_main()
    loggers = (
        [tensorboard.TensorBoardLogger.for_run(run, training, data, labels=labels, seed=cfg.seed)] if logging else []
    )
    try:
        return fit(
            training,
            data.train_x,
            data.test_x,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            callbacks=[*callbacks, *loggers],
            progress=progress,
            checkpoint=run.checkpoint_path,
            config=asdict(cfg),
            precision=cfg.precision,
            compile=cfg.compile,
            **with_labels,
        )
    except BaseException:
        run.remove_if_unused()  # training failed before its first checkpoint: no empty folder stays
        raise
    finally:
        for logger in loggers:
            logger.close()


# The parts of a metrics.json that readers index into, and the JSON type each must have. Any of them
# may be missing (records written by older versions, or by hand in a test); none may be another type.
RECORD_TYPES = {
    "model": str,
    "epochs": (int, str),  # notebook 04's comparison writes each model's epochs: "ae 20, vae 20, gan 100"
    "device": str,
    "smoke": bool,
    "dataset": dict,
    "hyperparameters": dict,
    "history": list,
    "final": dict,
    "figures": dict,
    "environment": dict,
    "note": str,
}
_JSON_NAMES = {str: "a string", int: "a whole number", bool: "true or false", dict: "an object", list: "a list"}


def record_problem(record) -> str | None:
    """What makes ``record`` (a parsed metrics.json) unfit to read, or None when it is fit.

    Checked once, where a record is read (``read_record``), so that the report, the submission
    and the grader can index into it without meeting a list where an object belongs. Values in
    ``final`` may be anything JSON holds: each reader decides what it accepts there (the gradebook
    takes only finite numbers)."""
    if not isinstance(record, dict):
        return f"it holds {_JSON_NAMES.get(type(record), type(record).__name__)}, not an object of named entries"
    for key, kind in RECORD_TYPES.items():
        value = record.get(key)
        if value is None:
            continue
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (bool not in kinds and isinstance(value, bool))
        if not ok:
            wanted = " or ".join(_JSON_NAMES[k] for k in kinds)
            return f'its "{key}" is {json.dumps(value)[:60]}, where {wanted} belongs'
    if not all(isinstance(row, dict) for row in record.get("history") or []):
        return 'its "history" holds an entry that is not an object of per-epoch numbers'
    for name, filename in (record.get("figures") or {}).items():
        if not isinstance(filename, str) or Path(filename).name != filename or filename in ("", ".", ".."):
            return f'its figure "{name}" is {json.dumps(filename)[:60]}, where a file name in the run folder belongs'
    return None


def read_record(path: str | Path) -> dict:
    """Read and check one metrics.json (``record_problem``); ``ValueError`` naming the file and
    what to do when it cannot be read or does not have the shape of a labkit run."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON
        raise ValueError(f"{path} cannot be read ({e}); delete it or rerun that notebook") from e
    problem = record_problem(record)
    if problem:
        raise ValueError(f"{path} is not a labkit run's metrics.json: {problem}. Delete it or rerun that notebook")
    return record


def load_metrics(folder: str | Path) -> dict:
    """Read a run's metrics.json, with a clear error when the run has not been made yet."""
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no {METRICS_FILE} in {Path(folder)}: run the notebook or "
            f"`python -m labkit train ...` with --out {Path(folder)} first"
        )
    return read_record(path)
