"""Where things live and how big a run is: smoke mode, the data root and the runs folder.

Smoke mode (``LABKIT_SMOKE=1``) runs every notebook and command on reduced epochs and data,
with no edits; see the "Settings" cell at the top of each notebook.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from .device import on_colab, on_kaggle, pick_device

T = TypeVar("T")

SMOKE_EPOCHS = 2  # epochs of every model in smoke mode

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def smoke_mode() -> bool:
    """True when ``LABKIT_SMOKE`` asks for reduced epochs and data.

    ``1``, ``true``, ``yes`` (any case) switch it on; ``0``, ``false``, ``no``, empty or unset
    mean full settings. Anything else is an error, so that a typo does not silently start an
    hour-long run.
    """
    raw = os.environ.get("LABKIT_SMOKE", "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(
        f"LABKIT_SMOKE={os.environ['LABKIT_SMOKE']!r} is not understood: "
        "use 1/true/yes for smoke mode or 0/false/no (or leave it unset) for full settings."
    )


def offline() -> bool:
    """True when ``LABKIT_OFFLINE`` (1/true/yes) says not to try any download at all."""
    return os.environ.get("LABKIT_OFFLINE", "").strip().lower() in _TRUE


def pick(full: T, smoke: T, cpu: T | None = None) -> T:
    """Return ``smoke`` in smoke mode and ``full`` otherwise: ``EPOCHS = pick(full=20, smoke=2)``.
    ``cpu``, if given, replaces ``full`` when the device labkit would train on is the CPU (no GPU, or
    ``LABKIT_DEVICE=cpu``): for the one model whose full settings take hours there (the DCGAN)."""
    if smoke_mode():
        return smoke
    if cpu is not None and training_on_cpu():
        return cpu
    return full


def training_on_cpu() -> bool:
    """Whether ``labkit.pick_device()`` would choose the CPU here."""
    return pick_device(verbose=False).type == "cpu"


def project_root() -> Path | None:
    """The checkout labkit runs from (the folder holding pyproject.toml), or None when installed."""
    here = Path(__file__).resolve().parents[2]  # labkit/engine/settings.py -> the checkout
    return here if (here / "pyproject.toml").is_file() and (here / "labkit").is_dir() else None


def data_root() -> Path:
    """The data root: ``$LABKIT_DATA`` if set, else ``data/`` of the checkout (or of the cwd).

    A ``LABKIT_DATA`` that does not exist is an error rather than an empty dataset.
    """
    env = os.environ.get("LABKIT_DATA", "").strip()
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"LABKIT_DATA points at {path}, which is not an existing folder. "
                "Create it (mkdir -p), point LABKIT_DATA at the folder that holds MNIST/ and "
                "abstract-art/, or unset it to use the kit's data/ folder."
            )
        return path
    root = project_root()
    path = (root if root is not None else Path.cwd()) / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


KAGGLE_WORKING = Path("/kaggle/working")  # kept with the notebook's output on Kaggle
COLAB_DRIVE = Path("/content/drive/MyDrive")  # Google Drive, once the student mounts it on Colab


def runs_location() -> tuple[Path, str]:
    """Where runs go and why: ``$LABKIT_RUNS``; on Kaggle its working folder; on Colab Google Drive
    when it is mounted (so checkpoints survive a disconnect); otherwise ``runs/`` of the checkout
    (or of the current folder when labkit is installed as a package)."""
    env = os.environ.get("LABKIT_RUNS", "").strip()
    if env:
        return Path(env).expanduser(), "LABKIT_RUNS"
    if on_kaggle() and KAGGLE_WORKING.is_dir():
        return KAGGLE_WORKING / "runs", "Kaggle's working folder, kept when you save a version"
    if on_colab():
        if COLAB_DRIVE.is_dir():
            return COLAB_DRIVE / "labkit" / "runs", "your Google Drive: it survives a disconnect"
        return Path.cwd() / "runs", (
            "the Colab runtime's disk, LOST when the runtime disconnects: mount Google Drive "
            "first (from google.colab import drive; drive.mount('/content/drive'))"
        )
    root = project_root()
    return (root if root is not None else Path.cwd()) / "runs", "the runs/ folder of this checkout"


def runs_root() -> Path:
    """Where runs write metrics.json, figures and checkpoints (see ``runs_location``)."""
    return runs_location()[0]


# --------------------------------------------------------------------------- checking settings
# Every setting of the kit (the settings dataclasses, the networks, the loop) is checked by one of
# these, so that a wrong value fails at once with a message that names it.


def whole_number(name: str, value, low: int = 1) -> int:
    """``value`` if it is a whole number >= ``low`` (not a float, not a bool); otherwise an error naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return value


def number(
    name: str,
    value,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    what: str = "",
) -> float:
    """``value`` as a float if it is a finite number within the bounds; otherwise an error naming
    ``name`` and saying ``what`` it must be (by default, the bounds)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (above is None or value > above) and (at_least is None or value >= at_least)
    ok = ok and (at_most is None or value <= at_most)
    if not ok:
        bounds = [
            f"> {above:g}" if above is not None else "",
            f">= {at_least:g}" if at_least is not None else "",
            f"<= {at_most:g}" if at_most is not None else "",
        ]
        what = what or "a number " + " and ".join(b for b in bounds if b)
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def learning_rate(name: str, value) -> float:
    """A learning rate: a finite number > 0."""
    return number(name, value, above=0, what="a positive number such as 1e-3")


def one_of(name: str, value: T, choices: Iterable[T], hint: str = "") -> T:
    """``value`` if it is one of ``choices``; otherwise an error listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(map(str, choices))}{f' ({hint})' if hint else ''}, got {value!r}"
        )
    return value
