"""How well a trained VAE models the test digits, in nats per image: the test ELBO split into its
reconstruction and KL parts, and the tighter importance-weighted bound on -log p(x) (notebook 04).
"""

from __future__ import annotations

import math

import torch

from ..data import batches
from ..losses import bernoulli_nll
from .losses import kl_divergence, reparameterize


@torch.no_grad()
def elbo_decomposition(
    vae, x: torch.Tensor, samples: int = 1, seed: int = 0, batch_size: int = 1000
) -> dict[str, float]:
    """The test ELBO split into its parts, per image in nats: recon + kl = neg_elbo.

    ``recon`` = E_q[-log p(x|z)] estimated with ``samples`` draws of z per image; ``kl`` is exact.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    recon = kl = 0.0
    for xb in batches(x, batch_size=batch_size, shuffle=False):
        mu, logvar = vae.encode(xb)
        kl += kl_divergence(mu, logvar).sum().item()
        for _ in range(samples):
            recon += bernoulli_nll(vae.decode_logits(reparameterize(mu, logvar)), xb).sum().item() / samples
    torch.random.set_rng_state(generator_state)
    n = len(x)
    return {"recon": recon / n, "kl": kl / n, "neg_elbo": (recon + kl) / n}


@torch.no_grad()
def importance_weighted_bound(vae, x: torch.Tensor, k: int = 64, seed: int = 0, batch_size: int = 250) -> float:
    """-log p(x) estimated with k importance samples (Burda, Grosse & Salakhutdinov 2016, eq. 8).

    log p(x) >= log 1/k sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x). For k = 1 this is the ELBO;
    it tightens as k grows, so the returned negative bound is <= the negative ELBO (nats per image).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    total = 0.0
    for xb in batches(x, batch_size=batch_size, shuffle=False):
        mu, logvar = vae.encode(xb)  # (B, D)
        std = torch.exp(0.5 * logvar)
        z = mu + std * torch.randn(k, *mu.shape, device=mu.device)  # (k, B, D)
        log_q = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)  # (k, B)
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)  # (k, B)
        logits = vae.decode_logits(z.flatten(0, 1))  # (k*B, C, H, W)
        log_lik = -bernoulli_nll(logits, xb.repeat(k, 1, 1, 1)).view(k, -1)  # (k, B)
        log_w = log_lik + log_prior - log_q
        total += -(torch.logsumexp(log_w, dim=0) - math.log(k)).sum().item()
    torch.random.set_rng_state(generator_state)
    return total / len(x)


def elbo_terms(test: dict) -> dict:
    """The test split's ELBO terms as a VAE's metrics.json ``final`` names them, from ``evaluate`` of a VAE's
    (or the conditional VAE's) training: the negative ELBO, its reconstruction and KL terms in nats, and the MSE."""
    return {
        "test_neg_elbo_nats": test["neg_elbo"],
        "test_recon_nats": test["recon"],
        "test_kl_nats": test["kl"],
        "test_mse": test["mse"],
    }
