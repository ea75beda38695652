"""labkit: the helper library of a lab-notebook course on autoencoders, VAEs and GANs in PyTorch.

Modules, one job each: ``settings`` (smoke mode, folders), ``device`` (device, seeds), ``data``
(resident MNIST), ``art`` (abstract art, CIFAR-10), ``models`` (AE, VAE), ``gan``, ``losses``,
``train`` (the one training loop), ``plots``, ``metrics``, ``runs`` (metrics.json and figures),
``report`` (REPORT.md) and ``experiments`` / ``gan_experiments`` (defaults and headless recipes).
"""

from . import art, data, device, experiments, gan, losses, metrics, models, plots, runs, settings, train
from .device import pick_device, seed_everything
from .settings import pick, smoke_mode

__version__ = "0.1.0"

__all__ = [
    "art",
    "data",
    "device",
    "experiments",
    "gan",
    "losses",
    "metrics",
    "models",
    "plots",
    "runs",
    "settings",
    "train",
    "pick",
    "pick_device",
    "seed_everything",
    "smoke_mode",
]
