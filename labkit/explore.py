"""What the sliders of the notebooks draw, as plain functions: a point of a 2-D VAE latent space
decoded and marked on the scatter of codes (notebook 02), and a walk between two GAN noise vectors
(notebook 03). The widgets only call these, so the drawing is tested without a browser.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import nn

from . import plots
from .models import generate

MARKER_GID = "explorer-marker"  # the gid of the marker line, so that tests (and you) can find it


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def decode_point(model: nn.Module, z1: float, z2: float) -> torch.Tensor:
    """The image the decoder of a 2-D latent model makes of the point (z1, z2): (1, C, H, W) on the CPU.

    Notebook 02, "Latent space explorer".
    """
    if getattr(model, "latent_dim", 2) != 2:
        raise ValueError(f"decode_point needs a model with a 2-D latent space, this one has {model.latent_dim}")
    z = torch.tensor([[float(z1), float(z2)]], device=_device(model))
    return model.decode(z).float().cpu()


def latent_explorer_figure(
    model: nn.Module,
    codes: torch.Tensor,
    labels: torch.Tensor,
    z1: float,
    z2: float,
    title: str = "test codes (latent means)",
) -> plt.Figure:
    """Left: the scatter of ``codes`` (N, 2) coloured by ``labels`` with a marker at (z1, z2);
    right: ``decode_point(model, z1, z2)``. Notebook 02, "Latent space explorer"."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4), gridspec_kw={"width_ratios": [1.4, 1]})
    plots.latent_scatter(codes, labels, title=title, ax=left)
    left.plot([z1], [z2], marker="X", color="black", markersize=14, markeredgecolor="white", gid=MARKER_GID)
    plots.image_grid(decode_point(model, z1, z2), nrow=1, title=f"decoded z = ({z1:.2f}, {z2:.2f})", ax=right)
    return fig


def _fractions(t) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float32).reshape(-1, 1)  # (T, 1)
    if ((t < 0) | (t > 1)).any():
        raise ValueError(f"interpolation fractions must lie in [0, 1], got {t.flatten().tolist()}")
    return t


def slerp(z_start: torch.Tensor, z_end: torch.Tensor, t) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016, "Sampling Generative Networks") from
    ``z_start`` (t = 0) to ``z_end`` (t = 1), both (D,); ``t`` one fraction or several: (T, D).

    Moves along the great circle between the two directions, so two vectors of equal length stay at
    that length all the way (a straight line cuts inside the sphere). Parallel vectors fall back to
    the straight line. Notebook 03, "Walking between two noise vectors".
    """
    t = _fractions(t).to(z_start.device)
    a, b = z_start.float(), z_end.float()
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if torch.sin(omega) < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def lerp(z_start: torch.Tensor, z_end: torch.Tensor, t) -> torch.Tensor:
    """The straight line from ``z_start`` (t = 0) to ``z_end`` (t = 1): (T, D), like ``plots.linear_path``."""
    t = _fractions(t).to(z_start.device)
    return (1 - t) * z_start.float() + t * z_end.float()


@torch.no_grad()
def walk_images(
    generator: nn.Module,
    z_start: torch.Tensor,
    z_end: torch.Tensor,
    t,
    spherical: bool = True,
    reference: int = 256,
    seed: int = 0,
) -> torch.Tensor:
    """G at the points ``t`` of the walk from ``z_start`` to ``z_end``: (T, C, H, W) in [-1, 1] on the CPU.

    The walk is ``slerp`` (or ``lerp`` with ``spherical=False``). Batch norm normalises over the batch,
    so an image of G depends a little on the other images of its batch: each walk is generated together
    with ``reference`` fixed noise vectors (drawn with ``seed``), so that a slider changes only z.
    Notebook 03, "Walking between two noise vectors".
    """
    device = _device(generator)
    path = (slerp if spherical else lerp)(z_start.to(device), z_end.to(device), t)  # (T, D)
    others = torch.randn(reference, path.shape[1], generator=torch.Generator().manual_seed(seed)).to(device)
    return generate(generator, torch.cat([path, others]))[: len(path)]
