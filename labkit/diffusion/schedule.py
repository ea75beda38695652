"""The forward (noising) process of diffusion and the straight path of flow matching, in closed form.

Notebook 05, "The forward process", plots both schedules and shows q(x_t | x_0) on digits. Images are
scaled to [-1, 1] before noising (``to_signed``), so that pure noise and data have the same range.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("linear", "cosine")


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> [-1, 1], the range diffusion models noise and sample in."""
    return x * 2 - 1


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Samples in [-1, 1] -> pixels in [0, 1], clamped (a sampler may overshoot slightly)."""
    return ((x + 1) / 2).clamp(0, 1)


def linear_betas(steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's schedule (Ho et al. 2020, section 4): beta_t rising linearly from 1e-4 to 0.02 over 1000 steps."""
    return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)


def cosine_betas(steps: int = 1000, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule (Nichol & Dhariwal 2021, eq. 17): alpha-bar(t) = cos^2((t/T + s) / (1 + s) * pi/2),
    and beta_t = 1 - alpha-bar(t) / alpha-bar(t-1), clipped at 0.999. It destroys information more evenly
    than the linear schedule, which leaves the last few hundred steps almost pure noise."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2

    return torch.tensor(
        [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)],
        dtype=torch.float64,
    )


class NoiseSchedule:
    """The T noise levels of a diffusion model and the quantities every formula uses, indexed by step
    t = 0 .. T-1 (t = 0 is the least noisy): ``betas``, ``alphas`` = 1 - beta, ``alphas_cumprod``
    (alpha-bar_t, the product of alphas up to t). Kept in float64 on the CPU, where the samplers read
    them as Python numbers (1 - alpha-bar_0 = 1e-4 loses a thousandth in float32); noising a batch reads a
    float32 copy on the batch's device.

    ``kind``: "linear" (DDPM) or "cosine" (improved DDPM); ``steps``: T."""

    def __init__(self, kind: str = "cosine", steps: int = 1000):
        if kind not in SCHEDULES:
            raise ValueError(f"unknown noise schedule {kind!r}: choose one of {', '.join(SCHEDULES)}")
        if steps < 2:
            raise ValueError(f"a noise schedule needs at least 2 steps, not {steps}")
        self.kind, self.steps = kind, steps
        self.betas = linear_betas(steps) if kind == "linear" else cosine_betas(steps)
        self.alphas = 1 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        self._alpha_bar_on: dict[torch.device, torch.Tensor] = {}

    def __repr__(self) -> str:
        return f"NoiseSchedule({self.kind!r}, steps={self.steps})"

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """alpha-bar at integer steps ``t`` (B,), float32 shaped (B, 1, 1, 1) to broadcast over images, on
        t's device (no copy to the host: a GPU step does not wait)."""
        if t.device not in self._alpha_bar_on:
            self._alpha_bar_on[t.device] = self.alphas_cumprod.float().to(t.device)
        return self._alpha_bar_on[t.device][t].view(-1, 1, 1, 1)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) = N(sqrt(alpha-bar_t) x_0, (1 - alpha-bar_t) I) in one step (Ho et al. 2020,
        eq. 4): x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) noise. ``x0`` (B, C, H, W) in [-1, 1]."""
        a = self.alpha_bar(t).to(x0.dtype)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def sample_steps(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """``n`` training steps drawn uniformly from 0 .. T-1."""
        return torch.randint(0, self.steps, (n,), generator=generator, device=device)


def flow_interpolate(x1: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The straight path of flow matching (Lipman et al. 2023; Liu et al. 2023, rectified flow) from noise
    at t = 0 to data ``x1`` at t = 1: x_t = t x1 + (1 - t) noise. ``t`` (B,) in [0, 1]."""
    t = t.view(-1, 1, 1, 1).to(x1.dtype)
    return t * x1 + (1 - t) * noise
