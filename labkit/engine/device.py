"""Which device to train on, and seeding every random number generator for reproducible runs.

Used in the "Set-up" section of every notebook.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

_announced: set[str] = set()

# Where a student switches on a GPU that current torch supports (the P100 of Kaggle is not one).
GPU_ADVICE = {"Colab": "Runtime > Change runtime type > T4 GPU", "Kaggle": "Settings > Accelerator > GPU T4 x2"}


def _platform() -> str | None:
    from .settings import on_colab, on_kaggle

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


def pick_device(prefer: str | None = None, *, verbose: bool = True) -> torch.device:
    """Choose CUDA, then Apple's MPS, then the CPU, and say once which one and why.

    ``prefer`` (or ``$LABKIT_DEVICE``) forces one, e.g. ``"cpu"``; asking for a device that is
    not present is an error that says what is available.
    """
    wanted = (prefer or os.environ.get("LABKIT_DEVICE", "")).strip().lower()
    cuda_ok = torch.cuda.is_available()
    cuda_problem = unsupported_gpu() if cuda_ok else None
    mps_ok = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if wanted:
        if wanted.startswith("cuda") and not cuda_ok:
            raise RuntimeError(
                f"device {wanted!r} was asked for but no CUDA GPU is visible: {gpu_advice()}, or ask for 'cpu'."
            )
        if wanted.startswith("cuda") and cuda_problem:
            raise RuntimeError(f"device {wanted!r} was asked for but {cuda_problem}: {gpu_advice()}, or ask for 'cpu'.")
        if wanted == "mps" and not mps_ok:
            raise RuntimeError("device 'mps' was asked for but Apple's MPS backend is not available; ask for 'cpu'.")
        device, why = torch.device(wanted), "as asked"
    elif cuda_ok and cuda_problem:
        device, why = torch.device("cpu"), f"{cuda_problem}; training on the CPU instead. For a GPU, {gpu_advice()}"
    elif cuda_ok:
        device, why = torch.device("cuda"), f"CUDA GPU found: {torch.cuda.get_device_name(0)}"
    elif mps_ok:
        device, why = torch.device("mps"), "Apple GPU (MPS) found"
    else:
        device, why = torch.device("cpu"), "no GPU found (training is slower but works)"
    if verbose and str(device) not in _announced:
        _announced.add(str(device))
        print(f"labkit: using device {device} ({why})")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every GPU) with one number."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds CUDA and MPS generators
