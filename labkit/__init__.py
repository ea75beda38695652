"""labkit: the helper library of a lab-notebook course on autoencoders, VAEs and GANs in PyTorch.

Modules, one job each: ``settings`` (smoke mode, folders, checking settings), ``device`` (device,
seeds), ``data`` (resident MNIST), ``art`` (abstract art, CIFAR-10), ``models`` (AE, VAE), ``losses``
(the VAE's objective), ``train`` (the AE and VAE objectives), ``gan`` (the GANs), ``loop`` (the one
training loop, on one screen), ``harness`` (what wraps it: resume, several GPUs, the NaN watch),
``precision`` (mixed precision), ``checkpoint``, ``plots``, ``metrics``, ``runs`` (metrics.json and
figures), ``report`` (REPORT.md), ``experiments`` / ``gan_experiments`` (defaults and headless
recipes), ``compare`` (notebook 04), ``doctor``, ``submit`` and ``grade`` (instructors).
"""

from . import (
    art,
    data,
    device,
    experiments,
    gan,
    harness,
    loop,
    losses,
    metrics,
    models,
    plots,
    precision,
    runs,
    settings,
    train,
)
from .device import pick_device, seed_everything
from .settings import pick, smoke_mode

__version__ = "0.1.0"

__all__ = [
    "art",
    "data",
    "device",
    "experiments",
    "gan",
    "harness",
    "loop",
    "losses",
    "metrics",
    "models",
    "plots",
    "precision",
    "runs",
    "settings",
    "train",
    "pick",
    "pick_device",
    "seed_everything",
    "smoke_mode",
]
