"""Notebook 02's exercises: the KL divergence and the reparameterisation."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..vae.losses import kl_divergence
from .checking import Verdict, Wrong, as_tensor, call_check, check_against, not_a_function, not_done, shape_text


def _gaussian_case(g):
    b, d = int(torch.randint(4, 9, (1,), generator=g)), int(torch.randint(2, 4, (1,), generator=g))  # b != d
    mu = torch.randn(b, d, generator=g)
    logvar = torch.randn(b, d, generator=g)
    return (mu, logvar), f"mu and logvar of shape ({b}, {d})", {}


def check_kl(fn: Callable) -> Verdict:
    """Exercise of notebook 02: ``fn(mu, logvar)`` returns KL( N(mu, sigma^2) || N(0, I) ) per image,
    summed over latent dimensions: shape (B,), like ``labkit.vae.kl_divergence``."""
    return check_against(fn, "kl", kl_divergence, "labkit.vae.kl_divergence", _gaussian_case, "one number per image")


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
        z = as_tensor(call_check(fn, name, (mu, logvar), inputs), name, "one sample per row of mu")
        if z.shape != mu.shape:
            raise Wrong(
                f"your {name} returned shape {shape_text(z)} on {inputs}; expected one sample z "
                f"per row of mu, the same shape {shape_text(mu)}."
            )
        again = as_tensor(call_check(fn, name, (mu, logvar), inputs), name, "one sample per row of mu")
        if torch.equal(z, again):
            raise Wrong(
                f"your {name} returned the same z twice: draw fresh noise eps on every call (torch.randn_like)."
            )
        for row, (m, lv) in enumerate(zip(mu[:2], logvar[:2])):
            got_mean, got_std = z[row::2].mean(0), z[row::2].std(0)
            want_std = torch.exp(0.5 * lv)
            if not torch.allclose(got_mean, m, atol=0.05 * want_std.max().item() + 0.02):
                raise Wrong(f"the samples of your {name} have mean {got_mean.tolist()} where mu is {m.tolist()}.")
            if not torch.allclose(got_std, want_std, rtol=0.05):
                hint = (
                    " That is exp(logvar): sigma is exp(logvar / 2)."
                    if torch.allclose(got_std, torch.exp(lv), rtol=0.05)
                    else ""
                )
                raise Wrong(
                    f"the samples of your {name} have standard deviation {[round(v, 3) for v in got_std.tolist()]} "
                    f"where sigma = exp(logvar / 2) is {want_std.tolist()}.{hint}"
                )
        mu_g = torch.zeros(4, 3, requires_grad=True)
        logvar_g = torch.zeros(4, 3, requires_grad=True)
        z_g = call_check(fn, name, (mu_g, logvar_g), "mu and logvar of shape (4, 3)")
        if not isinstance(z_g, torch.Tensor) or not z_g.requires_grad:
            raise Wrong(
                f"no gradient flows through your {name}: build z from mu and logvar with torch "
                "operations (mu + sigma * eps), not from a fresh random draw."
            )
        z_g.sum().backward()
        if mu_g.grad is None or not torch.allclose(mu_g.grad, torch.ones_like(mu_g)):
            raise Wrong(
                f"dz/dmu should be 1 for every element; with your {name} it is "
                f"{None if mu_g.grad is None else mu_g.grad.flatten()[:4].tolist()}."
            )
        if logvar_g.grad is None or not logvar_g.grad.abs().sum() > 0:
            raise Wrong(f"no gradient reaches logvar through your {name}: sigma must be computed from logvar.")
        return name

    if not callable(fn):
        return not_a_function(fn)
    try:
        with torch.random.fork_rng():  # the notebook's random numbers stay as they were
            name = run()
    except NotImplementedError:
        return not_done(getattr(fn, "__name__", "reparameterize"))
    except Wrong as e:
        return Verdict("wrong", str(e))
    return Verdict(
        "correct",
        f"correct: {name} draws z ~ N(mu, sigma^2) like labkit.vae.reparameterize "
        f"(mean and spread over {samples} draws, fresh noise, gradients to mu and logvar).",
    )
