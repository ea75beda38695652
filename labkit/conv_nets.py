"""The convolutional encoder and decoder stacks of the autoencoder and the VAE for colour images and
for sizes other than MNIST's 28 x 28 (``--dataset cifar10``, ``--image-size 64``, a folder of your own
images). The course's MLPs stay the networks of 1 x 28 x 28 images; ``labkit.ae.ConvAutoencoder`` and
``labkit.vae.ConvVAE`` are built from these stacks, and ``network_for`` picks MLP or convolutions.

Each stride-2 convolution (kernel 4, padding 1) halves the image, down to a grid of 4 to 7 pixels a
side (28 -> 14 -> 7, 32 -> 16 -> 8 -> 4, 64 -> 32 -> 16 -> 8 -> 4); the decoder mirrors it with
transposed convolutions that double it back, as in the DCGAN of notebook 03 (without batch norm).
For a 3 x 32 x 32 image:

    encoder (B, 3, 32, 32) -> (B, 32, 16, 16) -> (B, 64, 8, 8) -> (B, 128, 4, 4) -> (B, 2048) features
    decoder (B, latent) -> (B, 2048) -> (B, 128, 4, 4) -> (B, 64, 8, 8) -> (B, 32, 16, 16) -> (B, 3, 32, 32) logits
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

from torch import nn

from .engine import settings
from .models import MNIST_SHAPE

CONV_WIDTHS = (32, 64, 128, 256)  # channels after the 1st, 2nd, ... halving; deeper levels keep the last
SMALLEST_GRID = 4  # the encoder stops halving before a side would fall below this


def halvings(side: int) -> int:
    """How often the encoder halves an image side: while it is even and its half is at least 4 pixels."""
    n = 0
    while side % 2 == 0 and side // 2 >= SMALLEST_GRID:
        side, n = side // 2, n + 1
    return n


def conv_plan(image_shape: Sequence[int]) -> tuple[list[int], tuple[int, int, int]]:
    """(channels after each halving, shape (channels, h, w) of the smallest grid) for ``image_shape``
    (C, H, W); a clear error for images the stack cannot halve at least twice."""
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (channels, height, width), got {tuple(image_shape)!r}")
    c, h, w = (settings.whole_number("every size in image_shape", s) for s in image_shape)
    n = min(halvings(h), halvings(w))
    if n < 2:
        raise ValueError(
            f"the convolutional network halves each image side at least twice, so it needs sides that are "
            f"multiples of 4 and at least 16 pixels (28, 32, 64, ...), got {h}x{w}: choose another --image-size"
        )
    widths = [CONV_WIDTHS[min(i, len(CONV_WIDTHS) - 1)] for i in range(n)]
    return widths, (widths[-1], h >> n, w >> n)


def conv_encoder(image_shape: Sequence[int]) -> tuple[nn.Sequential, int]:
    """Stride-2 convolutions with ReLU, then flattened: images (B, C, H, W) -> features (B, n_features).
    Returns the stack and n_features (channels x h x w of the smallest grid)."""
    widths, grid = conv_plan(image_shape)
    layers: list[nn.Module] = []
    n_in = image_shape[0]
    for n_out in widths:
        layers += [nn.Conv2d(n_in, n_out, 4, stride=2, padding=1), nn.ReLU()]  # (B, n_out, H/2, W/2) each
        n_in = n_out
    layers.append(nn.Flatten())  # (B, channels * h * w), e.g. (B, 128 * 4 * 4) for 32 x 32
    return nn.Sequential(*layers), math.prod(grid)


def conv_decoder(image_shape: Sequence[int], latent_dim: int) -> nn.Sequential:
    """The encoder mirrored: a linear layer from the code (B, latent_dim) to the smallest grid, then
    stride-2 transposed convolutions back to (B, C, H, W). It returns logits (nothing after the last layer)."""
    widths, grid = conv_plan(image_shape)
    layers: list[nn.Module] = [
        nn.Linear(latent_dim, math.prod(grid)),  # (B, channels * h * w)
        nn.ReLU(),
        nn.Unflatten(1, grid),  # (B, channels, h, w), e.g. (B, 128, 4, 4)
    ]
    outputs = [*reversed(widths[:-1]), image_shape[0]]
    n_in = widths[-1]
    for i, n_out in enumerate(outputs):
        layers.append(nn.ConvTranspose2d(n_in, n_out, 4, stride=2, padding=1))  # (B, n_out, 2h, 2w) each
        if i < len(outputs) - 1:
            layers.append(nn.ReLU())
        n_in = n_out
    return nn.Sequential(*layers)  # (B, C, H, W) logits


def network_for(image_shape: Sequence[int], model_class: type, mlp_class: type, conv_class: type, **sizes) -> nn.Module:
    """The network for images of ``image_shape``: ``model_class(**sizes)`` for 1 x 28 x 28 (the course's
    MLP, or the class a notebook defines); for any other shape ``conv_class`` when ``model_class`` is the
    default ``mlp_class``, or ``model_class(..., image_shape=...)`` when it takes one."""
    shape = tuple(image_shape)
    if shape == MNIST_SHAPE:
        return model_class(**sizes)
    if model_class is mlp_class:
        return conv_class(latent_dim=sizes["latent_dim"], image_shape=shape)
    if "image_shape" in inspect.signature(model_class).parameters:
        return model_class(**sizes, image_shape=shape)
    c, h, w = shape
    raise ValueError(
        f"{model_class.__name__} is built for 1x28x28 images and these are {c}x{h}x{w}: leave model_class at "
        f"its default ({mlp_class.__name__}; labkit then trains a convolutional network) or give your class "
        "an image_shape argument"
    )
