"""The autoencoder's networks (notebook 01, "The model"): the MLP of 1 x 28 x 28 digits, and
``ConvAutoencoder`` for colour images and other sizes (``--dataset``, ``--image-size``). Notebook 01 writes
``Autoencoder`` out in a cell with the same layer names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..conv_nets import conv_decoder, conv_encoder, conv_plan
from ..models import DEFAULT_HIDDEN, MNIST_SHAPE, FlatImageModel, mlp


class Autoencoder(FlatImageModel):
    """The MLP autoencoder of notebook 01: 784 -> 512 -> 256 -> 32 -> 256 -> 512 -> 784 by default.

    Inputs: ``latent_dim`` size of the code; ``hidden`` encoder widths (the decoder mirrors them;
    ``NARROW_HIDDEN`` = (128, 64) is the narrower 784-128-64-32 network); ``image_shape`` (C, H, W).
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


class ConvAutoencoder(Autoencoder):
    """The autoencoder for colour images and sizes other than 28 x 28: stride-2 convolutions down to a
    grid of 4 to 7 pixels a side, a linear layer to the code, and the mirror image back
    (``labkit.conv_nets``), a sigmoid on the output. For 3 x 32 x 32 and ``latent_dim`` 32:
    (B, 3, 32, 32) -> (B, 128, 4, 4) -> (B, 32) -> (B, 128, 4, 4) -> (B, 3, 32, 32).
    ``hidden`` (for ``FlatImageModel``) is the channels of the convolutions.
    """

    def __init__(self, latent_dim: int = 32, image_shape: Sequence[int] = (3, 32, 32)):
        widths, _ = conv_plan(image_shape)
        FlatImageModel.__init__(self, latent_dim, widths, image_shape)  # other layers, ``Autoencoder``'s methods
        features, n_features = conv_encoder(self.image_shape)
        self.encoder = nn.Sequential(
            features,  # (B, C, H, W) -> (B, n_features), e.g. (B, 2048) for 32 x 32
            nn.Linear(n_features, latent_dim),  # (B, 32): the code
        )
        self.decoder = nn.Sequential(
            conv_decoder(self.image_shape, latent_dim),  # (B, 32) -> (B, C, H, W) logits
            nn.Sigmoid(),  # pixels in [0, 1]
        )
