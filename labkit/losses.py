"""The objectives the course teaches, each next to the paper it comes from.

Notebook 02_vae ("The loss: reconstruction + KL") walks through ``kl_divergence`` and ``vae_loss``.
All values are per image: summed over pixels or latent dimensions, averaged over the batch, in nats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Sample z ~ N(mu, sigma^2) as z = mu + sigma * eps with eps ~ N(0, I).

    The randomness sits in eps, so gradients flow to mu and logvar (Kingma & Welling 2014,
    "Auto-Encoding Variational Bayes", section 2.4). Shapes: (B, latent) in, (B, latent) out.
    """
    std = torch.exp(0.5 * logvar)
    eps = torch.randn_like(std)
    return mu + std * eps


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, sigma^2) || N(0, I) ) per sample, summed over latent dimensions: shape (B,).

    Closed form from Kingma & Welling 2014, appendix B:
    -1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2).
    """
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


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


def vae_loss(
    x_logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0
) -> dict[str, torch.Tensor]:
    """The VAE objective: reconstruction + beta * KL, per image in nats (averaged over the batch).

    With beta = 1 the loss is the negative ELBO (Kingma & Welling 2014, eq. 10); beta > 1 is the
    beta-VAE of Higgins et al. 2017. Returns ``loss`` (what is minimised), ``recon``, ``kl`` and
    ``neg_elbo`` (= recon + kl whatever beta is).
    """
    recon = bernoulli_nll(x_logits, x).mean()
    kl = kl_divergence(mu, logvar).mean()
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl, "neg_elbo": recon + kl}
