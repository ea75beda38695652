"""Which device to train on, and seeding every random number generator for reproducible runs.

Used in the "Set-up" section of every notebook.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

_announced: set[str] = set()


def pick_device(prefer: str | None = None, *, verbose: bool = True) -> torch.device:
    """Choose CUDA, then Apple's MPS, then the CPU, and say once which one and why.

    ``prefer`` (or ``$LABKIT_DEVICE``) forces one, e.g. ``"cpu"``; asking for a device that is
    not present is an error that says what is available.
    """
    wanted = (prefer or os.environ.get("LABKIT_DEVICE", "")).strip().lower()
    cuda_ok = torch.cuda.is_available()
    mps_ok = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if wanted:
        if wanted.startswith("cuda") and not cuda_ok:
            raise RuntimeError(
                f"device {wanted!r} was asked for but no CUDA GPU is visible. On Colab choose "
                "Runtime > Change runtime type > GPU; on Kaggle Settings > Accelerator > GPU; "
                "or ask for 'cpu'."
            )
        if wanted == "mps" and not mps_ok:
            raise RuntimeError("device 'mps' was asked for but Apple's MPS backend is not available; ask for 'cpu'.")
        device, why = torch.device(wanted), "as asked"
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
