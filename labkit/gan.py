"""The GANs of notebook 03: DCGAN networks (28, 32 and 64 pixels), the course's MLP GAN for MNIST,
the adversarial objective that ``labkit.loop.fit`` optimises, and the pictures of GAN training.

Generators end in tanh, so they draw pixels in [-1, 1]; the data module gives images in [0, 1] and
``GANObjective`` maps them to [-1, 1]. Discriminators return logits (B,), never probabilities.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.ticker import MaxNLocator
from torch import nn

from . import plots, settings
from .loop import History, ObjectiveBase

LATENT_DIM = 100
IMAGE_SIZES = (28, 32, 64)
DOWNSAMPLING = ("stride", "maxpool")


def _check_image_size(image_size) -> int:
    if image_size not in IMAGE_SIZES:
        raise ValueError(
            f"image_size {image_size!r} is not supported: the DCGAN networks are built for "
            f"{', '.join(map(str, IMAGE_SIZES))} pixels (28 MNIST, 32 CIFAR-10, 64 abstract art)"
        )
    return image_size


def check_real_label(real_label) -> float:
    """The target for real images: in (0, 1]; 1 is no label smoothing, 0.9 one-sided smoothing."""
    return settings.number(
        "real_label",
        real_label,
        above=0,
        at_most=1,
        what="in (0, 1]: 1 means no label smoothing, 0.9 is the usual one-sided smoothing",
    )


# --------------------------------------------------------------------------- DCGAN (Radford et al. 2016)


def _up(c_in: int, c_out: int, kernel: int = 4, stride: int = 2, padding: int = 1) -> nn.Sequential:
    """Transposed convolution (doubles the side with the defaults), batch norm, ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


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
    ``width`` feature maps of the last hidden layer (64 in the paper; shapes below use 64).
    Transposed convolutions with batch norm and ReLU, tanh output, weights N(0, 0.02).
    Notebook 03, "The networks".
    """

    def __init__(self, latent_dim: int = LATENT_DIM, image_size: int = 64, channels: int = 3, width: int = 64):
        super().__init__()
        self.latent_dim = settings.whole_number("latent_dim", latent_dim)
        self.image_size = _check_image_size(image_size)
        self.channels = settings.whole_number("channels", channels)
        w = settings.whole_number("width", width)
        out = lambda c_in: nn.ConvTranspose2d(c_in, channels, 4, 2, 1, bias=False)  # noqa: E731 - doubles the side
        if image_size == 64:
            layers = [
                _up(latent_dim, 8 * w, 4, 1, 0),  # (B, 512, 4, 4)
                _up(8 * w, 4 * w),  # (B, 256, 8, 8)
                _up(4 * w, 2 * w),  # (B, 128, 16, 16)
                _up(2 * w, w),  # (B, 64, 32, 32)
                out(w),
            ]  # (B, 3, 64, 64)
        elif image_size == 32:
            layers = [
                _up(latent_dim, 4 * w, 4, 1, 0),  # (B, 256, 4, 4)
                _up(4 * w, 2 * w),  # (B, 128, 8, 8)
                _up(2 * w, w),  # (B, 64, 16, 16)
                out(w),
            ]  # (B, 3, 32, 32)
        else:
            layers = [
                _up(latent_dim, 2 * w, 7, 1, 0),  # (B, 128, 7, 7)
                _up(2 * w, w),  # (B, 64, 14, 14)
                out(w),
            ]  # (B, 1, 28, 28)
        self.net = nn.Sequential(*layers, nn.Tanh())  # pixels in [-1, 1]
        self.apply(init_dcgan_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.latent_dim, 1, 1))  # (B, 100) -> (B, 100, 1, 1) -> images


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: images (B, channels, size, size) in [-1, 1] -> logits (B,).

    Inputs: ``image_size`` 28, 32 or 64; ``channels``; ``width`` (feature maps of the first layer);
    ``downsample`` ``"stride"`` (stride-2 convolutions, DCGAN) or ``"maxpool"`` (3x3 convolution then
    2x2 max-pool, a variant that some found steadier on CIFAR-10). LeakyReLU(0.2), batch norm from the
    second block on, no sigmoid: the loss works on logits. Notebook 03, "The networks".
    """

    def __init__(self, image_size: int = 64, channels: int = 3, width: int = 64, downsample: str = "stride"):
        super().__init__()
        self.image_size = _check_image_size(image_size)
        self.channels = settings.whole_number("channels", channels)
        w = settings.whole_number("width", width)
        self.downsample = settings.one_of("downsample", downsample, DOWNSAMPLING)
        if image_size == 64:
            layers = [
                _down(channels, w, downsample, norm=False),  # (B, 64, 32, 32)
                _down(w, 2 * w, downsample),  # (B, 128, 16, 16)
                _down(2 * w, 4 * w, downsample),  # (B, 256, 8, 8)
                _down(4 * w, 8 * w, downsample),  # (B, 512, 4, 4)
                nn.Conv2d(8 * w, 1, 4, 1, 0),
            ]  # (B, 1, 1, 1)
        elif image_size == 32:
            layers = [
                _down(channels, w, downsample, norm=False),  # (B, 64, 16, 16)
                _down(w, 2 * w, downsample),  # (B, 128, 8, 8)
                _down(2 * w, 4 * w, downsample),  # (B, 256, 4, 4)
                nn.Conv2d(4 * w, 1, 4, 1, 0),
            ]  # (B, 1, 1, 1)
        else:
            layers = [
                _down(channels, w, downsample, norm=False),  # (B, 64, 14, 14)
                _down(w, 2 * w, downsample),  # (B, 128, 7, 7)
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
    image_size: int = 64, channels: int = 3, latent_dim: int = LATENT_DIM, width: int = 64, downsample: str = "stride"
) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    """A DCGAN generator and discriminator pair for ``image_size`` pixels (notebook 03, "The networks")."""
    return (
        DCGANGenerator(latent_dim, image_size, channels, width),
        DCGANDiscriminator(image_size, channels, width, downsample),
    )


# --------------------------------------------------------------------------- the course's MLP GAN for MNIST


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


def mlp_gan(latent_dim: int = LATENT_DIM) -> tuple[MLPGenerator, MLPDiscriminator]:
    """The course's MLP generator and discriminator pair for 28x28 MNIST."""
    return MLPGenerator(latent_dim), MLPDiscriminator()


# --------------------------------------------------------------------------- the adversarial losses


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float = 1.0) -> torch.Tensor:
    """-[log D(x) + log(1 - D(G(z)))] averaged over the batch: the discriminator's side of the
    minimax game of Goodfellow et al. 2014 (eq. 1), as binary cross-entropy on logits.

    ``real_label`` < 1 is one-sided label smoothing (Salimans et al. 2016, "Improved Techniques for
    Training GANs", section 3.4): real images get the target 0.9 instead of 1, fakes keep 0, so D is
    never rewarded for becoming over-confident on real data. With D = 1/2 everywhere the loss is
    2 ln 2 = 1.386 whatever ``real_label`` is; its smallest value is ``smallest_discriminator_loss``
    (0 without smoothing, 0.325 at 0.9). Notebook 03, "The adversarial loss".
    """
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)) averaged over the batch: the non-saturating generator loss (Goodfellow et al.
    2014, section 3; used by DCGAN, Radford et al. 2016). Minimising log(1 - D(G(z))) instead gives
    vanishing gradients exactly when G is bad and D is sure. ln 2 = 0.693 when D(G(z)) = 1/2."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def smallest_discriminator_loss(real_label: float = 1.0) -> float:
    """The floor of ``discriminator_loss``: a perfect D outputs ``real_label`` on real images and 0 on
    fakes, leaving the binary entropy of ``real_label`` in nats (0 for 1, 0.325 for 0.9)."""
    p = check_real_label(real_label)
    return 0.0 if p == 1 else -(p * math.log(p) + (1 - p) * math.log(1 - p))


D_WINS_EPOCHS = 3  # epochs in a row ...
D_WINS_LOSS = 0.05  # ... with the D loss less than this above its floor ...
D_WINS_FAKE = 0.05  # ... and D(G(z)) below this: the discriminator has won outright


class GANObjective(ObjectiveBase):
    """The adversarial game as an ``Objective`` for ``labkit.loop.fit`` (notebook 03, "Training").

    Each ``train_step`` makes one discriminator update on a real batch and a fake batch, then
    ``g_steps`` generator updates (each on fresh noise). Tricks of the seeds as parameters:
    ``real_label`` (0.9 = one-sided label smoothing), separate ``lr_g`` / ``lr_d``, ``g_steps`` = k.
    Adam with betas (0.5, 0.999) as in DCGAN. Reports per batch: ``d_loss``, ``g_loss`` (mean over the
    k steps), ``d_real`` = mean D(x) and ``d_fake`` = mean D(G(z)), as probabilities, both measured
    before D's update. Images arrive in [0, 1] and are mapped to [-1, 1], the range of G's tanh.
    """

    name = "gan"
    drop_last = True  # a last batch of 1 or 2 images makes batch-norm statistics meaningless

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *,
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        real_label: float = 1.0,
        g_steps: int = 1,
        latent_dim: int | None = None,
    ):
        self.generator, self.discriminator = generator, discriminator
        self.modules = {"generator": generator, "discriminator": discriminator}
        self.latent_dim = settings.whole_number(
            "latent_dim", latent_dim if latent_dim is not None else getattr(generator, "latent_dim", LATENT_DIM)
        )
        self.real_label = check_real_label(real_label)
        self.g_steps = settings.whole_number("g_steps (generator updates per discriminator update)", g_steps)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1) such as (0.5, 0.999), got {betas!r}")
        self.opt_g = torch.optim.Adam(
            generator.parameters(), lr=settings.learning_rate("lr_g", lr_g), betas=tuple(betas)
        )
        self.opt_d = torch.optim.Adam(
            discriminator.parameters(), lr=settings.learning_rate("lr_d", lr_d), betas=tuple(betas)
        )
        self.optimizers = {"generator": self.opt_g, "discriminator": self.opt_d}
        self.warned = False

    def noise(self, n: int, device: torch.device | str) -> torch.Tensor:
        """n draws of z ~ N(0, I): (n, latent_dim)."""
        return torch.randn(n, self.latent_dim, device=device)

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One round of the game (Goodfellow et al. 2014, algorithm 1), as notebook 03 writes it out.

        Each update is zero_grad / backward / step. ``precision.scaler`` is PyTorch's gradient scaler:
        in float16 it scales the loss up before backward so that small gradients do not underflow
        and skips a step whose gradients overflowed; in float32 and bfloat16 it does nothing."""
        x = x * 2 - 1  # [0, 1] -> [-1, 1], the range of G's tanh
        scaler = self.precision.scaler
        # 1. the discriminator: push D(x) towards real_label and D(G(z)) towards 0
        self.opt_d.zero_grad(set_to_none=True)
        with self.precision.autocast():
            fake = self.generator(self.noise(len(x), x.device))
            real_logits = self.discriminator(x).float()
            fake_logits = self.discriminator(fake.detach()).float()  # detach: D's loss must not reach G
            d_loss = discriminator_loss(real_logits, fake_logits, self.real_label)
        scaler.scale(d_loss).backward()
        scaler.step(self.opt_d)
        scaler.update()
        # 2. the generator, k times: push D(G(z)) towards 1 (the first update reuses the fakes above)
        g_total = torch.zeros((), device=x.device)
        for step in range(self.g_steps):
            self.opt_g.zero_grad(set_to_none=True)
            with self.precision.autocast():
                if step > 0:
                    fake = self.generator(self.noise(len(x), x.device))
                g_loss = generator_loss(self.discriminator(fake).float())
            scaler.scale(g_loss).backward()  # D's weights get gradients too, but only G's optimiser steps
            scaler.step(self.opt_g)
            scaler.update()
            g_total = g_total + g_loss.detach()
        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_total / self.g_steps,
            "d_real": torch.sigmoid(real_logits.detach()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean(),
        }

    def epoch_end(self, record: dict, history: History) -> None:
        """Warn once when D has won outright for ``D_WINS_EPOCHS`` epochs in a row: its loss at its
        floor (0, or 0.325 with label smoothing at 0.9) and D(G(z)) near 0 leave G almost no gradient
        to learn from (notebook 03, "Reading the curves"). The advice names only the tricks not in use."""
        recent = history[-D_WINS_EPOCHS:]
        if self.warned or len(recent) < D_WINS_EPOCHS:
            return
        floor = smallest_discriminator_loss(self.real_label)
        if all(
            r.get("train_d_loss", math.inf) - floor < D_WINS_LOSS and r.get("train_d_fake", 1) < D_WINS_FAKE
            for r in recent
        ):
            self.warned = True
            lr_d = self.opt_d.param_groups[0]["lr"]
            lr_g = self.opt_g.param_groups[0]["lr"]
            untried = [
                advice
                for advice, in_use in (
                    ("one-sided label smoothing (real_label=0.9)", self.real_label < 1),
                    (f"a lower discriminator learning rate (lr_d={lr_d / 2:g})", lr_d < lr_g),
                    ("more generator steps (g_steps=2)", self.g_steps > 1),
                )
                if not in_use
            ]
            warnings.warn(
                f"the discriminator has won outright for {D_WINS_EPOCHS} epochs (epoch {record['epoch']}: D loss "
                f"{record['train_d_loss']:.3f}, its floor {floor:.3f}; D(G(z)) {record['train_d_fake']:.3f}): the "
                "generator gets almost no gradient. "
                + (
                    f"Try {', '.join(untried)}, or restart with another seed."
                    if untried
                    else "Restart with another seed, or weaken D further."
                ),
                RuntimeWarning,
                stacklevel=2,
            )

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """D on held-out real images and fresh fakes: a held-out D(x) far below the training D(x)
        means D memorises the training images."""
        x = x * 2 - 1
        real_logits = self.discriminator(x)
        fake_logits = self.discriminator(self.generator(self.noise(x.shape[0], x.device)))
        return {
            "d_loss": discriminator_loss(real_logits, fake_logits, self.real_label),
            "d_real": torch.sigmoid(real_logits).mean(),
            "d_fake": torch.sigmoid(fake_logits).mean(),
        }


# --------------------------------------------------------------------------- sampling and progression


@contextmanager
def batch_statistics(module: nn.Module):
    """Run ``module``'s batch-norm layers on the batch's own statistics (as in training) without
    touching their running averages, so that drawing samples never changes the model."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in norms]
    for m in norms:
        m.train()
        m.track_running_stats = False
    try:
        yield module
    finally:
        for m, (training, track) in zip(norms, saved):
            m.train(training)
            m.track_running_stats = track


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Images G(z) in [-1, 1] on the CPU, with batch norm on batch statistics (as G was trained)."""
    with batch_statistics(generator):
        return generator(z).float().cpu()


def sample(generator: nn.Module, n: int, seed: int | None = None, batch_size: int = 500) -> torch.Tensor:
    """n images from G in [-1, 1] on the CPU (in batches of ``batch_size``); ``seed`` fixes the noise."""
    device = next(generator.parameters()).device
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    z = torch.randn(n, generator.latent_dim, generator=g).to(device)
    return torch.cat([generate(generator, zb) for zb in z.split(batch_size)])


class FixedNoise:
    """A ``fit`` callback: decode one fixed noise batch, drawn once, after every epoch and keep the frames.

    ``frames[i]`` are the images (n, C, H, W) in [-1, 1] after epoch ``epochs[i]``. Because z never
    changes, any change between frames is G learning (notebook 03, "Watching G learn").
    """

    def __init__(self, generator: nn.Module, n: int = 64, seed: int = 0):
        self.generator = generator
        device = next(generator.parameters()).device
        self.z = torch.randn(
            settings.whole_number("n", n), generator.latent_dim, generator=torch.Generator().manual_seed(seed)
        ).to(device)
        self.frames: list[torch.Tensor] = []
        self.epochs: list[int] = []

    def __call__(self, epoch: int, record: dict, history: History) -> None:
        self.frames.append(generate(self.generator, self.z))
        self.epochs.append(epoch)

    def state_dict(self) -> dict:
        """The noise and the frames so far (as 8-bit images: a checkpoint of 100 epochs stays small)."""
        return {
            "z": self.z.cpu(),
            "epochs": list(self.epochs),
            "frames": [((f + 1) * 127.5).round().to(torch.uint8) for f in self.frames],
        }

    def load_state_dict(self, state: dict) -> None:
        self.z = state["z"].to(self.z.device)
        self.epochs = list(state["epochs"])
        self.frames = [f.float() / 127.5 - 1 for f in state["frames"]]

    def figure(self, **kwargs) -> plt.Figure:
        return fixed_noise_progression(self.frames, self.epochs, **kwargs)

    def save_gif(self, path: str | Path, **kwargs) -> Path:
        return progression_gif(self.frames, self.epochs, path, **kwargs)


def _pick_rows(n: int, max_rows: int) -> list[int]:
    if n <= max_rows:
        return list(range(n))
    return sorted({round(i * (n - 1) / (max_rows - 1)) for i in range(max_rows)})


def fixed_noise_progression(
    frames: Sequence[torch.Tensor], epochs: Sequence[int], per_row: int = 8, max_rows: int = 10, title: str = ""
) -> plt.Figure:
    """The first ``per_row`` fixed-noise images after each epoch, one row per epoch (at most
    ``max_rows`` rows, evenly spaced, first and last included). Notebook 03, "Watching G learn"."""
    if not frames:
        raise ValueError("no frames yet: pass the FixedNoise callback to fit(..., callbacks=[...]) and train")
    rows = _pick_rows(len(frames), max_rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(0.9 * per_row + 0.8, 0.95 * len(rows) + 0.5), squeeze=False)
    for ax, i in zip(axes[:, 0], rows):
        plots.image_grid(frames[i][:per_row], nrow=per_row, value_range=(-1, 1), ax=ax)
        ax.text(-0.01, 0.5, f"epoch {epochs[i]}", transform=ax.transAxes, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _frame_image(images: torch.Tensor, nrow: int, label: str, scale: int):
    """One GIF frame: the image grid as a PIL RGB image, enlarged ``scale`` times, labelled on top."""
    from PIL import Image, ImageDraw

    array = (plots.grid_array(images, nrow, value_range=(-1, 1)) * 255).round().astype(np.uint8)
    picture = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).convert("RGB")
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    canvas = Image.new("RGB", (picture.width, picture.height + 14), "white")
    canvas.paste(picture, (0, 14))
    ImageDraw.Draw(canvas).text((3, 1), label, fill="black")
    return canvas


def progression_gif(
    frames: Sequence[torch.Tensor],
    epochs: Sequence[int],
    path: str | Path,
    n_show: int = 32,
    nrow: int = 8,
    ms_per_frame: int = 300,
    scale: int | None = None,
    max_frames: int = 40,
) -> Path:
    """Write the fixed-noise frames as an animated GIF (Pillow), one frame per epoch (at most
    ``max_frames``, evenly spaced, first and last kept: 100 epochs would make a file of megabytes),
    each labelled with its epoch (the label also keeps Pillow from merging two identical frames).
    Loops forever. ``scale`` enlarges small images (default: x2 below 48 pixels). Notebook 03,
    "Watching G learn"."""
    if not frames:
        raise ValueError("no frames to animate: train with the FixedNoise callback first")
    scale = scale or (2 if frames[0].shape[-1] < 48 else 1)
    pictures = [
        _frame_image(frames[i][:n_show], nrow, f"epoch {epochs[i]}", scale) for i in _pick_rows(len(frames), max_frames)
    ]
    path = Path(path)
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=ms_per_frame, loop=0)
    return path


# --------------------------------------------------------------------------- curves and mode collapse


def gan_curves(history: History, title: str = "", real_label: float | None = None) -> plt.Figure:
    """Left: D and G losses per epoch. Right: mean D(x) and mean D(G(z)) per epoch (epoch means),
    with held-out D(x) when the run evaluated on a test split. Notebook 03, "Reading the curves"."""
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.3))
    left.plot(epochs, history.series("train_d_loss"), "-o", ms=3, label="D loss")
    left.plot(epochs, history.series("train_g_loss"), "-o", ms=3, label="G loss")
    left.axhline(2 * math.log(2), color="C0", ls=":", lw=1, label="D loss at D = 1/2 (2 ln 2)")
    left.axhline(math.log(2), color="C1", ls=":", lw=1, label="G loss at D = 1/2 (ln 2)")
    losses = history.series("train_d_loss") + history.series("train_g_loss")
    left.set_ylim(0, 1.08 * max([2 * math.log(2), *[v for v in losses if math.isfinite(v)]]))
    left.set_ylabel("BCE (nats)")
    right.plot(epochs, history.series("train_d_real"), "-o", ms=3, color="C2", label="D(x), real")
    right.plot(epochs, history.series("train_d_fake"), "-o", ms=3, color="C3", label="D(G(z)), fake")
    if history.series("test_d_real"):
        right.plot(
            [r["epoch"] for r in history if "test_d_real" in r],
            history.series("test_d_real"),
            "--s",
            ms=3,
            color="C2",
            alpha=0.6,
            label="D(x), held-out real",
        )
    right.axhline(0.5, color="grey", ls=":", lw=1, label="1/2 (D cannot tell)")
    if real_label is not None and real_label < 1:
        right.axhline(real_label, color="C2", ls=":", lw=1, label=f"real target {real_label:g}")
    right.set_ylim(0, 1)
    right.set_ylabel("mean discriminator output")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def diversity(images: torch.Tensor, max_images: int = 1000) -> float:
    """Mean Euclidean distance between two different images of the batch (pixels flattened).

    Equal images give 0. Compare generated and real images in the same value range.
    """
    flat = images[:max_images].detach().float().flatten(1).cpu()
    n = flat.shape[0]
    if n < 2:
        raise ValueError(f"diversity needs at least 2 images, got {n}")
    distances = torch.cdist(flat, flat)
    return float(distances.sum() / (n * (n - 1)))  # the diagonal is zero


def diversity_ratio(fake: torch.Tensor, real: torch.Tensor, max_images: int = 1000) -> dict[str, float]:
    """A classifier-free mode-collapse signal: diversity of generated samples / diversity of real ones.

    Both in [0, 1] pixels. About 1: samples differ from each other as much as real images do.
    Well below 1 (say < 0.7): samples resemble each other, the generator covers few modes.
    Notebook 03, "Mode collapse".
    """
    d_fake, d_real = diversity(fake, max_images), diversity(real, max_images)
    return {"diversity_ratio": d_fake / d_real, "sample_diversity": d_fake, "real_diversity": d_real}
