"""Notebook 01's exercise: the mean squared error per pixel."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .checking import Verdict, averaging_mistakes, check_against


def check_mse_per_pixel(fn: Callable) -> Verdict:
    """Exercise of notebook 01: ``fn(x, x_rec)`` returns the mean squared error per pixel of a batch,
    one number, as the autoencoder's training loss does (``F.mse_loss(x_rec, x)``)."""

    def make_case(g):
        b = int(torch.randint(2, 9, (1,), generator=g))
        x = torch.rand(b, 1, 28, 28, generator=g)
        return (
            (x, torch.rand(b, 1, 28, 28, generator=g)),
            f"a batch of {b} images (B, 1, 28, 28)",
            averaging_mistakes(b, pixels=784),
        )

    return check_against(
        fn,
        "mse_per_pixel",
        lambda x, x_rec: F.mse_loss(x_rec, x),
        "the AE's loss F.mse_loss(x_rec, x)",
        make_case,
        "one number for the whole batch (the mean over images and pixels)",
    )
