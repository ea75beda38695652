"""Where labkit runs and how big a run is: the device to train on (CUDA, Apple's MPS or the CPU), Colab or
Kaggle, smoke mode (``LABKIT_SMOKE=1``: every notebook and command on reduced epochs and data, with no edits),
the data root and the runs folder, and seeding every random number generator for reproducible runs.

Used in the "Set-up" and "Settings" cells at the top of every notebook.
"""

from __future__ import annotations

import os
import random
import re
import sys
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

_announced: set[str] = set()

# Where a student switches on a GPU that current torch supports (the P100 of Kaggle is not one).
GPU_ADVICE = {"Colab": "Runtime > Change runtime type > T4 GPU", "Kaggle": "Settings > Accelerator > GPU T4 x2"}


def on_kaggle() -> bool:
    """Whether this runs in a Kaggle notebook."""
    return "KAGGLE_KERNEL_RUN_TYPE" in os.environ


def on_colab() -> bool:
    """Whether this runs in a Colab notebook."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def _platform() -> str | None:
    return "Colab" if on_colab() else "Kaggle" if on_kaggle() else None


def gpu_advice() -> str:
    """Which accelerator to choose instead, in words fit for the student's platform."""
    where = _platform()
    if where:
        return f"on {where} choose {GPU_ADVICE[where]}"
    return "use a GPU of compute capability 7.5 or newer (T4, L4, A100, H100, RTX 20xx and later)"


def hosted_gpu_problem(platform: str | None = None) -> str | None:
    """What the set-up cell says about the GPU on Colab or Kaggle (``platform``, default: detected):
    none switched on, or one this torch cannot use (Kaggle's P100); None when the GPU is fine."""
    platform = platform or _platform()
    advice = GPU_ADVICE.get(platform, "a GPU runtime")
    if not torch.cuda.is_available():
        return (
            f"No GPU in this {platform} runtime, so training will be slow: switch one on with {advice}, then run "
            "the notebook again from the top."
        )
    problem = unsupported_gpu()
    if problem:
        return (
            f"{problem[0].upper()}{problem[1:]}, so labkit trains on the CPU (slowly): switch to {advice}, then "
            "run the notebook again from the top."
        )
    return None


def unsupported_gpu(index: int = 0) -> str | None:
    """Why this torch build cannot run on CUDA GPU ``index``, or None when it can.

    ``torch.cuda.is_available()`` is True on any NVIDIA GPU with a driver, but a torch build only
    ships kernels for some architectures (``torch.cuda.get_arch_list()``): current builds dropped
    the P100 (capability 6.0), and training there fails at the first layer with "no kernel image
    is available". A kernel compiled for sm_XY runs on capability X.Y and later minor versions of
    the same X; PTX (compute_XY) is compiled on the fly for any capability from X.Y on."""
    major, minor = torch.cuda.get_device_capability(index)
    archs = torch.cuda.get_arch_list()
    if not archs:  # a build that does not say: assume it works, as torch does
        return None
    for arch in archs:
        kind, _, number = arch.partition("_")
        number = number.rstrip("abcdefghijklmnopqrstuvwxyz")  # sm_90a: the same architecture
        if len(number) < 2 or not number.isdigit():
            continue
        arch_major, arch_minor = int(number[:-1]), int(number[-1])
        if kind == "sm" and arch_major == major and arch_minor <= minor:
            return None
        if kind == "compute" and (arch_major, arch_minor) <= (major, minor):
            return None
    return (
        f"this GPU ({torch.cuda.get_device_name(index)}, compute capability {major}.{minor}) is not supported "
        f"by torch {torch.__version__}, which ships kernels for {', '.join(archs)}"
    )


class DeviceUnavailable(ValueError, RuntimeError):
    """A device was asked for (``--device``, ``LABKIT_DEVICE``, ``pick_device("...")``) that this machine cannot
    train on. A ``ValueError`` like every other bad setting, so that the command line reports it in one line;
    also a ``RuntimeError``, so that code catching the error ``pick_device`` always raised keeps working."""


# The devices that can be asked for by name: "cuda" and "cuda:N" for NVIDIA GPUs, "mps" for Apple's, "cpu".
_DEVICE_NAME = re.compile(r"(cpu|mps|cuda)(?::(\d+))?")
DEVICE_CHOICES = "cpu, cuda (an NVIDIA GPU; cuda:N picks GPU number N), or mps (the GPU of an Apple silicon Mac)"


def mps_available() -> bool:
    """Whether Apple's MPS backend (the GPU of an Apple silicon Mac) can be used by this torch."""
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def available_devices() -> list[str]:
    """The devices labkit can train on here, as ``pick_device`` accepts them: ``cpu`` always, then each
    CUDA GPU this torch supports (``cuda:0``, ...) and ``mps`` on an Apple silicon Mac."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count()) if unsupported_gpu(i) is None]
    if mps_available():
        found.append("mps")
    return found


def check_device(name: str, asked_by: str = "") -> torch.device:
    """``name`` (cpu, cuda, cuda:N, mps; any case) as a ``torch.device`` when this machine can train on it;
    otherwise ``DeviceUnavailable`` saying what is missing, which devices there are here and how to get a GPU.
    ``asked_by`` says where the name came from (``LABKIT_DEVICE``), for the message."""
    wanted = name.strip().lower()
    asked = f"device {name!r}" + (f" ({asked_by})" if asked_by else "")
    here = f"devices here: {', '.join(available_devices())}"
    match = _DEVICE_NAME.fullmatch(wanted)
    if match is None or (match[2] is not None and match[1] != "cuda"):
        raise DeviceUnavailable(f"{asked} is not a device name: choose {DEVICE_CHOICES} ({here}).")
    kind, index = match[1], int(match[2] or 0)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"{asked} was asked for but no CUDA GPU is visible ({here}). For a GPU, {gpu_advice()}; "
                "or ask for 'cpu' (or leave the device out to use the best one here)."
            )
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceUnavailable(
                f"{asked} was asked for but this machine has {count} CUDA GPU{'s' if count != 1 else ''}, "
                f"numbered from 0 ({here}): ask for one of those."
            )
        problem = unsupported_gpu(index)
        if problem:
            raise DeviceUnavailable(f"{asked} was asked for but {problem}: {gpu_advice()}, or ask for 'cpu'.")
    if kind == "mps" and not mps_available():
        raise DeviceUnavailable(
            f"{asked} was asked for but Apple's MPS backend is not available: it needs a Mac with Apple silicon "
            f"and macOS 12.3 or later ({here}). For a GPU elsewhere, {gpu_advice()}; or ask for 'cpu'."
        )
    return torch.device(wanted)


def pick_device(prefer: str | torch.device | None = None, *, verbose: bool = True) -> torch.device:
    """Choose CUDA, then Apple's MPS, then the CPU, and say once which one and why.

    ``prefer`` (or ``$LABKIT_DEVICE``) forces one, e.g. ``"cpu"``; asking for a device that is
    not present, or for a name that is no device, is a ``DeviceUnavailable`` error that says which
    devices there are here (``check_device``).
    """
    prefer = "" if prefer is None else str(prefer)  # a torch.device works too
    from_environment = not prefer.strip()
    wanted = (os.environ.get("LABKIT_DEVICE", "") if from_environment else prefer).strip()
    cuda_ok = torch.cuda.is_available()
    cuda_problem = unsupported_gpu() if cuda_ok else None
    if wanted:
        device, why = check_device(wanted, "LABKIT_DEVICE" if from_environment else ""), "as asked"
    elif cuda_ok and cuda_problem:
        device, why = torch.device("cpu"), f"{cuda_problem}; training on the CPU instead. For a GPU, {gpu_advice()}"
    elif cuda_ok:
        device, why = torch.device("cuda"), f"CUDA GPU found: {torch.cuda.get_device_name(0)}"
    elif mps_available():
        device, why = torch.device("mps"), "Apple GPU (MPS) found"
    else:
        device, why = torch.device("cpu"), "no GPU found (training is slower but works)"
    if verbose and str(device) not in _announced:
        _announced.add(str(device))
        print(f"labkit: using device {device} ({why})")
    return device


def flush_denormals() -> bool:
    """Have this CPU treat float32 numbers below about 1.2e-38 ("denormals") as zero, in this thread and the
    worker threads it starts later; ``labkit`` calls it when it is imported. Returns whether the CPU supports it.

    Arithmetic on denormals is many times slower on x86 CPUs, and Adam makes them: a weight whose gradient is
    zero at every step (the encoder's weights from pixels that are black in every digit) keeps a running mean
    of its gradient that shrinks by 0.9 a step, into the denormals after some 700 steps. Measured on a 2-core CPU,
    notebook 02's VAE trains its first five epochs in about 0.5 s each, then in about 1 s each from the sixth
    on; with denormals flushed every epoch stays near 0.5 s, and every test loss is the same to 0.01 nats.
    Nothing the course trains needs numbers that small. The setting belongs to a thread and the threads it
    starts, so it is made on import, before PyTorch starts its pool of worker threads; GPUs are unaffected.
    """
    return torch.set_flush_denormal(True)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every GPU) with one number."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds CUDA and MPS generators


def rng_state() -> dict:
    """The state of every generator a run draws from, in types ``weights_only`` loading accepts."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": (version, list(mt_state), gauss),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put every generator back where ``rng_state`` found it.

    The generator states must be CPU tensors (``labkit.engine.checkpoint.safe_load`` loads them there). A run
    saved on more GPUs than this machine has (Kaggle's two T4s, resumed on one GPU or none) restores the states
    of the GPUs that exist; GPUs the run did not have keep their own."""
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


# --------------------------------------------------------------------------- smoke mode and folders

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
    here = Path(__file__).resolve().parents[2]  # labkit/engine/environment.py -> the checkout
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
