"""labkit: the helper library of a lab-notebook course on autoencoders, VAEs and GANs in PyTorch.

Modules, one job each: ``settings`` (smoke mode, folders), ``device`` (device, seeds), ``data``
(resident datasets), ``models``, ``losses``, ``train`` (the one training loop), ``plots``,
``runs`` (metrics.json and figures) and ``experiments`` (defaults and headless recipes).
"""
from . import data, device, experiments, losses, models, plots, runs, settings, train
from .device import pick_device, seed_everything
from .settings import pick, smoke_mode

__version__ = "0.1.0"

__all__ = ["data", "device", "experiments", "losses", "models", "plots", "runs", "settings", "train",
           "pick", "pick_device", "seed_everything", "smoke_mode"]
