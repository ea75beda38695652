"""The VAE family of notebook 02 (a package, laid out as ``labkit.diffusion``).

losses      the reparameterisation, the KL term and the negative ELBO, each next to its paper
model       the VAE network and its named variants, and ``ConvVAE`` for other image shapes
training    one Adam step on the negative ELBO (``VAETraining``)
recipe      ``VAESettings`` and ``run_vae``: what ``python -m labkit train vae`` runs
evaluation  the test ELBO's parts and the importance-weighted bound
cvae        the conditional VAE: the label given to encoder and decoder
vqvae       the VQ-VAE: codebook, straight-through estimator, commitment loss
"""

from .losses import kl_divergence, reparameterize, vae_loss
from .model import VAE, VAE_VARIANTS, ConvVAE, make_vae
from .recipe import VAESettings, run_vae, vae_final, vae_run_name
from .training import VAETraining

__all__ = [
    "VAE",
    "VAE_VARIANTS",
    "ConvVAE",
    "VAESettings",
    "VAETraining",
    "kl_divergence",
    "make_vae",
    "reparameterize",
    "run_vae",
    "vae_final",
    "vae_loss",
    "vae_run_name",
]
