"""The VAE's objective, each piece next to its paper: the reparameterisation, the KL term of a Gaussian
posterior against the standard normal prior, and the negative ELBO (notebook 02, "The loss"). Notebook 02
writes them out in cells with the same names; these are the copies the command line runs.

All values are per image: summed over pixels or latent dimensions, averaged over the batch, in nats.
"""

from __future__ import annotations

import torch

from ..losses import bernoulli_nll


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
