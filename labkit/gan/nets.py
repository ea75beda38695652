"""The networks of notebook 03: the DCGAN generator and discriminator (28, 32 and 64 pixels; Radford
et al. 2016), its generator upsampling by resize-then-convolve (Odena et al. 2016) or by transposed
convolutions, and the course's MLP GAN for MNIST, with the tensor shape after every block.

Generators end in tanh, so they draw pixels in [-1, 1]; discriminators return logits (B,), never
probabilities (the losses in ``labkit.gan`` take logits). Notebook 03, "The networks", writes the
64x64 pair out in cells with the same layer names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..engine import settings

LATENT_DIM = 100
IMAGE_SIZES = (28, 32, 64)
DOWNSAMPLING = ("stride", "maxpool")
UPSAMPLING = ("resize", "transposed")


def _check_image_size(image_size) -> int:
    if image_size not in IMAGE_SIZES:
        raise ValueError(
            f"image_size {image_size!r} is not supported: the DCGAN networks are built for "
            f"{', '.join(map(str, IMAGE_SIZES))} pixels (28 MNIST, 32 CIFAR-10, 64 abstract art)"
        )
    return image_size


def _project(c_in: int, c_out: int, side: int) -> nn.Sequential:
    """The generator's first block: z as a 1 x 1 image -> ``side`` x ``side`` feature maps (a transposed
    convolution that covers the whole output, so no overlap and no checkerboard), batch norm, ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, side, 1, 0, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True))


def _doubling(c_in: int, c_out: int, upsample: str) -> list[nn.Module]:
    """Layers that double the side: nearest-neighbour upsampling then a 3 x 3 convolution ("resize", every
    output pixel sees the same number of input pixels: Odena et al. 2016, "Deconvolution and Checkerboard
    Artifacts"), or a 4 x 4 transposed convolution of stride 2 ("transposed", Radford et al. 2016), whose
    kernels overlap unevenly and leave a checkerboard until training removes it."""
    if upsample == "resize":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)]
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)]


def _up(c_in: int, c_out: int, upsample: str) -> nn.Sequential:
    """Double the side (``_doubling``), batch norm, ReLU."""
    return nn.Sequential(*_doubling(c_in, c_out, upsample), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _down(c_in: int, c_out: int, downsample: str, norm: bool = True) -> nn.Sequential:
    """Halve the side: a stride-2 convolution (DCGAN) or a 3x3 convolution + 2x2 max-pool (the CIFAR-10 variant)."""
    if downsample == "stride":
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not norm)]
    else:
        layers = [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=not norm), nn.MaxPool2d(2)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2016, section 4): conv weights ~ N(0, 0.02),
    batch-norm scales ~ N(1, 0.02), biases 0. Use as ``model.apply(init_dcgan_weights)``.
    Notebook 03, "The networks"."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """DCGAN generator: z (B, latent_dim) -> images (B, channels, size, size) in [-1, 1].

    Inputs: ``latent_dim`` (100); ``image_size`` 28, 32 or 64; ``channels`` 3 (RGB) or 1;
    ``width`` feature maps of the last hidden layer (64 in the paper; shapes below use 64);
    ``upsample`` how each block doubles the side: ``"resize"`` (nearest-neighbour upsampling then a
    3 x 3 convolution, the default: no checkerboard) or ``"transposed"`` (the paper's transposed
    convolutions). Batch norm and ReLU, tanh output, weights N(0, 0.02). Notebook 03, "The networks".
    """

    def __init__(
        self,
        latent_dim: int = LATENT_DIM,
        image_size: int = 64,
        channels: int = 3,
        width: int = 64,
        upsample: str = "resize",
    ):
        super().__init__()
        self.latent_dim = settings.whole_number("latent_dim", latent_dim)
        self.image_size = _check_image_size(image_size)
        self.channels = settings.whole_number("channels", channels)
        self.upsample = settings.one_of("upsample", upsample, UPSAMPLING)
        w = settings.whole_number("width", width)
        if image_size == 64:
            layers = [
                _project(latent_dim, 8 * w, 4),  # (B, 512, 4, 4)
                _up(8 * w, 4 * w, upsample),  # (B, 256, 8, 8)
                _up(4 * w, 2 * w, upsample),  # (B, 128, 16, 16)
                _up(2 * w, w, upsample),  # (B, 64, 32, 32)
            ]
        elif image_size == 32:
            layers = [
                _project(latent_dim, 4 * w, 4),  # (B, 256, 4, 4)
                _up(4 * w, 2 * w, upsample),  # (B, 128, 8, 8)
                _up(2 * w, w, upsample),  # (B, 64, 16, 16)
            ]
        else:
            layers = [
                _project(latent_dim, 2 * w, 7),  # (B, 128, 7, 7)
                _up(2 * w, w, upsample),  # (B, 64, 14, 14)
            ]
        out = _doubling(w, channels, upsample)  # (B, channels, size, size): no batch norm on the output
        self.net = nn.Sequential(*layers, *out, nn.Tanh())  # pixels in [-1, 1]
        self.apply(init_dcgan_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.latent_dim, 1, 1))  # (B, 100) -> (B, 100, 1, 1) -> images


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: images (B, channels, size, size) in [-1, 1] -> logits (B,).

    Inputs: ``image_size`` 28, 32 or 64; ``channels``; ``width`` (feature maps of the first layer);
    ``downsample`` ``"stride"`` (stride-2 convolutions, DCGAN) or ``"maxpool"`` (3x3 convolution then
    2x2 max-pool, a variant that some found steadier on CIFAR-10). LeakyReLU(0.2), batch norm from the
    second block on (``norm=False``: none, for a WGAN-GP critic or spectral normalisation), no sigmoid:
    the loss works on logits. Notebook 03, "The networks".
    """

    def __init__(
        self, image_size: int = 64, channels: int = 3, width: int = 64, downsample: str = "stride", norm: bool = True
    ):
        super().__init__()
        self.image_size = _check_image_size(image_size)
        self.channels = settings.whole_number("channels", channels)
        w = settings.whole_number("width", width)
        self.downsample = settings.one_of("downsample", downsample, DOWNSAMPLING)
        if image_size == 64:
            layers = [
                _down(channels, w, downsample, norm=False),  # (B, 64, 32, 32)
                _down(w, 2 * w, downsample, norm),  # (B, 128, 16, 16)
                _down(2 * w, 4 * w, downsample, norm),  # (B, 256, 8, 8)
                _down(4 * w, 8 * w, downsample, norm),  # (B, 512, 4, 4)
                nn.Conv2d(8 * w, 1, 4, 1, 0),
            ]  # (B, 1, 1, 1)
        elif image_size == 32:
            layers = [
                _down(channels, w, downsample, norm=False),  # (B, 64, 16, 16)
                _down(w, 2 * w, downsample, norm),  # (B, 128, 8, 8)
                _down(2 * w, 4 * w, downsample, norm),  # (B, 256, 4, 4)
                nn.Conv2d(4 * w, 1, 4, 1, 0),
            ]  # (B, 1, 1, 1)
        else:
            layers = [
                _down(channels, w, downsample, norm=False),  # (B, 64, 14, 14)
                _down(w, 2 * w, downsample, norm),  # (B, 128, 7, 7)
                nn.Conv2d(2 * w, 1, 7, 1, 0),
            ]  # (B, 1, 1, 1)
        self.net = nn.Sequential(*layers, nn.Flatten(0))  # (B,) logits
        self.apply(init_dcgan_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            shape = ", ".join(map(str, expected))
            raise ValueError(
                f"this discriminator was built for images of shape (B, {shape}), got {tuple(x.shape)}; "
                f"build it with image_size={x.shape[-1]} or resize the data"
            )
        return self.net(x)


def dcgan(
    image_size: int = 64,
    channels: int = 3,
    latent_dim: int = LATENT_DIM,
    width: int = 64,
    downsample: str = "stride",
    norm: bool = True,
    upsample: str = "resize",
) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    """A DCGAN generator and discriminator pair for ``image_size`` pixels (notebook 03, "The networks");
    ``norm=False`` leaves batch norm out of the discriminator; ``upsample`` is the generator's."""
    return (
        DCGANGenerator(latent_dim, image_size, channels, width, upsample),
        DCGANDiscriminator(image_size, channels, width, downsample, norm),
    )


def add_spectral_norm(discriminator: nn.Module) -> nn.Module:
    """Divide every convolution's and linear layer's weight by its largest singular value (one power
    iteration per forward pass), so that each layer, and so D, is 1-Lipschitz: spectral normalisation
    (Miyato et al. 2018, "Spectral Normalization for Generative Adversarial Networks"). In place, and
    returned; the paper's discriminators use it instead of batch norm. Layers already normalised are
    left as they are. Notebook 03, "Other losses: WGAN-GP and spectral normalisation"."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in discriminator.modules()):
        raise ValueError("spectral normalisation replaces batch norm: build the discriminator with norm=False")
    for module in list(discriminator.modules()):
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not nn.utils.parametrize.is_parametrized(module, "weight"):
            nn.utils.parametrizations.spectral_norm(module)
    return discriminator


class MLPGenerator(nn.Module):
    """The course's MLP generator for MNIST: z (B, 100) -> 128 -> 256 -> 512 -> 1024 -> 784 -> (B, 1, 28, 28).

    Batch norm after every hidden layer but the first, LeakyReLU(0.2), tanh output in [-1, 1].
    Notebook 03, "The MNIST GAN".
    """

    def __init__(
        self,
        latent_dim: int = LATENT_DIM,
        hidden: Sequence[int] = (128, 256, 512, 1024),
        image_shape: Sequence[int] = (1, 28, 28),
    ):
        super().__init__()
        self.latent_dim = settings.whole_number("latent_dim", latent_dim)
        self.image_shape = tuple(image_shape)
        sizes = [latent_dim, *hidden]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))  # (B, 128) (B, 256) (B, 512) (B, 1024)
            if i > 0:
                layers.append(nn.BatchNorm1d(n_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.net = nn.Sequential(
            *layers,
            nn.Linear(sizes[-1], math.prod(image_shape)),  # (B, 784)
            nn.Tanh(),  # pixels in [-1, 1]
            nn.Unflatten(1, self.image_shape),
        )  # (B, 1, 28, 28)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """The course's MLP discriminator for MNIST: (B, 1, 28, 28) -> 784 -> 512 -> 256 -> 1 logit, LeakyReLU(0.2)."""

    def __init__(self, hidden: Sequence[int] = (512, 256), image_shape: Sequence[int] = (1, 28, 28)):
        super().__init__()
        sizes = [math.prod(image_shape), *hidden]
        layers: list[nn.Module] = [nn.Flatten()]  # (B, 784)
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2, inplace=True)]  # (B, 512) (B, 256)
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], 1), nn.Flatten(0))  # (B,) logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mlp_gan(
    latent_dim: int = LATENT_DIM, image_shape: Sequence[int] = (1, 28, 28)
) -> tuple[MLPGenerator, MLPDiscriminator]:
    """The course's MLP generator and discriminator pair, for 28x28 MNIST unless ``image_shape`` says otherwise."""
    return MLPGenerator(latent_dim, image_shape=image_shape), MLPDiscriminator(image_shape=image_shape)
