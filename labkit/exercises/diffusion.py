"""Notebook 05's exercises: q(x_t | x_0) in closed form, the DDIM update and the flow-matching target."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..diffusion import samplers as diffusion_samplers
from ..diffusion.schedule import NoiseSchedule, flow_interpolate
from .checking import Verdict, averaging_mistakes, check_against

_SCHEDULES = {}  # the two noise schedules of the diffusion checks, made once
# The checks' images are 9 x 9 so that no batch size (2 to 8) equals a side: a value per image of shape (B,) that
# was not reshaped to (B, 1, 1, 1) fails to broadcast instead of silently scaling the images' columns.


def _schedule(kind: str) -> NoiseSchedule:
    if kind not in _SCHEDULES:
        _SCHEDULES[kind] = NoiseSchedule(kind, 1000)
    return _SCHEDULES[kind]


def _alpha_bar(schedule: NoiseSchedule, t) -> torch.Tensor:
    return schedule.alphas_cumprod[t].float().view(-1, 1, 1, 1)


def check_q_sample(fn: Callable) -> Verdict:
    """Exercise of notebook 05: ``fn(x0, t, noise, schedule)`` returns x_t ~ q(x_t | x_0) in closed form,
    sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) noise, for images x0 (B, C, H, W) in [-1, 1], integer
    steps t (B,) and a ``NoiseSchedule``, like ``NoiseSchedule.q_sample``."""

    def make_case(g):
        b = int(torch.randint(2, 9, (1,), generator=g))
        kind = ("cosine", "linear")[int(torch.randint(0, 2, (1,), generator=g))]
        x0 = torch.rand(b, 1, 9, 9, generator=g) * 2 - 1
        t = torch.randint(0, 1000, (b,), generator=g)
        noise = torch.randn(b, 1, 9, 9, generator=g)
        return (
            (x0, t, noise, _schedule(kind)),
            f"{b} images (B, 1, 9, 9), steps t of shape ({b},), the {kind} schedule",
            {},
        )

    def a(t, s):
        return _alpha_bar(s, t)

    mistakes = (
        (
            lambda x0, t, noise, s: a(t, s) * x0 + (1 - a(t, s)) * noise,
            "That is alpha-bar_t x0 + (1 - alpha-bar_t) noise: both weights need their square root.",
        ),
        (
            lambda x0, t, noise, s: (1 - a(t, s)).sqrt() * x0 + a(t, s).sqrt() * noise,
            "The two weights are swapped: the image keeps sqrt(alpha-bar_t), the noise gets sqrt(1 - alpha-bar_t).",
        ),
        (
            lambda x0, t, noise, s: (
                s.alphas[t].float().view(-1, 1, 1, 1).sqrt() * x0
                + (1 - s.alphas[t].float().view(-1, 1, 1, 1)).sqrt() * noise
            ),
            "You used alpha_t = 1 - beta_t of one step; q(x_t | x_0) needs the product alpha-bar_t "
            "(schedule.alphas_cumprod[t]).",
        ),
    )
    return check_against(
        fn,
        "q_sample",
        lambda x0, t, noise, s: s.q_sample(x0, t, noise),
        "labkit's NoiseSchedule.q_sample",
        make_case,
        "x_t, one noisy image per image of x0 (the same shape)",
        mistakes,
    )


def check_ddim_step(fn: Callable) -> Verdict:
    """Exercise of notebook 05: ``fn(eps, t, t_prev, x, schedule)`` takes one deterministic DDIM step from
    x_t to x_{t_prev} (Song et al. 2021, eq. 12 with sigma = 0) given the predicted noise ``eps``; t_prev = -1
    is the clean image (alpha-bar = 1). Like ``labkit.diffusion.samplers.ddim_step``; the first case is the
    last step, to t_prev = -1."""
    cases = []

    def make_case(g):
        cases.append(None)
        b = int(torch.randint(2, 9, (1,), generator=g))
        t = int(torch.randint(1, 951, (1,), generator=g))
        t_prev = -1 if len(cases) == 1 else int(torch.randint(-1, t, (1,), generator=g))
        x, eps = torch.randn(b, 1, 9, 9, generator=g), torch.randn(b, 1, 9, 9, generator=g)
        return (eps, t, t_prev, x, _schedule("cosine")), f"t = {t}, t_prev = {t_prev}, x of shape ({b}, 1, 9, 9)", {}

    def x0_of(eps, t, x, s):
        a_t = s.alphas_cumprod[t].item()
        return (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)

    def with_prev(a_prev):
        return lambda eps, t, t_prev, x, s: (
            math.sqrt(a_prev(t_prev, s)) * x0_of(eps, t, x, s) + math.sqrt(1 - a_prev(t_prev, s)) * eps
        )

    mistakes = (
        (
            lambda eps, t, t_prev, x, s: x0_of(eps, t, x, s),
            "That is the estimate of x_0; DDIM then moves it to the noise level of t_prev, along the same "
            "noise: sqrt(alpha-bar_prev) x0 + sqrt(1 - alpha-bar_prev) eps.",
        ),
        (
            with_prev(lambda t_prev, s: s.alphas_cumprod[t_prev].item()),
            "At t_prev = -1 (the last step, to the clean image) alpha-bar_prev is 1: schedule.alphas_cumprod[-1] "
            "is Python's last element, the noisiest level.",
        ),
    )
    return check_against(
        fn,
        "ddim_step",
        diffusion_samplers.ddim_step,
        "labkit.diffusion.samplers.ddim_step",
        make_case,
        "x at step t_prev, the same shape as x",
        mistakes,
    )


def _velocity_net(x: torch.Tensor, time: torch.Tensor, labels=None) -> torch.Tensor:
    """The stand-in network of the flow-matching check: any fixed function of x and the time will do."""
    return 0.5 * x + time.view(-1, 1, 1, 1) - 0.25


def check_flow_matching_loss(fn: Callable) -> Verdict:
    """Exercise of notebook 05: ``fn(net, x1, noise, t)`` returns the flow-matching loss with the random draws
    handed in: the point x_t = t x1 + (1 - t) noise of the straight path, and the mean squared error between
    ``net(x_t, t)`` and the velocity x1 - noise, one number (Lipman et al. 2023; Liu et al. 2023). ``net`` is
    a fixed stand-in function here, not a trained network."""

    def make_case(g):
        b = int(torch.randint(2, 9, (1,), generator=g))
        x1 = torch.rand(b, 1, 9, 9, generator=g) * 2 - 1
        noise, t = torch.randn(b, 1, 9, 9, generator=g), torch.rand(b, generator=g)
        return (
            (_velocity_net, x1, noise, t),
            f"{b} images (B, 1, 9, 9) and times t of shape ({b},)",
            (averaging_mistakes(b, pixels=81)),
        )

    def loss(path, target):
        return lambda net, x1, noise, t: F.mse_loss(net(path(x1, noise, t), t), target(x1, noise))

    def forward(x1, noise, t):
        return flow_interpolate(x1, noise, t)

    def backward(x1, noise, t):
        return flow_interpolate(noise, x1, t)

    mistakes = (
        (
            loss(backward, lambda x1, noise: x1 - noise),
            "Your path runs from the data at t = 0 to the noise at t = 1; here t = 0 is noise and t = 1 data: "
            "x_t = t x1 + (1 - t) noise.",
        ),
        (
            loss(forward, lambda x1, noise: noise - x1),
            "The target points from the data to the noise: the velocity of x_t = t x1 + (1 - t) noise is "
            "d x_t / dt = x1 - noise.",
        ),
        (
            loss(forward, lambda x1, noise: x1),
            "The network learns the velocity x1 - noise, not the image x1 itself.",
        ),
        (
            loss(forward, lambda x1, noise: noise),
            "The network learns the velocity x1 - noise, not the noise (that is DDPM's target).",
        ),
    )
    return check_against(
        fn,
        "flow_matching_loss",
        loss(forward, lambda x1, noise: x1 - noise),
        "labkit's flow-matching loss with the same draws",
        make_case,
        "one number for the batch (the mean over images and pixels)",
        mistakes,
    )
