"""The conditional GAN of notebook 03, "The conditional GAN" (Mirza & Osindero 2014, "Conditional
Generative Adversarial Nets"): the course's MLP GAN told which digit to draw. The one-hot label goes
into the generator beside the noise; the discriminator judges "is this a real *7*?" by projection
(Miyato & Koyama 2018): its last features of the image, dotted with a learnt vector per class, added to
its logit. ``d_conditioning="concat"`` is Mirza & Osindero's D instead, the one-hot beside the flattened
image, which learns the label late (notebook 03, "Why the label is heard late").
``python -m labkit train cgan`` trains it.

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
D_CONDITIONING = ("projection", "concat")  # how D is told the label: the default first


def class_indices(labels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``labels`` as class indices (B,) on the device of ``like``, a batch of B images or codes: one integer each."""
    if labels.dim() != 1 or labels.is_floating_point() or len(labels) != len(like):
        raise ValueError(
            f"a conditional GAN expects one class index per image, shape ({len(like)},), integer; "
            f"got {tuple(labels.shape)} of {labels.dtype}"
        )
    return labels.to(like.device).long()


def one_hot(labels: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """Class indices (B,) as one-hot rows (B, num_classes) in the dtype and on the device of ``like``."""
    return F.one_hot(class_indices(labels, like), num_classes).to(like.dtype)


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
    """The course's MLP discriminator with the label beside the image (Mirza & Osindero 2014):
    [flatten(x), one_hot(y)] (B, 784 + 10) -> 512 -> 256 -> 1 logit (B,), LeakyReLU(0.2).
    Ten of its 794 inputs carry the label, through the same first layer as the pixels: D learns to use them only
    once the images alone no longer tell real from fake, so G hears the label late (``d_conditioning="concat"``)."""

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


class ProjectionMLPDiscriminator(nn.Module):
    """The course's MLP discriminator told the label by projection (Miyato & Koyama 2018, "cGANs with Projection
    Discriminator", eq. 3): D(x, y) = psi(phi(x)) + <embed(y), phi(x)>, where
    phi: flatten(x) (B, 784) -> 512 -> 256 features (B, 256), LeakyReLU(0.2);
    psi: a linear "is it real?" logit of the features (B,); embed(y): a learnt vector per class (B, 256).
    The class term is a logit of its own from the first step, so D can say "not a 7" before it can say "not a
    digit", and G hears the label early (``d_conditioning="projection"``, the default)."""

    def __init__(
        self, num_classes: int = N_CLASSES, hidden: Sequence[int] = (512, 256), image_shape: Sequence[int] = (1, 28, 28)
    ):
        super().__init__()
        self.num_classes = settings.whole_number("num_classes", num_classes, low=2)
        sizes = [math.prod(image_shape), *hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2, inplace=True)]  # (B, 512) (B, 256)
        self.features = nn.Sequential(nn.Flatten(1), *layers)  # phi: (B, C, H, W) -> (B, 256)
        self.realness = nn.Linear(sizes[-1], 1)  # psi: (B, 256) -> (B, 1)
        self.class_embedding = nn.Embedding(num_classes, sizes[-1])  # embed: (B,) -> (B, 256), N(0, 1) at first

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        phi = self.features(x)  # (B, 256)
        projection = (self.class_embedding(class_indices(labels, x)) * phi).sum(1)  # (B,)
        return self.realness(phi).squeeze(1) + projection  # (B,) logits


def conditional_gan(
    latent_dim: int = LATENT_DIM, image_shape: Sequence[int] = (1, 28, 28), d_conditioning: str = "projection"
) -> tuple[ConditionalMLPGenerator, nn.Module]:
    """The conditional MLP pair, for 28x28 MNIST unless ``image_shape`` says otherwise; ``d_conditioning`` is how
    D is told the label: "projection" (``ProjectionMLPDiscriminator``) or "concat" (``ConditionalMLPDiscriminator``)."""
    discriminator = {"projection": ProjectionMLPDiscriminator, "concat": ConditionalMLPDiscriminator}
    settings.one_of("d_conditioning", d_conditioning, D_CONDITIONING)
    return (
        ConditionalMLPGenerator(latent_dim, image_shape=image_shape),
        discriminator[d_conditioning](image_shape=image_shape),
    )


def digit_rows(generator: nn.Module, seed: int = 0, per_digit: int = 10):
    """A figure with one row per digit 0-9: ``per_digit`` draws of each (fixed noise of ``seed``)."""
    labels = torch.arange(generator.num_classes).repeat_interleave(per_digit)
    images = sample(generator, len(labels), seed=seed, labels=labels.to(next(generator.parameters()).device))
    return plots.image_grid(images, nrow=per_digit, value_range=(-1, 1), title="cGAN: one row per digit 0-9")
