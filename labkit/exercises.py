"""Optional exercises of the notebooks, and the checks that compare a student's function with labkit's.

A check runs the function on a few random cases and returns a ``Verdict`` that says in words what is
right or what differs (shape, type, values); a stub that still raises ``NotImplementedError`` is
"not done yet", never an error. Each notebook offers its exercise near the end, under "Exercise".
Where a wrong answer is a usual mistake (a missing square root, a path run backwards), the check names it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .diffusion import samplers as diffusion_samplers
from .diffusion.schedule import NoiseSchedule, flow_interpolate
from .gan.training import discriminator_loss
from .vae.losses import kl_divergence

CASES = 5  # random cases per check


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: ``status`` is "correct", "not done" or "wrong"; shown as its message."""

    status: str
    message: str

    def __bool__(self) -> bool:
        return self.status == "correct"

    def __repr__(self) -> str:  # a check as the last line of a cell shows just the message
        return self.message

    __str__ = __repr__


def _not_done(name: str) -> Verdict:
    return Verdict(
        "not done",
        f"not done yet: {name} still raises NotImplementedError. "
        "Replace that line with your code and run the cell again.",
    )


def _averaging_mistakes(batch: int, pixels: int = 1) -> dict[float, str]:
    mistakes = {
        batch: "the batch size: average over the batch instead of summing",
        1 / batch: f"1/{batch}: sum where you averaged",
    }
    if pixels > 1:
        mistakes[pixels] = f"the number of pixels per image ({pixels}): average over the pixels too"
        mistakes[pixels * batch] = "the number of pixels in the batch: average instead of summing"
    return mistakes


class _Wrong(Exception):
    """Raised inside a check to stop at the first thing that is wrong, with what to tell the student."""


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape)) if t.dim() else "() (one number)"


def _as_tensor(result, name: str, what: str) -> torch.Tensor:
    """The student's result as a float tensor, or _Wrong saying what was expected instead."""
    if result is None:
        raise _Wrong(f"your {name} returned None: did you forget `return`? Expected {what}.")
    if isinstance(result, torch.Tensor):
        return result.detach().float().cpu()
    if isinstance(result, (int, float, np.floating, np.integer)) and not isinstance(result, bool):
        return torch.tensor(float(result))
    if isinstance(result, np.ndarray):
        return torch.from_numpy(result).float()
    raise _Wrong(f"your {name} returned a {type(result).__name__}; expected {what} as a torch tensor.")


def _call(fn: Callable, name: str, args: tuple, inputs: str):
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as e:  # the student's code failed: say where, without torch's traceback
        raise _Wrong(f"your {name} raised {type(e).__name__} on {inputs}: {e}") from None


def _hint(mine: torch.Tensor, expected: torch.Tensor, factors: dict[float, str]) -> str:
    """A guess at the usual mistake from how the two answers relate: a flipped sign, or a known factor
    (``factors`` maps a factor such as the batch size to what it means)."""
    if torch.allclose(mine, -expected, rtol=1e-4, atol=1e-5):
        return " It is the negative of the right answer: check the sign."
    nonzero = expected.abs() > 1e-6
    if not nonzero.any():
        return ""
    ratio = mine[nonzero] / expected[nonzero]
    r = ratio.flatten()[0].item()
    if not torch.allclose(ratio, torch.full_like(ratio, r), rtol=1e-3):
        return ""
    for factor, meaning in factors.items():
        if math.isclose(r, factor, rel_tol=1e-3):
            return f" It is {r:g} times the right answer, {meaning}."
    if ratio.numel() > 1:  # one number divided by another is always "a factor"
        return f" It is {r:.4g} times the right answer: a constant factor is off."
    return ""


def _not_a_function(fn) -> Verdict:
    return Verdict(
        "wrong",
        f"pass your function itself (its name, without parentheses after it); got a value of type {type(fn).__name__}.",
    )


def _known_mistake(mine: torch.Tensor, args: tuple, mistakes) -> str:
    """What a wrong answer is, when it equals one of ``mistakes``' (function, meaning) on the same inputs."""
    for wrong, meaning in mistakes:
        candidate = wrong(*args).detach().float()
        if candidate.shape == mine.shape and torch.allclose(mine, candidate, rtol=1e-4, atol=1e-5):
            return f" {meaning}"
    return ""


def _compare_cases(fn, name, reference, reference_name, make_case, what, g, mistakes=()) -> None:
    """Raise _Wrong at the first case where ``fn`` and ``reference`` disagree."""
    for case in range(1, CASES + 1):
        args, inputs, factors = make_case(g)
        expected = reference(*args).detach().float()
        mine = _as_tensor(_call(fn, name, args, inputs), name, what)
        if mine.shape != expected.shape:
            raise _Wrong(
                f"your {name} returned shape {_shape(mine)} on {inputs}; expected {what}, shape {_shape(expected)}."
            )
        if not torch.isfinite(mine).all():
            raise _Wrong(
                f"your {name} returned inf or nan on {inputs} (case {case}); "
                f"{reference_name} gives {expected.flatten()[:4].tolist()}."
            )
        if not torch.allclose(mine, expected, rtol=1e-4, atol=1e-5):
            worst = (mine - expected).abs().max().item()
            hint = _known_mistake(mine, args, mistakes) or _hint(mine, expected, factors)
            raise _Wrong(
                f"not yet right: on case {case} ({inputs}) your {name} gives "
                f"{[round(v, 4) for v in mine.flatten()[:4].tolist()]}, {reference_name} gives "
                f"{[round(v, 4) for v in expected.flatten()[:4].tolist()]} "
                f"(largest difference {worst:.3g}).{hint}"
            )


def _check_against(
    fn, name: str, reference: Callable, reference_name: str, make_case: Callable, what: str, mistakes=()
) -> Verdict:
    """Compare ``fn`` with ``reference`` on ``CASES`` random cases made by ``make_case(generator)``.

    ``make_case`` returns (args, description of the inputs, {factor: meaning} for the hints);
    ``what`` says in words what one answer should be; ``mistakes``: (function of the same args, what it
    means) pairs, the usual wrong answers, named when a student's answer equals one.
    """
    if not callable(fn):
        return _not_a_function(fn)
    name = getattr(fn, "__name__", name)
    g = torch.Generator().manual_seed(0)
    try:
        with torch.random.fork_rng():  # the notebook's random numbers stay as they were
            _compare_cases(fn, name, reference, reference_name, make_case, what, g, mistakes)
    except NotImplementedError:
        return _not_done(name)
    except _Wrong as e:
        return Verdict("wrong", str(e))
    return Verdict("correct", f"correct: {name} matches {reference_name} on {CASES} random cases.")


# --------------------------------------------------------------------------- notebook 01


def check_mse_per_pixel(fn: Callable) -> Verdict:
    """Exercise of notebook 01: ``fn(x, x_rec)`` returns the mean squared error per pixel of a batch,
    one number, as the autoencoder's training loss does (``F.mse_loss(x_rec, x)``)."""

    def make_case(g):
        b = int(torch.randint(2, 9, (1,), generator=g))
        x = torch.rand(b, 1, 28, 28, generator=g)
        return (
            (x, torch.rand(b, 1, 28, 28, generator=g)),
            f"a batch of {b} images (B, 1, 28, 28)",
            _averaging_mistakes(b, pixels=784),
        )

    return _check_against(
        fn,
        "mse_per_pixel",
        lambda x, x_rec: F.mse_loss(x_rec, x),
        "the AE's loss F.mse_loss(x_rec, x)",
        make_case,
        "one number for the whole batch (the mean over images and pixels)",
    )


# --------------------------------------------------------------------------- notebook 02


def _gaussian_case(g):
    b, d = int(torch.randint(4, 9, (1,), generator=g)), int(torch.randint(2, 4, (1,), generator=g))  # b != d
    mu = torch.randn(b, d, generator=g)
    logvar = torch.randn(b, d, generator=g)
    return (mu, logvar), f"mu and logvar of shape ({b}, {d})", {}


def check_kl(fn: Callable) -> Verdict:
    """Exercise of notebook 02: ``fn(mu, logvar)`` returns KL( N(mu, sigma^2) || N(0, I) ) per image,
    summed over latent dimensions: shape (B,), like ``labkit.vae.kl_divergence``."""
    return _check_against(fn, "kl", kl_divergence, "labkit.vae.kl_divergence", _gaussian_case, "one number per image")


def check_reparameterize(fn: Callable, samples: int = 20000) -> Verdict:
    """Exercise of notebook 02: ``fn(mu, logvar)`` draws z ~ N(mu, sigma^2) as mu + sigma * eps.

    Random answers cannot be compared number by number, so this checks what must hold: the shape,
    mean mu and standard deviation sigma = exp(logvar / 2) over ``samples`` draws, fresh noise on each
    call, and gradients dz/dmu = 1 that reach logvar too.
    """

    def run() -> str:
        name = getattr(fn, "__name__", "reparameterize")
        mu = torch.tensor([[0.0, 3.0], [-1.0, 0.5]]).repeat(samples // 2, 1)  # (samples, 2)
        logvar = torch.tensor([[0.0, math.log(4.0)], [math.log(0.25), 0.0]]).repeat(samples // 2, 1)
        inputs = f"mu and logvar of shape {tuple(mu.shape)}"
        torch.manual_seed(0)
        z = _as_tensor(_call(fn, name, (mu, logvar), inputs), name, "one sample per row of mu")
        if z.shape != mu.shape:
            raise _Wrong(
                f"your {name} returned shape {_shape(z)} on {inputs}; expected one sample z "
                f"per row of mu, the same shape {_shape(mu)}."
            )
        again = _as_tensor(_call(fn, name, (mu, logvar), inputs), name, "one sample per row of mu")
        if torch.equal(z, again):
            raise _Wrong(
                f"your {name} returned the same z twice: draw fresh noise eps on every call (torch.randn_like)."
            )
        for row, (m, lv) in enumerate(zip(mu[:2], logvar[:2])):
            got_mean, got_std = z[row::2].mean(0), z[row::2].std(0)
            want_std = torch.exp(0.5 * lv)
            if not torch.allclose(got_mean, m, atol=0.05 * want_std.max().item() + 0.02):
                raise _Wrong(f"the samples of your {name} have mean {got_mean.tolist()} where mu is {m.tolist()}.")
            if not torch.allclose(got_std, want_std, rtol=0.05):
                hint = (
                    " That is exp(logvar): sigma is exp(logvar / 2)."
                    if torch.allclose(got_std, torch.exp(lv), rtol=0.05)
                    else ""
                )
                raise _Wrong(
                    f"the samples of your {name} have standard deviation {[round(v, 3) for v in got_std.tolist()]} "
                    f"where sigma = exp(logvar / 2) is {want_std.tolist()}.{hint}"
                )
        mu_g = torch.zeros(4, 3, requires_grad=True)
        logvar_g = torch.zeros(4, 3, requires_grad=True)
        z_g = _call(fn, name, (mu_g, logvar_g), "mu and logvar of shape (4, 3)")
        if not isinstance(z_g, torch.Tensor) or not z_g.requires_grad:
            raise _Wrong(
                f"no gradient flows through your {name}: build z from mu and logvar with torch "
                "operations (mu + sigma * eps), not from a fresh random draw."
            )
        z_g.sum().backward()
        if mu_g.grad is None or not torch.allclose(mu_g.grad, torch.ones_like(mu_g)):
            raise _Wrong(
                f"dz/dmu should be 1 for every element; with your {name} it is "
                f"{None if mu_g.grad is None else mu_g.grad.flatten()[:4].tolist()}."
            )
        if logvar_g.grad is None or not logvar_g.grad.abs().sum() > 0:
            raise _Wrong(f"no gradient reaches logvar through your {name}: sigma must be computed from logvar.")
        return name

    if not callable(fn):
        return _not_a_function(fn)
    try:
        with torch.random.fork_rng():  # the notebook's random numbers stay as they were
            name = run()
    except NotImplementedError:
        return _not_done(getattr(fn, "__name__", "reparameterize"))
    except _Wrong as e:
        return Verdict("wrong", str(e))
    return Verdict(
        "correct",
        f"correct: {name} draws z ~ N(mu, sigma^2) like labkit.vae.reparameterize "
        f"(mean and spread over {samples} draws, fresh noise, gradients to mu and logvar).",
    )


# --------------------------------------------------------------------------- notebook 03


def check_discriminator_loss(fn: Callable) -> Verdict:
    """Exercise of notebook 03: ``fn(real_logits, fake_logits)`` returns D's loss
    -[log D(x) + log(1 - D(G(z)))] averaged over the batch, one number, from D's logits (B,),
    like ``labkit.gan.discriminator_loss``."""

    def make_case(g):
        b = int(torch.randint(2, 9, (1,), generator=g))
        real, fake = 3 * torch.randn(b, generator=g), 3 * torch.randn(b, generator=g)
        return (real, fake), f"real_logits and fake_logits of shape ({b},)", _averaging_mistakes(b)

    return _check_against(
        fn,
        "discriminator_loss",
        lambda r, f: discriminator_loss(r, f),
        "labkit.gan.discriminator_loss",
        make_case,
        "one number for the batch (the average over images)",
    )


# --------------------------------------------------------------------------- notebook 05

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
    return _check_against(
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
    return _check_against(
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
            (_averaging_mistakes(b, pixels=81)),
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
    return _check_against(
        fn,
        "flow_matching_loss",
        loss(forward, lambda x1, noise: x1 - noise),
        "labkit's flow-matching loss with the same draws",
        make_case,
        "one number for the batch (the mean over images and pixels)",
        mistakes,
    )
