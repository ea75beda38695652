"""Default settings and headless recipes of notebook 03: the MLP GAN on MNIST (``gan``), the same GAN
told which digit to draw (``cgan``, ``labkit.gan.cgan``) and the DCGAN on abstract art (``dcgan``), as
``python -m labkit train gan|cgan|dcgan`` runs them. Each takes any dataset of ``labkit.datasets``.

The notebook walks through the same steps cell by cell and ends with ``save_gan_run``, so a notebook
run and a command-line run leave the same metrics.json, figures and GIF.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .. import datasets, metrics, plots, progression, swd
from ..data import ImageData
from ..engine import distributed, environment, settings
from ..engine.family import DoctorCheck, Option, Recipe
from ..engine.runs import Run, Trained, fit_in_run, start_run
from ..engine.training import History, seconds_per_epoch
from ..models import count_parameters
from . import cgan, wgan
from . import nets as gan_nets
from . import training as gan

DCGAN_REAL_LABEL = 0.9  # one-sided label smoothing, on by default for the DCGAN
DCGAN_EPOCHS = 100  # the course's full settings for the DCGAN ...
DCGAN_CPU_EPOCHS = 18  # ... and what fits on a CPU: within the minutes of the transposed G's 30 epochs before (on
# 2 cores 1,292 s of training against 1,690 s, benchmarks/results/time_to_quality.json; REFERENCE_CPU_MINUTES)
LOSSES = ("bce", "wgan-gp")  # the minimax game on logits (Goodfellow et al. 2014), or WGAN-GP (labkit.gan.wgan)
GENERATOR_EMA = 0.999  # samples from the average of G: Fréchet distance 11.2, then 12.2 (3 seeds); G 19.6 (README)
N_DIVERSITY = (1000, 256)  # images per side of the mode-collapse check (full, smoke)


@dataclass
class GANSettings(settings.RunSettings):
    """Defaults of the MLP GAN on MNIST (notebook 03, "The MNIST GAN"). ``lr`` is both learning rates unless
    ``lr_g`` / ``lr_d`` set one apart; ``real_label`` 0.9 switches on one-sided label smoothing; ``g_steps`` = k
    generator updates per D update. ``loss`` "wgan-gp" trains a critic with the gradient penalty
    (``labkit.gan.wgan``; ``n_critic`` critic updates per G update, penalty weight ``gp_weight``); ``spectral_norm``
    normalises D's layers (Miyato et al. 2018): notebook 03, "Other losses: WGAN-GP and spectral normalisation".
    ``ema``: samples come from the average of G's weights with this decay (0: G itself; notebook 03, "Sampling from
    the average"). ``dataset``, ``image_size``: what to train on.
    """

    epochs: int = field(default_factory=lambda: environment.pick(full=100, smoke=environment.SMOKE_EPOCHS))
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
    ema: float = GENERATOR_EMA

    def __post_init__(self):
        super().__post_init__()
        datasets.check_dataset(self.dataset, self.image_size)
        for name in ("batch_size", "latent_dim", "g_steps", "n_critic"):
            settings.whole_number(name, getattr(self, name))
        for name in ("lr_g", "lr_d"):  # None: lr
            if getattr(self, name) is not None:
                settings.learning_rate(name, getattr(self, name))
        gan.check_real_label(self.real_label)
        settings.one_of("loss", self.loss, LOSSES)
        settings.number("gp_weight", self.gp_weight, at_least=0, what="a number >= 0 (10 in the WGAN-GP paper)")
        if self.loss == "wgan-gp":
            wgan.check_bce_tricks_unused(self.real_label, self.g_steps, self.n_critic)

    @property
    def run_name(self) -> str:
        """``gan``, the dataset when it is not MNIST (``labkit.datasets.run_suffix``), then ``-wgan-gp``
        for that loss and ``-sn`` for spectral normalisation."""
        return "gan" + datasets.run_suffix(self.dataset, self.image_size) + self.variant_suffix

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images these settings train on."""
        return datasets.image_shape(self.dataset, self.image_size)

    @property
    def variant_suffix(self) -> str:
        return ("-wgan-gp" if self.loss == "wgan-gp" else "") + ("-sn" if self.spectral_norm else "")

    @property
    def discriminator_norm(self) -> bool:
        """Whether D may use batch norm: not as a WGAN-GP critic, nor with spectral normalisation."""
        return self.loss == "bce" and not self.spectral_norm

    def networks(self) -> tuple[nn.Module, nn.Module]:
        """The course's MLP generator and discriminator for these images (``training`` adds spectral norm)."""
        return gan_nets.mlp_gan(self.latent_dim, self.image_shape)

    @property
    def lrs(self) -> tuple[float, float]:
        """(generator lr, discriminator lr)."""
        return (self.lr_g or self.lr, self.lr_d or self.lr)

    epochs_note = None  # why these settings train fewer epochs than the course's (DCGANSettings); None: they do not

    def fresh_training(self, device="cpu") -> gan.GANTraining:
        """A fresh training of this GAN's ``networks()`` on ``device`` (``RunSettings.fresh_training``)."""
        return self.training(*(m.to(device) for m in self.networks()))

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
            ema=self.ema,
            **extra,
        )


@dataclass
class DCGANSettings(GANSettings):
    """Defaults of the DCGAN of notebook 03 (Radford et al. 2016): abstract art at 64x64,
    one-sided label smoothing on. ``dataset``: any of ``labkit.datasets`` (abstract-art, cifar10,
    mnist, ...); ``image_size``: 28, 32 or 64, by default the dataset's own when it is one of these and
    64 otherwise (images are resized to it); ``downsample``: stride or maxpool (the CIFAR-10 variant);
    ``upsample``: resize (then convolve; no checkerboard) or transposed (the paper's G); ``n_images`` caps
    the training images (None: all; smoke mode: 128 abstract-art images). ``epochs``: 100, or
    ``DCGAN_CPU_EPOCHS`` on a machine without a GPU, where 100 take hours (``epochs_note`` says so).
    ``real_label`` is 0.9 for the BCE loss and 1 (no labels to smooth) for WGAN-GP."""

    epochs: int = field(
        default_factory=lambda: environment.pick(
            full=DCGAN_EPOCHS, smoke=environment.SMOKE_EPOCHS, cpu=DCGAN_CPU_EPOCHS
        )
    )
    real_label: float = DCGAN_REAL_LABEL
    dataset: str = "abstract-art"
    width: int = 64
    downsample: str = "stride"
    upsample: str = "resize"
    n_images: int | None = None

    def __post_init__(self):
        if self.loss == "wgan-gp" and self.real_label == DCGAN_REAL_LABEL:
            self.real_label = 1.0  # the default smoothing belongs to the BCE loss
        super().__post_init__()
        if self.size not in gan_nets.IMAGE_SIZES:
            raise ValueError(
                f"image_size {self.image_size!r}: the DCGAN networks are built for "
                f"{', '.join(map(str, gan_nets.IMAGE_SIZES))} pixels (the images are resized to it)"
            )
        settings.whole_number("width", self.width)
        settings.one_of("downsample", self.downsample, gan_nets.DOWNSAMPLING)
        settings.one_of("upsample", self.upsample, gan_nets.UPSAMPLING)
        if self.n_images is not None:
            settings.whole_number("n_images", self.n_images)

    @property
    def epochs_note(self) -> str | None:
        """The sentence that says plainly when this DCGAN trains fewer epochs than the course's (a CPU's)."""
        if environment.smoke_mode() or self.epochs >= DCGAN_EPOCHS or not environment.training_on_cpu():
            return None
        return (
            f"CPU: {self.epochs} of the course's {DCGAN_EPOCHS} DCGAN epochs (on 2 cores the {DCGAN_CPU_EPOCHS} of the "
            f"defaults took 24 minutes, notebook 03 in all 34); a GPU runtime (Colab, Kaggle) runs all {DCGAN_EPOCHS}"
        )

    @property
    def size(self) -> int:
        """The image size in use: ``image_size``, or the dataset's own when the networks have that size, else 64."""
        own = datasets.image_shape(self.dataset)[1]
        return self.image_size or (own if own in gan_nets.IMAGE_SIZES else 64)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return datasets.image_shape(self.dataset, self.size)

    @property
    def run_name(self) -> str:
        """``dcgan`` on abstract art at 64 pixels, else ``dcgan-<dataset>`` (``-<size>px``), then loss and norm."""
        data = datasets.run_suffix(self.dataset, self.image_size)
        if self.dataset == "abstract-art":
            data = data.removeprefix("-abstract-art")
        elif self.dataset == "mnist":
            data = "-mnist" + data
        transposed = "-transposed" if self.upsample == "transposed" else ""
        return "dcgan" + data + transposed + self.variant_suffix

    def networks(self) -> tuple[gan_nets.DCGANGenerator, gan_nets.DCGANDiscriminator]:
        """The DCGAN pair for these settings; D without batch norm for WGAN-GP or spectral norm."""
        channels, norm = self.image_shape[0], self.discriminator_norm
        return gan_nets.dcgan(self.size, channels, self.latent_dim, self.width, self.downsample, norm, self.upsample)


@dataclass
class CGANSettings(GANSettings):
    """Defaults of the conditional GAN (notebook 03, "The conditional GAN"): the MNIST GAN's, with the
    label given to both networks (``labkit.gan.cgan``). Every option of the MNIST GAN applies; the dataset
    must have a class label per image. ``d_conditioning``: how D is told the label, "projection" (Miyato &
    Koyama 2018) or "concat" (the one-hot beside the image, which G hears late: "Why the label is heard late")."""

    d_conditioning: str = "projection"

    def __post_init__(self):
        super().__post_init__()
        settings.one_of("d_conditioning", self.d_conditioning, cgan.D_CONDITIONING)
        if not datasets.has_labels(self.dataset):
            raise ValueError(
                f"the conditional GAN draws G(z, y) for a class y and needs a label for every image, and "
                f"{self.dataset} has none: choose one of {', '.join(datasets.LABELLED)}, or train the plain "
                "GAN (train gan), which needs no labels"
            )

    @property
    def run_name(self) -> str:
        """``cgan``, the dataset when not MNIST, ``-concat`` for that D, ``-wgan-gp`` and ``-sn`` as for ``gan``."""
        concat = "-concat" if self.d_conditioning == "concat" else ""
        return "cgan" + datasets.run_suffix(self.dataset, self.image_size) + concat + self.variant_suffix

    def networks(self) -> tuple[nn.Module, nn.Module]:
        """The conditional MLP generator and discriminator for these images, D told the label by ``d_conditioning``."""
        return cgan.conditional_gan(self.latent_dim, self.image_shape, self.d_conditioning)


def load_gan_data(cfg: GANSettings, device: torch.device | str = "cpu") -> ImageData:
    """The images of ``cfg.dataset`` at the settings' size (``labkit.datasets.load_dataset``), capped at
    ``cfg.n_images`` for the DCGAN; data without a test split keeps every image for training."""
    size = cfg.size if isinstance(cfg, DCGANSettings) else cfg.image_size
    n_images = cfg.n_images if isinstance(cfg, DCGANSettings) else None
    return datasets.load_dataset(cfg.dataset, device, image_size=size, n_images=n_images, held_out=0, seed=cfg.seed)


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
    """Save the figures (real images, curves, progression figure and GIF, samples) and metrics.json; return
    the trained run. Its ``final`` holds seconds and images per second of an epoch, the last epoch's means of the
    four adversarial quantities, the mode-collapse check (``diversity_ratio``) and the samples' judges."""
    G, D = training.generator, training.discriminator
    title = f"{model.upper()} on {data.label}"
    run.save_figure(plots.image_grid(data.train_x[:64], title=f"real images: {data.label}"), "real_images")
    run.save_figure(plots.gan_curves(history, title=title, real_label=cfg.real_label), "gan_curves")
    run.save_figure(recorder.figure(title=f"{title}: fixed noise after each epoch"), "progression")
    gif = recorder.save_gif(run.dir / "progression.gif", n_show=64 if data.image_shape[-1] < 48 else 32)
    run.figures["progression_gif"] = gif.name
    n_check = environment.pick(*N_DIVERSITY)
    fake = gan.sample(training.sampling_generator, n_check, seed=cfg.seed)  # the average of G's weights, if kept
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
    judged_by_classifier = metrics.judged_by_digit_classifier(data)  # the MNIST family
    if judged_by_classifier:
        final.update(metrics.digit_sample_quality(data, (fake + 1) / 2, seed=cfg.seed))
    else:  # no classifier reads these: the pyramid's patches offline (labkit.swd), Inception's features for colour
        final.update(swd.sliced_wasserstein_to_real(real, (fake + 1) / 2, n_check, seed=cfg.seed))
        if data.image_shape[0] == 3:
            final.update(metrics.inception_fid(real[:n_check], (fake + 1) / 2))
    if hasattr(G, "num_classes"):  # the conditional GAN: does it draw the class it is asked for?
        if judged_by_classifier:
            final.update(metrics.drawn_class_accuracy((fake + 1) / 2, G.num_classes, data, seed=cfg.seed))
        run.save_figure(cgan.digit_rows(training.sampling_generator, seed=cfg.seed), "digit_grid")
    plots.close_all()
    used = {"lr_g": cfg.lrs[0], "lr_d": cfg.lrs[1]}  # what was used, not None for "same as lr"
    if isinstance(cfg, DCGANSettings):
        used["image_size"] = cfg.size
    kept = {"training": training, "data": data, "history": history, "final": final, "device": device}
    return run.record(model=model, cfg=cfg, note=cfg.epochs_note, **kept, **used)


def _train(model: str, cfg: GANSettings, out, device, progress: bool) -> Trained | None:
    """The recipe of each GAN: train ``cfg.networks()`` into the run ``cfg.run_name`` and save it."""
    run, device = start_run(cfg.run_name, cfg.seed, out, device)
    if cfg.epochs_note:
        print(f"labkit: {cfg.epochs_note}")
    data = load_gan_data(cfg, device)
    G, D = (m.to(device) for m in cfg.networks())
    if device.type == "cuda" and model == "dcgan":  # convolutions run faster on NHWC tensors on GPUs
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    training = cfg.training(G, D)
    recorder = progression.FixedNoise(training, n=64, seed=cfg.seed)  # what draw gives: the average, if kept
    conditional = hasattr(G, "num_classes")  # the conditional GAN's steps get the labels
    callbacks = [recorder]
    if conditional and metrics.judged_by_digit_classifier(data):  # does G draw the digit asked for? after each epoch
        callbacks.append(metrics.ConditionalAccuracyPerEpoch(training, data, seed=cfg.seed))
    history = fit_in_run(run, training, data, cfg, progress, callbacks=callbacks, labels=conditional)
    if not distributed.is_main():
        return None  # under torchrun, rank 0 evaluates and writes the run
    return save_gan_run(
        run, model=model, cfg=cfg, data=data, training=training, recorder=recorder, history=history, device=device
    )


def run_gan(cfg: GANSettings | None = None, out=None, device=None, progress: bool = True) -> Trained | None:
    """Train the MLP GAN (on MNIST by default) and write its figures, GIF and metrics.json."""
    return _train("gan", cfg or GANSettings(), out, device, progress)


def run_cgan(cfg: CGANSettings | None = None, out=None, device=None, progress: bool = True) -> Trained | None:
    """Train the conditional MLP GAN (on MNIST by default) and write its figures, one row per class, GIF, metrics."""
    return _train("cgan", cfg or CGANSettings(), out, device, progress)


def run_dcgan(cfg: DCGANSettings | None = None, out=None, device=None, progress: bool = True) -> Trained | None:
    """Train the DCGAN (abstract art by default) and write its figures, GIF and metrics.json."""
    return _train("dcgan", cfg or DCGANSettings(), out, device, progress)


OPTIONS = (  # what every GAN's settings take on the command line
    Option("latent_dim", "GAN: size of the latent code", int),
    Option("lr_g", "GAN: generator learning rate (default: --lr)", float),
    Option("lr_d", "GAN: discriminator learning rate (default: --lr)", float),
    Option("real_label", "GAN: target for real images (0.9 = one-sided label smoothing, 1 = none)", float),
    Option("g_steps", "GAN: generator updates per discriminator update (k)", int),
    Option("loss", "GAN: bce (default) or wgan-gp (a critic with the gradient penalty)", str, LOSSES),
    Option("n_critic", "GAN, wgan-gp: critic updates per G update (5)", int),
    Option("gp_weight", "GAN, wgan-gp: penalty weight lambda (10)", float),
    Option("spectral_norm", "GAN: spectral normalisation of the discriminator's layers (Miyato et al. 2018)", bool),
    Option("ema", "GAN: decay of the average of G's weights samples come from (0.999; 0: G itself)", float),
)
CGAN_OPTIONS = (Option("d_conditioning", "cgan: how D is told the label", str, cgan.D_CONDITIONING),)
DCGAN_OPTIONS = (
    Option("downsample", "dcgan: discriminator downsampling, stride (default) or maxpool"),
    Option("upsample", "dcgan: generator upsampling", str, gan_nets.UPSAMPLING),
    Option("n_images", "dcgan: train on at most N images", int),
)
RECIPES = (
    Recipe(
        "gan",
        run_gan,
        GANSettings,
        OPTIONS,  # the second doctor check: the gradient penalty's double backward in mixed precision
        doctor=(DoctorCheck.of("gan", GANSettings), DoctorCheck.of("gan-wgan-gp", GANSettings, loss="wgan-gp")),
        drawn=True,
        gradebook=("fid_classifier", "class_coverage"),
        label="GAN",
    ),
    Recipe(
        "cgan",
        run_cgan,
        CGANSettings,
        OPTIONS + CGAN_OPTIONS,
        (DoctorCheck.of("cgan", CGANSettings, "labelled digits"),),
        drawn=True,
        label="cGAN",
    ),
    Recipe(
        "dcgan",
        run_dcgan,
        DCGANSettings,
        OPTIONS + DCGAN_OPTIONS,
        doctor=(
            DoctorCheck.of("dcgan", DCGANSettings, "art", check={"compiled": True}),
            DoctorCheck.of("dcgan-wgan-gp-sn", DCGANSettings, "art", loss="wgan-gp", spectral_norm=True),
        ),
        gradebook=("seconds_per_epoch",),
        cpu_note=lambda: DCGANSettings().epochs_note,
        label="DCGAN",
    ),
)
