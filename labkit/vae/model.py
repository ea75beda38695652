"""The VAE's networks (notebook 02, "The model"): the MLP VAE of 1 x 28 x 28 digits with its named variants,
and ``ConvVAE`` for colour images and other sizes (``--dataset``, ``--image-size``). Notebook 02 defines
``VAE`` in a cell with the same layer names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..conv_nets import conv_decoder, conv_encoder, conv_plan
from ..engine import settings
from ..models import DEFAULT_HIDDEN, MNIST_SHAPE, NARROW_HIDDEN, FlatImageModel, mlp
from .losses import reparameterize


class VAE(FlatImageModel):
    """Variational autoencoder with a Gaussian encoder q(z|x) and a Bernoulli decoder p(x|z).

    Inputs: ``latent_dim``; ``hidden`` encoder widths (the decoder mirrors them); ``image_shape``.
    The decoder returns logits; ``decode`` applies the sigmoid to give pixel probabilities.
    Use ``make_vae`` for the course's named variants. Explained in notebook 02, "The model".
    """

    def __init__(
        self, latent_dim: int = 32, hidden: Sequence[int] = DEFAULT_HIDDEN, image_shape: Sequence[int] = MNIST_SHAPE
    ):
        super().__init__(latent_dim, hidden, image_shape)
        n_pixels = math.prod(image_shape)
        self.encoder = nn.Sequential(
            nn.Flatten(),  # (B, 784)
            mlp([n_pixels, *hidden]),  # (B, 512) -> (B, 256)
            nn.ReLU(),
        )
        self.to_mu = nn.Linear(hidden[-1], latent_dim)  # (B, 32)
        self.to_logvar = nn.Linear(hidden[-1], latent_dim)  # (B, 32)
        self.decoder = nn.Sequential(
            mlp([latent_dim, *reversed(hidden), n_pixels]),  # (B, 256) -> (B, 512) -> (B, 784) logits
            nn.Unflatten(1, self.image_shape),  # (B, 1, 28, 28)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters of q(z|x): mean and log-variance, each (B, latent_dim)."""
        self._check_input(x)
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities (B, 1, 28, 28) for latent points z (B, latent_dim)."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (reconstruction logits, mu, logvar); z is drawn with the reparameterisation trick."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        return self.decode_logits(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Decode n draws from the prior N(0, I): (n, 1, 28, 28) pixel probabilities."""
        device = device or next(self.parameters()).device
        return self.decode(torch.randn(n, self.latent_dim, device=device))


class ConvVAE(VAE):
    """The VAE for colour images and sizes other than 28 x 28: the encoder's stride-2 convolutions end in
    the two linear heads of q(z|x), the decoder mirrors them (``labkit.conv_nets``) and returns logits of
    a Bernoulli p(x|z) per pixel and channel. Methods as ``VAE``'s. For 3 x 32 x 32 and ``latent_dim`` 32:
    (B, 3, 32, 32) -> (B, 128, 4, 4) -> mu, logvar (B, 32); z (B, 32) -> (B, 128, 4, 4) -> (B, 3, 32, 32).
    """

    def __init__(self, latent_dim: int = 32, image_shape: Sequence[int] = (3, 32, 32)):
        widths, _ = conv_plan(image_shape)
        FlatImageModel.__init__(self, latent_dim, widths, image_shape)  # other layers, ``VAE``'s methods
        self.encoder, n_features = conv_encoder(self.image_shape)  # (B, C, H, W) -> (B, n_features)
        self.to_mu = nn.Linear(n_features, latent_dim)  # (B, 32)
        self.to_logvar = nn.Linear(n_features, latent_dim)  # (B, 32)
        self.decoder = conv_decoder(self.image_shape, latent_dim)  # (B, 32) -> (B, C, H, W) logits


# The VAE variants of the course (notebook 02, "Three VAEs"):
VAE_VARIANTS = {
    "default": dict(hidden=DEFAULT_HIDDEN, latent_dim=32),  # the kit's default
    "narrow": dict(hidden=NARROW_HIDDEN, latent_dim=32),  # the narrower 784-128-64-32 MLP (labkit.models)
    "classic": dict(hidden=(400,), latent_dim=20),  # pytorch/examples vae/main.py
    "latent2": dict(hidden=DEFAULT_HIDDEN, latent_dim=2),  # a 2-D code you can look at directly
}


def make_vae(variant: str = "default", **overrides) -> VAE:
    """Build one of ``VAE_VARIANTS`` (default, narrow, classic, latent2); keyword overrides win."""
    settings.one_of("variant", variant, VAE_VARIANTS)
    return VAE(**{**VAE_VARIANTS[variant], **overrides})
