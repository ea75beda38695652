"""Every model's recipe and settings by name, as ``python -m labkit train MODEL`` and notebook 04 find
them: the autoencoder (``labkit.ae``), the VAE (``labkit.vae``), the conditional VAE (``labkit.vae.cvae``), the
VQ-VAE (``labkit.vae.vqvae``), the GANs (``labkit.gan.recipe``) and diffusion (``labkit.diffusion.recipe``).
"""

from __future__ import annotations

from .ae.recipe import AESettings, run_ae
from .diffusion.recipe import RECIPES_DIFFUSION
from .gan.recipe import RECIPES_GAN
from .vae.cvae import CVAESettings, run_cvae
from .vae.recipe import VAESettings, run_vae
from .vae.vqvae import VQVAESettings, run_vqvae

RECIPES = {
    "ae": (run_ae, AESettings),
    "vae": (run_vae, VAESettings),
    "cvae": (run_cvae, CVAESettings),
    "vqvae": (run_vqvae, VQVAESettings),
    **RECIPES_GAN,
    **RECIPES_DIFFUSION,
}


def settings_for(model: str, **overrides) -> object:
    """The settings object of ``model`` built with the given fields (None: the default, which may depend on the
    others, as a conditional diffusion model's epochs do)."""
    if model not in RECIPES:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[model][1](**{k: v for k, v in overrides.items() if v is not None})
