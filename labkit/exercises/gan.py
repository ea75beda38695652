"""Notebook 03's exercise: the discriminator's loss."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..gan.training import discriminator_loss
from .checking import Verdict, averaging_mistakes, check_against


def check_discriminator_loss(fn: Callable) -> Verdict:
    """Exercise of notebook 03: ``fn(real_logits, fake_logits)`` returns D's loss
    -[log D(x) + log(1 - D(G(z)))] averaged over the batch, one number, from D's logits (B,),
    like ``labkit.gan.discriminator_loss``."""

    def make_case(g):
        b = int(torch.randint(2, 9, (1,), generator=g))
        real, fake = 3 * torch.randn(b, generator=g), 3 * torch.randn(b, generator=g)
        return (real, fake), f"real_logits and fake_logits of shape ({b},)", averaging_mistakes(b)

    return check_against(
        fn,
        "discriminator_loss",
        lambda r, f: discriminator_loss(r, f),
        "labkit.gan.discriminator_loss",
        make_case,
        "one number for the batch (the average over images)",
    )
