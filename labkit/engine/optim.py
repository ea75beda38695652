"""The optimiser of the course's trainings: Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic
Optimization"), in PyTorch's *fused* implementation wherever the parameters' device has one.

Adam's update is a handful of element-wise operations per parameter tensor. PyTorch's default
implementation on a CPU runs them as separate operations, one tensor at a time; the fused one computes a
tensor's whole update in one pass. For the course's small models that is a quarter of a step's time on
a CPU: measured on a 2-core CPU, the default VAE's epoch took 0.53 s with the default Adam and 0.39 s fused
(``benchmarks/vae_defaults.py``). The numbers it computes are Adam's, up to rounding. Notebook 02's
"Settings" cell has the measured table. ``count_parameters`` counts what an optimiser trains.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

# Devices with a fused Adam kernel in every PyTorch the kit supports (torch >= 2.4); elsewhere (Apple's
# MPS, for instance) Adam runs in PyTorch's default implementation.
FUSED_DEVICES = ("cpu", "cuda")
IMPLEMENTATION_KEYS = ("fused", "foreach")


def fused_supported(params: Sequence[torch.Tensor]) -> bool:
    """True when every parameter is a floating-point tensor on a device in ``FUSED_DEVICES``."""
    return bool(params) and all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params)


def adam(params: Iterable[torch.Tensor], lr: float, betas: Sequence[float] = (0.9, 0.999)) -> torch.optim.Adam:
    """``torch.optim.Adam`` over ``params``, fused where ``fused_supported`` (build the model on its device
    first). Every training of the kit makes its optimisers here, but for the digit classifier of
    ``labkit.metrics``, which keeps the implementation its Fréchet distances were measured with."""
    params = list(params)
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), fused=fused_supported(params) or None)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)`` keeping this optimiser's implementation: a saved state also
    records whether its steps were fused, and a checkpoint written on a CPU or GPU must resume on a device
    without the fused kernel (and the other way round) with the implementation that device has."""
    chosen = [{key: group.get(key) for key in IMPLEMENTATION_KEYS} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, implementation in zip(optimizer.param_groups, chosen):
        group.update(implementation)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters (those with ``requires_grad``): what an optimiser of ``model`` updates."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
