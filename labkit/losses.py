"""The Bernoulli likelihood of a binary image, the reconstruction term of the VAE's ELBO and the
test cross-entropy of the autoencoder: per image, summed over pixels, in nats.
The ELBO itself, with the KL term and the reparameterisation, is in ``labkit.vae``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bernoulli_nll(x_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x | z) for a Bernoulli decoder, per sample, summed over pixels: shape (B,).

    This is binary cross-entropy on the decoder's logits (sigmoid is applied inside, which is
    numerically stable and safe under mixed precision).
    """
    bce = F.binary_cross_entropy_with_logits(x_logits.float(), x.float(), reduction="none")
    return bce.flatten(1).sum(dim=1)


def bernoulli_nll_of_probabilities(probabilities: torch.Tensor, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The same -log p(x | z) per sample, summed over pixels (shape (B,)), for a model that outputs
    pixel probabilities (the autoencoder's sigmoid) instead of logits.

    Probabilities are clipped to [eps, 1 - eps] (a pixel predicted as exactly 0 or 1 would cost
    infinitely much) and turned back into logits. ``F.binary_cross_entropy`` on probabilities would
    give the same number on a CPU, but CUDA's mixed precision (autocast) refuses to run it at all, so
    the kit never calls it: this form runs everywhere.
    """
    logits = torch.logit(probabilities.float().clamp(eps, 1 - eps))
    return bernoulli_nll(logits, x)
