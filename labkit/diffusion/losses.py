"""The two objectives of notebook 05, "Two ways to learn to denoise", each next to its paper. The network
is called ``net(x_t, time, labels)`` with ``time`` in [0, 1] (see ``labkit.diffusion.unet.UNet``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .schedule import NoiseSchedule, flow_interpolate

TIME_DENSITIES = ("uniform", "logit-normal")


def drop_labels(labels: torch.Tensor | None, p: float, null_label: int, generator=None) -> torch.Tensor | None:
    """Classifier-free guidance's training trick (Ho & Salimans 2022, algorithm 1): each label is replaced by
    the "no label" class ``null_label`` with probability ``p``, so one network learns both the conditional
    and the unconditional prediction."""
    if labels is None or p <= 0:
        return labels
    drop = torch.rand(labels.shape, generator=generator, device=labels.device) < p
    return torch.where(drop, torch.full_like(labels, null_label), labels)


def eps_loss(net, schedule: NoiseSchedule, x0: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """DDPM's simplified objective (Ho et al. 2020, eq. 14): noise an image to a random step t in closed form
    and train the network to predict the noise, || eps - eps_theta(x_t, t) ||^2, averaged over pixels.
    ``x0`` (B, C, H, W) in [-1, 1]."""
    t = schedule.sample_steps(len(x0), device=x0.device)
    noise = torch.randn_like(x0)
    x_t = schedule.q_sample(x0, t, noise)
    return F.mse_loss(net(x_t, t.float() / schedule.steps, labels).float(), noise.float())


def sample_times(n: int, density: str = "uniform", device=None) -> torch.Tensor:
    """Times in (0, 1) for flow matching: uniform, or logit-normal (Esser et al. 2024, section 3.1), which
    trains more often at the middle times where predicting the velocity is hardest."""
    if density == "uniform":
        return torch.rand(n, device=device)
    if density == "logit-normal":
        return torch.sigmoid(torch.randn(n, device=device))
    raise ValueError(f"unknown time density {density!r}: choose one of {', '.join(TIME_DENSITIES)}")


def flow_matching_loss(
    net, x1: torch.Tensor, labels: torch.Tensor | None = None, density: str = "uniform"
) -> torch.Tensor:
    """Conditional flow matching on the straight path (Lipman et al. 2023, eq. 23; Liu et al. 2023): at a random
    time t, x_t = t x1 + (1 - t) noise moves at the constant velocity x1 - noise, and the network learns it,
    || (x1 - noise) - v_theta(x_t, t) ||^2. ``x1`` (B, C, H, W): data in [-1, 1]."""
    t = sample_times(len(x1), density, device=x1.device)
    noise = torch.randn_like(x1)
    x_t = flow_interpolate(x1, noise, t)
    return F.mse_loss(net(x_t, t, labels).float(), (x1 - noise).float())
