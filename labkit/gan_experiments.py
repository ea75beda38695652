"""Default settings and headless recipes of notebook 03: the MLP GAN on MNIST (``gan``) and
the DCGAN on abstract art, CIFAR-10 or MNIST (``dcgan``), as ``python -m labkit train gan|dcgan`` runs them.

The notebook walks through the same steps cell by cell and ends with ``save_gan_run``, so a notebook
run and a command-line run leave the same metrics.json, figures and GIF.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import gan, gan_nets, metrics, plots, progression, wgan
from .art import load_abstract_art, load_cifar10
from .data import ImageData, load_mnist
from .engine import distributed, settings
from .engine.loop import History, seconds_per_epoch
from .engine.precision import PRECISIONS
from .engine.runs import Run, Trained, fit_in_run, start_run
from .models import count_parameters

DATASETS = {"abstract-art": 64, "cifar10": 32, "mnist": 28}  # dataset -> default image size
DCGAN_REAL_LABEL = 0.9  # one-sided label smoothing, on by default for the DCGAN
LOSSES = ("bce", "wgan-gp")  # the minimax game on logits (Goodfellow et al. 2014), or WGAN-GP (labkit.wgan)
N_DIVERSITY = (1000, 256)  # images per side of the mode-collapse check (full, smoke)


@dataclass
class GANSettings:
    """Defaults of the MLP GAN on MNIST (notebook 03, "The MNIST GAN").

    ``lr`` is both learning rates unless ``lr_g`` / ``lr_d`` set one apart; ``real_label`` 0.9
    switches on one-sided label smoothing; ``g_steps`` = k generator updates per D update.
    ``loss`` "wgan-gp" trains a critic with the gradient penalty (``labkit.wgan``; ``n_critic`` critic
    updates per G update, penalty weight ``gp_weight``); ``spectral_norm`` normalises D's layers
    (Miyato et al. 2018). Notebook 03, "Other losses: WGAN-GP and spectral normalisation".
    """

    epochs: int = field(default_factory=lambda: settings.pick(full=100, smoke=settings.SMOKE_EPOCHS))
    batch_size: int = 64
    latent_dim: int = 100
    lr: float = 2e-4
    lr_g: float | None = None
    lr_d: float | None = None
    real_label: float = 1.0
    g_steps: int = 1
    loss: str = "bce"
    n_critic: int = wgan.N_CRITIC
    gp_weight: float = wgan.GP_WEIGHT
    spectral_norm: bool = False
    seed: int = 0
    precision: str = "auto"
    compile: bool = False

    def __post_init__(self):
        settings.whole_number("epochs", self.epochs, low=0)
        for name in ("batch_size", "latent_dim", "g_steps", "n_critic"):
            settings.whole_number(name, getattr(self, name))
        for name in ("lr", "lr_g", "lr_d"):
            if name == "lr" or getattr(self, name) is not None:
                settings.learning_rate(name, getattr(self, name))
        gan.check_real_label(self.real_label)
        settings.one_of("loss", self.loss, LOSSES)
        settings.number("gp_weight", self.gp_weight, at_least=0, what="a number >= 0 (10 in the WGAN-GP paper)")
        if self.loss == "wgan-gp" and self.real_label != 1:
            raise ValueError(
                f"real_label={self.real_label:g} is label smoothing, a trick of the BCE loss; the WGAN-GP critic "
                "has no labels: leave real_label at 1"
            )
        if self.loss == "wgan-gp" and self.g_steps != 1:
            raise ValueError(
                f"g_steps={self.g_steps} is a trick of the BCE loss; WGAN-GP balances the two the other way "
                f"round, with n_critic critic updates per generator update (now {self.n_critic})"
            )
        settings.one_of("precision", self.precision, PRECISIONS)

    @property
    def run_name(self) -> str:
        """``gan``, with ``-wgan-gp`` for that loss and ``-sn`` for spectral normalisation."""
        return "gan" + self.variant_suffix

    @property
    def variant_suffix(self) -> str:
        return ("-wgan-gp" if self.loss == "wgan-gp" else "") + ("-sn" if self.spectral_norm else "")

    @property
    def discriminator_norm(self) -> bool:
        """Whether D may use batch norm: not as a WGAN-GP critic, nor with spectral normalisation."""
        return self.loss == "bce" and not self.spectral_norm

    def networks(self, channels: int = 1) -> tuple[nn.Module, nn.Module]:
        """The course's MLP generator and discriminator for MNIST (``training`` adds spectral norm)."""
        return gan_nets.mlp_gan(self.latent_dim)

    @property
    def lrs(self) -> tuple[float, float]:
        """(generator lr, discriminator lr)."""
        return (self.lr_g or self.lr, self.lr_d or self.lr)

    def training(self, generator, discriminator, training_class: type | None = None) -> gan.GANTraining:
        """The adversarial training of ``generator`` and ``discriminator`` with these settings;
        ``training_class`` is the class that takes the steps (default: ``GANTraining`` for the BCE loss,
        ``WGANGPTraining`` for WGAN-GP; notebook 03 passes its own subclass)."""
        wgan_gp = self.loss == "wgan-gp"
        if training_class is None:
            training_class = wgan.WGANGPTraining if wgan_gp else gan.GANTraining
        elif wgan_gp != issubclass(training_class, wgan.WGANGPTraining):
            raise ValueError(
                f"{training_class.__name__} does not train the {self.loss} loss these settings ask for: pass "
                "training_class=None (the default) to get the training of that loss"
            )
        if self.spectral_norm:
            gan_nets.add_spectral_norm(discriminator)  # before the optimiser takes D's parameters
        lr_g, lr_d = self.lrs
        extra = {"n_critic": self.n_critic, "gp_weight": self.gp_weight} if wgan_gp else {}
        return training_class(
            generator,
            discriminator,
            lr_g=lr_g,
            lr_d=lr_d,
            real_label=self.real_label,
            g_steps=self.g_steps,
            latent_dim=self.latent_dim,
            **extra,
        )


@dataclass
class DCGANSettings(GANSettings):
    """Defaults of the DCGAN of notebook 03 (Radford et al. 2016): abstract art at 64x64,
    one-sided label smoothing on. ``dataset``: abstract-art, cifar10 or mnist; ``image_size``
    defaults to the dataset's (64, 32, 28); ``downsample``: stride or maxpool (the CIFAR-10 variant);
    ``n_images`` caps the training images (None: all; smoke mode: 128 abstract-art images).
    ``real_label`` is 0.9 for the BCE loss and 1 (no labels to smooth) for WGAN-GP."""

    real_label: float = DCGAN_REAL_LABEL
    dataset: str = "abstract-art"
    image_size: int | None = None
    width: int = 64
    downsample: str = "stride"
    n_images: int | None = None

    def __post_init__(self):
        if self.loss == "wgan-gp" and self.real_label == DCGAN_REAL_LABEL:
            self.real_label = 1.0  # the default smoothing belongs to the BCE loss
        super().__post_init__()
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        allowed = (64, 32) if self.dataset == "abstract-art" else (DATASETS[self.dataset],)
        if self.size not in allowed:
            raise ValueError(
                f"image_size {self.image_size!r} does not fit {self.dataset}: use {' or '.join(map(str, allowed))}"
            )
        settings.whole_number("width", self.width)
        settings.one_of("downsample", self.downsample, gan_nets.DOWNSAMPLING)
        if self.n_images is not None:
            settings.whole_number("n_images", self.n_images)

    @property
    def size(self) -> int:
        """The image size in use: ``image_size``, or the dataset's default when that is None."""
        return self.image_size or DATASETS[self.dataset]

    @property
    def run_name(self) -> str:
        """``dcgan`` on abstract art, ``dcgan-<dataset>`` otherwise, then the loss and norm suffix."""
        return ("dcgan" if self.dataset == "abstract-art" else f"dcgan-{self.dataset}") + self.variant_suffix

    def networks(self, channels: int = 3) -> tuple[gan_nets.DCGANGenerator, gan_nets.DCGANDiscriminator]:
        """The DCGAN pair for these settings; D without batch norm for WGAN-GP or spectral norm."""
        return gan_nets.dcgan(
            self.size, channels, self.latent_dim, self.width, self.downsample, self.discriminator_norm
        )


def load_gan_data(cfg: DCGANSettings, device: torch.device | str = "cpu") -> ImageData:
    """The images of ``cfg.dataset`` at ``cfg.size`` pixels, capped at ``cfg.n_images``."""
    if cfg.dataset == "abstract-art":
        return load_abstract_art(device, size=cfg.size, n_images=cfg.n_images, seed=cfg.seed)
    data = load_cifar10(device) if cfg.dataset == "cifar10" else load_mnist(device)
    if cfg.n_images is not None:
        data.train_x = data.train_x[: cfg.n_images]
        data.train_y = None if data.train_y is None else data.train_y[: cfg.n_images]
    return data


def save_gan_run(
    run: Run,
    *,
    model: str,
    cfg: GANSettings,
    data: ImageData,
    training: gan.GANTraining,
    recorder: progression.FixedNoise,
    history: History,
    device,
) -> Trained:
    """Save the figures (real images, curves, progression figure and GIF, samples) and metrics.json;
    return the trained run (its ``final`` is what metrics.json records).

    ``final`` holds seconds and images per second of an epoch, the last epoch's means of the four
    adversarial quantities, and the mode-collapse check (``diversity_ratio``: generated vs real).
    """
    G, D = training.generator, training.discriminator
    title = f"{model.upper()} on {data.label}"
    run.save_figure(plots.image_grid(data.train_x[:64], title=f"real images: {data.label}"), "real_images")
    run.save_figure(plots.gan_curves(history, title=title, real_label=cfg.real_label), "gan_curves")
    run.save_figure(recorder.figure(title=f"{title}: fixed noise after each epoch"), "progression")
    gif = recorder.save_gif(run.dir / "progression.gif", n_show=64 if data.image_shape[-1] < 48 else 32)
    run.figures["progression_gif"] = gif.name
    n_check = settings.pick(*N_DIVERSITY)
    fake = gan.sample(G, n_check, seed=cfg.seed)
    run.save_figure(plots.image_grid(fake[:64], value_range=(-1, 1), title=f"{title}: samples"), "samples")
    real = data.test_x if data.n_test >= 100 else data.train_x  # held-out images when there are enough
    per_epoch = seconds_per_epoch(history)
    final = {
        "seconds_per_epoch": per_epoch,
        "images_per_second": (data.n_train // cfg.batch_size) * cfg.batch_size / per_epoch,
        "parameters_g": count_parameters(G),
        "parameters_d": count_parameters(D),
        **{k: history.last.get(f"train_{k}", float("nan")) for k in ("d_loss", "g_loss", "d_real", "d_fake")},
        **{k: history.last[f"train_{k}"] for k in ("wasserstein", "gp") if f"train_{k}" in history.last},
        **metrics.diversity_ratio((fake + 1) / 2, real[:n_check].cpu()),
    }
    if data.name == "MNIST":
        final.update(metrics.digit_sample_quality(data, (fake + 1) / 2, seed=cfg.seed))
    elif data.name != "MNIST":
        final.update(metrics.inception_fid(real[:n_check], (fake + 1) / 2))
    plots.close_all()
    used = {"lr_g": cfg.lrs[0], "lr_d": cfg.lrs[1]}  # what was used, not None for "same as lr"
    if isinstance(cfg, DCGANSettings):
        used["image_size"] = cfg.size
    return run.record(
        model=model, cfg=cfg, training=training, data=data, history=history, final=final, device=device, **used
    )


def _train(model: str, run: Run, cfg: GANSettings, data: ImageData, G, D, device, progress: bool) -> Trained | None:
    G, D = G.to(device), D.to(device)
    if device.type == "cuda" and model == "dcgan":  # convolutions run faster on NHWC tensors on GPUs
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    training = cfg.training(G, D)
    recorder = progression.FixedNoise(G, n=64, seed=cfg.seed)
    history = fit_in_run(run, training, data, cfg, progress, callbacks=[recorder])
    if not distributed.is_main():
        return None  # under torchrun, rank 0 evaluates and writes the run
    return save_gan_run(
        run, model=model, cfg=cfg, data=data, training=training, recorder=recorder, history=history, device=device
    )


def run_gan(
    cfg: GANSettings | None = None, out: str | Path | None = None, device: str | None = None, progress: bool = True
) -> dict:
    """Train the MLP GAN on MNIST and write its figures, GIF and metrics.json."""
    cfg = cfg or GANSettings()
    run, device = start_run(cfg.run_name, cfg.seed, out, device)
    data = load_mnist(device)
    return _train("gan", run, cfg, data, *cfg.networks(), device, progress)


def run_dcgan(
    cfg: DCGANSettings | None = None, out: str | Path | None = None, device: str | None = None, progress: bool = True
) -> dict:
    """Train the DCGAN (abstract art by default) and write its figures, GIF and metrics.json."""
    cfg = cfg or DCGANSettings()
    run, device = start_run(cfg.run_name, cfg.seed, out, device)
    data = load_gan_data(cfg, device)
    return _train("dcgan", run, cfg, data, *cfg.networks(data.image_shape[0]), device, progress)


RECIPES_GAN = {"gan": (run_gan, GANSettings), "dcgan": (run_dcgan, DCGANSettings)}
