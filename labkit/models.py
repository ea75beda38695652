"""The networks of the course: the MLP autoencoder and the VAE variants (notebooks 01 and 02).

Every stack carries shape comments; ``model_summary`` prints the layers with their output
shapes and parameter counts ("Architecture" section of each notebook).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from . import settings
from .losses import reparameterize

MNIST_SHAPE = (1, 28, 28)


def _check_sizes(latent_dim: int, hidden: Sequence[int], image_shape: Sequence[int]) -> None:
    settings.whole_number("latent_dim", latent_dim)
    if not hidden:
        raise ValueError(f"hidden must be a non-empty list of layer sizes, got {hidden!r}")
    for size in hidden:
        settings.whole_number("every size in hidden", size)
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (channels, height, width), got {image_shape!r}")
    for size in image_shape:
        settings.whole_number("every size in image_shape", size)


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last): sizes [a, b, c] -> a->b->c."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _FlatImageModel(nn.Module):
    """Validates the sizes, and checks that inputs are images of the expected shape before the
    first layer sees them."""

    def __init__(self, latent_dim: int, hidden: Sequence[int], image_shape: Sequence[int]):
        super().__init__()
        _check_sizes(latent_dim, hidden, image_shape)
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.hidden = tuple(hidden)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            c, h, w = self.image_shape
            raise ValueError(
                f"{type(self).__name__} expects images of shape (batch, {c}, {h}, {w}), "
                f"got {tuple(x.shape)}. Reshape with x.view(-1, {c}, {h}, {w})."
            )


# Encoder widths. The course's handout network is 784 -> 128 -> 64 -> 32 (NARROW_HIDDEN); on the
# 4,000-digit offline subset that network learns too slowly to beat PCA (AE) or the classic VAE in
# 20 epochs, so the kit's default is wider (notebook 01, "Settings", shows both). The decoder mirrors the encoder.
DEFAULT_HIDDEN = (512, 256)
NARROW_HIDDEN = (128, 64)


class Autoencoder(_FlatImageModel):
    """The MLP autoencoder of notebook 01: 784 -> 512 -> 256 -> 32 -> 256 -> 512 -> 784 by default.

    Inputs: ``latent_dim`` size of the code; ``hidden`` encoder widths (the decoder mirrors them;
    ``NARROW_HIDDEN`` = (128, 64) is the course handout's narrower network); ``image_shape`` (C, H, W).
    ReLU between layers, a sigmoid on the output (pixels in [0, 1]).
    """

    def __init__(
        self, latent_dim: int = 32, hidden: Sequence[int] = DEFAULT_HIDDEN, image_shape: Sequence[int] = MNIST_SHAPE
    ):
        super().__init__(latent_dim, hidden, image_shape)
        n_pixels = math.prod(image_shape)
        self.encoder = nn.Sequential(
            nn.Flatten(),  # (B, 784)
            mlp([n_pixels, *hidden, latent_dim]),  # (B, 512) -> (B, 256) -> (B, 32)
        )
        self.decoder = nn.Sequential(
            mlp([latent_dim, *reversed(hidden), n_pixels]),  # (B, 256) -> (B, 512) -> (B, 784)
            nn.Sigmoid(),  # pixels in [0, 1]
            nn.Unflatten(1, self.image_shape),  # (B, 1, 28, 28)
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class VAE(_FlatImageModel):
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


# The VAE variants of the course (notebook 02, "Three VAEs"):
VAE_VARIANTS = {
    "default": dict(hidden=DEFAULT_HIDDEN, latent_dim=32),  # the kit's default
    "narrow": dict(hidden=NARROW_HIDDEN, latent_dim=32),  # the course handout's 784-128-64-32
    "classic": dict(hidden=(400,), latent_dim=20),  # pytorch/examples vae/main.py
    "latent2": dict(hidden=DEFAULT_HIDDEN, latent_dim=2),  # a 2-D code you can look at directly
}


def make_vae(variant: str = "default", **overrides) -> VAE:
    """Build one of ``VAE_VARIANTS`` (default, narrow, classic, latent2); keyword overrides win."""
    settings.one_of("variant", variant, VAE_VARIANTS)
    return VAE(**{**VAE_VARIANTS[variant], **overrides})


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_summary(model: nn.Module, input_shape: Sequence[int], device: torch.device | str | None = None) -> str:
    """A table of the leaf layers with their output shapes and parameter counts.

    Runs one forward pass on zeros of ``input_shape`` (batch included) with hooks on each layer.
    """
    device = device or next(model.parameters()).device
    rows: list[tuple[str, str, int]] = []
    hooks = []
    for name, module in model.named_modules():
        if len(list(module.children())) == 0:

            def hook(mod, _inp, out, name=name):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else "-"
                rows.append(
                    (
                        f"{name} ({type(mod).__name__})",
                        str(shape),
                        sum(p.numel() for p in mod.parameters(recurse=False)),
                    )
                )

            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    devices = [device] if torch.device(device).type == "cuda" else []
    try:  # the forward pass may draw random numbers (a VAE samples z): leave the generators as they were
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            model(torch.zeros(*input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'layer':<{width}}{'output shape':<22}{'parameters':>12}", "-" * (width + 34)]
    lines += [f"{n:<{width}}{s:<22}{p:>12,}" for n, s, p in rows]
    lines += ["-" * (width + 34), f"{'total trainable':<{width + 22}}{count_parameters(model):>12,}"]
    return "\n".join(lines)
