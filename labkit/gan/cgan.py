"""The conditional GAN of notebook 03, "The conditional GAN" (Mirza & Osindero 2014, "Conditional
Generative Adversarial Nets"): the course's MLP GAN told which digit to draw. The one-hot label goes
into the generator beside the noise and into the discriminator beside the image, so D judges "is this a
real *7*?" and G must draw the digit it was asked for. ``python -m labkit train cgan`` trains it.

The game is ``labkit.gan.GANTraining`` (or ``labkit.gan.wgan.WGANGPTraining``) unchanged: their steps pass
the batch's labels to both networks. Here are the two networks and what a run records about them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import plots
from ..engine import settings
from .nets import LATENT_DIM, MLPGenerator
from .training import sample

N_CLASSES = 10  # the ten digits


def one_hot(labels: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """Class indices (B,) as one-hot rows (B, num_classes) in the dtype and on the device of ``like``."""
    if labels.dim() != 1 or labels.is_floating_point() or len(labels) != len(like):
        raise ValueError(
            f"a conditional GAN expects one class index per image, shape ({len(like)},), integer; "
            f"got {tuple(labels.shape)} of {labels.dtype}"
        )
    return F.one_hot(labels.to(like.device).long(), num_classes).to(like.dtype)


class ConditionalMLPGenerator(MLPGenerator):
    """The course's MLP generator with the label beside the noise:
    [z, one_hot(y)] (B, 100 + 10) -> 128 -> 256 -> 512 -> 1024 -> 784 -> (B, 1, 28, 28) in [-1, 1]."""

    def __init__(
        self,
        latent_dim: int = LATENT_DIM,
        num_classes: int = N_CLASSES,
        hidden: Sequence[int] = (128, 256, 512, 1024),
        image_shape: Sequence[int] = (1, 28, 28),
    ):
        settings.whole_number("num_classes", num_classes, low=2)
        super().__init__(latent_dim + num_classes, hidden, image_shape)  # the first layer takes (B, 110)
        self.latent_dim, self.num_classes = latent_dim, num_classes

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, one_hot(labels, self.num_classes, z)], dim=1))  # (B, 110) -> (B, 1, 28, 28)


class ConditionalMLPDiscriminator(nn.Module):
    """The course's MLP discriminator with the label beside the image:
    [flatten(x), one_hot(y)] (B, 784 + 10) -> 512 -> 256 -> 1 logit (B,), LeakyReLU(0.2)."""

    def __init__(
        self, num_classes: int = N_CLASSES, hidden: Sequence[int] = (512, 256), image_shape: Sequence[int] = (1, 28, 28)
    ):
        super().__init__()
        self.num_classes = settings.whole_number("num_classes", num_classes, low=2)
        sizes = [math.prod(image_shape) + num_classes, *hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2, inplace=True)]  # (B, 512) (B, 256)
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], 1), nn.Flatten(0))  # (B,) logits

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)  # (B, 784)
        return self.net(torch.cat([flat, one_hot(labels, self.num_classes, flat)], dim=1))  # (B, 794) -> (B,)


def conditional_gan(
    latent_dim: int = LATENT_DIM, image_shape: Sequence[int] = (1, 28, 28)
) -> tuple[ConditionalMLPGenerator, ConditionalMLPDiscriminator]:
    """The conditional MLP pair, for 28x28 MNIST unless ``image_shape`` says otherwise."""
    return (
        ConditionalMLPGenerator(latent_dim, image_shape=image_shape),
        ConditionalMLPDiscriminator(image_shape=image_shape),
    )


def digit_rows(generator: nn.Module, seed: int = 0, per_digit: int = 10):
    """A figure with one row per digit 0-9: ``per_digit`` draws of each (fixed noise of ``seed``)."""
    labels = torch.arange(generator.num_classes).repeat_interleave(per_digit)
    images = sample(generator, len(labels), seed=seed, labels=labels.to(next(generator.parameters()).device))
    return plots.image_grid(images, nrow=per_digit, value_range=(-1, 1), title="cGAN: one row per digit 0-9")
