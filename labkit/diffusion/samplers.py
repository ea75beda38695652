"""Drawing images from a trained denoiser: DDPM's ancestral sampler and DDIM for the noise-predicting
network, Euler and Heun for the flow-matching ODE, each with classifier-free guidance. Notebook 05,
"Sampling", writes the same updates out; ``network_evaluations`` counts what each costs.

A network is called ``net(x, time, labels)`` with ``time`` in [0, 1]; for the diffusion model the time of
step t is ``t / T``. Sampling runs without gradients, from noise drawn with ``generator`` when given.
"""

from __future__ import annotations

import math

import torch

from .schedule import NoiseSchedule

SAMPLERS = {"eps": ("ddpm", "ddim"), "flow": ("euler", "heun")}


def guided(net, x: torch.Tensor, time: torch.Tensor, labels, guidance: float, null_label: int | None):
    """The network's prediction with classifier-free guidance (Ho & Salimans 2022, eq. 6, written as
    eps_u + w (eps_c - eps_u)): w = 0 is the unconditional prediction, w = 1 the conditional one, w > 1
    pushes samples towards what makes them their class. One batched call computes both predictions."""
    if labels is None or guidance == 1:
        return net(x, time, labels)
    if guidance == 0:
        return net(x, time, torch.full_like(labels, null_label))
    both = net(torch.cat([x, x]), torch.cat([time, time]), torch.cat([labels, torch.full_like(labels, null_label)]))
    conditional, unconditional = both.float().chunk(2)
    return unconditional + guidance * (conditional - unconditional)


def ddpm_step(eps: torch.Tensor, t: int, x: torch.Tensor, schedule: NoiseSchedule, noise: torch.Tensor):
    """One ancestral step x_t -> x_{t-1} (Ho et al. 2020, algorithm 2, in its posterior-mean form), with the
    posterior variance beta-tilde_t = (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) beta_t; no noise is added at
    t = 0. The clean image the noise implies is clipped to the pixels' range [-1, 1] first, as the paper's
    released code does (``clip_denoised``; diffusers' ``clip_sample``): at the cosine schedule's last step
    (beta 0.999, alpha-bar 2e-9) it divides the network's error by 5e-5, and unclipped, the samples of the
    CPU defaults' model reached a classifier Fréchet distance of 164 where clipped ones reach 16
    (benchmarks/diffusion_steps.py). DDIM, which never visits that step, does without."""
    a_t = schedule.alphas_cumprod[t].item()
    a_prev = schedule.alphas_cumprod[t - 1].item() if t > 0 else 1.0
    beta, alpha = schedule.betas[t].item(), schedule.alphas[t].item()
    x0 = ((x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)).clamp(-1, 1)
    mean = math.sqrt(a_prev) * beta / (1 - a_t) * x0 + math.sqrt(alpha) * (1 - a_prev) / (1 - a_t) * x
    if t == 0:
        return mean
    variance = max((1 - a_prev) / (1 - a_t) * beta, 1e-20)
    return mean + math.sqrt(variance) * noise


def ddim_step(eps: torch.Tensor, t: int, t_prev: int, x: torch.Tensor, schedule: NoiseSchedule):
    """One deterministic DDIM step x_t -> x_{t_prev} (Song et al. 2021, eq. 12 with sigma = 0): estimate x_0
    from the predicted noise, then move it to the noise level of t_prev along the same noise. t_prev = -1
    means the clean image (alpha-bar = 1)."""
    a_t = schedule.alphas_cumprod[t].item()
    a_prev = schedule.alphas_cumprod[t_prev].item() if t_prev >= 0 else 1.0
    x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    return math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps


def ddim_timesteps(schedule: NoiseSchedule, steps: int) -> list[int]:
    """``steps`` evenly spaced training steps, largest first (diffusers' "leading" spacing: 900, 800, ... 0
    for 10 of 1000)."""
    ratio = schedule.steps // steps
    return [i * ratio for i in reversed(range(steps))]


def network_evaluations(sampler: str, steps: int, guidance: float | None = None) -> int:
    """Calls of the network per sample: one per step, Heun two per step but the last. ``guidance``: the weight
    of a conditional network (None: unconditional). At any weight but 0 and 1, ``guided`` mixes a conditional
    and an unconditional prediction, batched into one call of twice the batch and counted as two; at 0 or 1
    it makes one of them only."""
    calls = 2 * steps - 1 if sampler == "heun" else steps
    return calls * (1 if guidance is None or guidance in (0, 1) else 2)


def check_sampler(objective: str, sampler: str, steps: int, schedule_steps: int | None = None) -> None:
    """A clear error for a sampler that does not fit the objective, or a number of steps it cannot take."""
    if objective not in SAMPLERS:
        raise ValueError(f"unknown objective {objective!r}: choose eps (DDPM) or flow (flow matching)")
    if sampler not in SAMPLERS[objective]:
        raise ValueError(
            f"--sampler {sampler} does not sample a model trained with --objective {objective}: "
            f"choose {' or '.join(SAMPLERS[objective])}"
        )
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"--sample-steps must be a whole number of at least 1, not {steps!r}")
    if schedule_steps is not None and steps > schedule_steps:
        raise ValueError(f"--sample-steps {steps} is more than the model's {schedule_steps} noise levels")


@torch.no_grad()
def sample(
    net,
    shape: tuple[int, ...],
    *,
    objective: str,
    sampler: str,
    steps: int,
    schedule: NoiseSchedule | None = None,
    labels: torch.Tensor | None = None,
    guidance: float = 1.0,
    null_label: int | None = None,
    generator: torch.Generator | None = None,
    device=None,
    trajectory: list | None = None,
) -> torch.Tensor:
    """Images of ``shape`` (B, C, H, W) in [-1, 1] from noise. ``objective`` "eps" with ``sampler`` "ddpm"
    (``steps`` must be the schedule's T: ancestral sampling visits every level) or "ddim"; "flow" with "euler"
    or "heun". ``labels`` (B,) and ``guidance`` w for a conditional network. ``trajectory``: a list that
    receives the starting noise and x after every step (the noise-to-digit strip)."""
    check_sampler(objective, sampler, steps, schedule.steps if schedule is not None else None)
    if sampler == "ddpm" and steps != schedule.steps:
        raise ValueError(f"the DDPM sampler takes all {schedule.steps} steps; for fewer, use --sampler ddim")
    x = torch.randn(shape, generator=generator, device=device)
    _keep(trajectory, x)
    ones = torch.ones(shape[0], device=x.device)

    def predict(x, time):
        return guided(net, x, time * ones, labels, guidance, null_label).float()

    if objective == "eps":
        if sampler == "ddpm":
            for t in reversed(range(schedule.steps)):
                noise = torch.randn(shape, generator=generator, device=device) if t > 0 else None
                x = ddpm_step(predict(x, t / schedule.steps), t, x, schedule, noise)
                _keep(trajectory, x)
        else:
            times = ddim_timesteps(schedule, steps)
            for t, t_prev in zip(times, times[1:] + [-1]):
                x = ddim_step(predict(x, t / schedule.steps), t, t_prev, x, schedule)
                _keep(trajectory, x)
        return x
    dt = 1.0 / steps
    for i in range(steps):  # time runs from noise (0) to data (1)
        t = i * dt
        velocity = predict(x, t)
        if sampler == "heun" and i < steps - 1:  # Heun: average the slopes at both ends of the step
            x_euler = x + dt * velocity
            velocity = (velocity + predict(x_euler, t + dt)) / 2
        x = x + dt * velocity
        _keep(trajectory, x)
    return x


def _keep(trajectory, x):
    if trajectory is not None:
        trajectory.append(x.detach().cpu())
