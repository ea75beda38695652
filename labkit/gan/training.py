"""The adversarial game of notebook 03: the two losses, the training step that ``labkit.engine.loop.fit``
runs (``GANTraining``), and drawing samples from a generator (``labkit.models.generate`` draws a batch).

The networks are in ``labkit.gan.nets``, the fixed-noise progression in ``labkit.progression``, the
curves in ``labkit.plots.gan_curves`` and the mode-collapse check in ``labkit.metrics.diversity_ratio``.
Images arrive in [0, 1] and are mapped to [-1, 1], the range of the generators' tanh.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import optim, settings
from ..engine.training import History, TrainingBase
from ..models import classes_in_turn, exponential_moving_average, generate
from .nets import LATENT_DIM


def check_real_label(real_label) -> float:
    """The target for real images: in (0, 1]; 1 is no label smoothing, 0.9 one-sided smoothing."""
    return settings.number(
        "real_label",
        real_label,
        above=0,
        at_most=1,
        what="in (0, 1]: 1 means no label smoothing, 0.9 is the usual one-sided smoothing",
    )


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


class GANTraining(TrainingBase):
    """The adversarial game as a ``Training`` for ``labkit.engine.loop.fit`` (notebook 03, "Training").

    Each ``train_step`` makes one discriminator update on a real batch and a fake batch, then
    ``g_steps`` generator updates (each on fresh noise). The write-ups' GAN tricks as parameters:
    ``real_label`` (0.9 = one-sided label smoothing), separate ``lr_g`` / ``lr_d``, ``g_steps`` = k.
    Adam with betas (0.5, 0.999) as in DCGAN. Reports per batch: ``d_loss``, ``g_loss`` (mean over the
    k steps), ``d_real`` = mean D(x) and ``d_fake`` = mean D(G(z)), as probabilities, both measured
    before D's update. Images arrive in [0, 1] and are mapped to [-1, 1], the range of G's tanh.
    ``ema`` > 0 keeps a running average of G's weights with that decay (``update_average`` after G's updates),
    which ``draw`` and ``sampling_generator`` sample from; a subclass's ``train_step`` calls it too.
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
        ema: float = 0.0,
    ):
        self.generator, self.discriminator = generator, discriminator
        self.modules = {"generator": generator, "discriminator": discriminator}
        if ema:  # the generator's running average, which samples come from; kept under its own key
            self.generator_average = exponential_moving_average(generator, ema)
            self.modules["generator_average"] = self.generator_average
        self.latent_dim = settings.whole_number(
            "latent_dim", latent_dim if latent_dim is not None else getattr(generator, "latent_dim", LATENT_DIM)
        )
        self.real_label = check_real_label(real_label)
        self.g_steps = settings.whole_number("g_steps (generator updates per discriminator update)", g_steps)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1) such as (0.5, 0.999), got {betas!r}")
        self.opt_g = optim.adam(generator.parameters(), lr=settings.learning_rate("lr_g", lr_g), betas=betas)
        self.opt_d = optim.adam(discriminator.parameters(), lr=settings.learning_rate("lr_d", lr_d), betas=betas)
        self.optimizers = {"generator": self.opt_g, "discriminator": self.opt_d}
        self.warned = False

    def noise(self, n: int, device: torch.device | str) -> torch.Tensor:
        """n draws of z ~ N(0, I): (n, latent_dim)."""
        return torch.randn(n, self.latent_dim, device=device)

    @property
    def sampling_generator(self) -> nn.Module:
        """The generator samples come from: the running average of G's weights where the training keeps one
        (``ema``), G itself otherwise."""
        average = self.modules.get("generator_average")  # the modules themselves, also under torchrun
        return average.module if average is not None else self.modules["generator"]

    def update_average(self) -> None:
        """After G's update: move the running average of G's weights towards them (notebook 03, "Sampling
        from the average"). Samples from the average are better than from the last weights, which jump
        about from step to step in the game (Karras et al. 2018, section A.1; Yazıcı et al. 2019)."""
        average = self.modules.get("generator_average")
        if average is not None:
            average.update_parameters(self.modules["generator"])

    def draw(self, n: int, labels: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
        """``n`` images in [0, 1] from the ``sampling_generator`` on the CPU, the noise drawn from ``seed``; a
        conditional G draws ``labels`` (default: the classes in turn). What tools outside the GAN (progress
        pictures, the grader) ask every generative training for."""
        return (sample(self.sampling_generator, n, seed=seed, labels=labels) + 1) / 2

    def train_step(self, x: torch.Tensor, *labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """One round of the game (Goodfellow et al. 2014, algorithm 1), as notebook 03 writes it out.

        ``labels``: nothing, or the batch's class labels (B,) for a conditional GAN (``labkit.gan.cgan``): then
        G draws fakes of the same classes as the real batch, and D judges every image with its label.
        Each update is zero_grad / backward / step. ``precision.scaler`` is PyTorch's gradient scaler:
        in float16 it scales the loss up before backward so that small gradients do not underflow
        and skips a step whose gradients overflowed; in float32 and bfloat16 it does nothing."""
        x = x * 2 - 1  # [0, 1] -> [-1, 1], the range of G's tanh
        scaler = self.precision.scaler
        # 1. the discriminator: push D(x) towards real_label and D(G(z)) towards 0
        self.opt_d.zero_grad(set_to_none=True)
        with self.precision.autocast():
            fake = self.generator(self.noise(len(x), x.device), *labels)
            real_logits = self.discriminator(x, *labels).float()
            fake_logits = self.discriminator(fake.detach(), *labels).float()  # detach: D's loss must not reach G
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
                    fake = self.generator(self.noise(len(x), x.device), *labels)
                g_loss = generator_loss(self.discriminator(fake, *labels).float())
            scaler.scale(g_loss).backward()  # D's weights get gradients too, but only G's optimiser steps
            scaler.step(self.opt_g)
            scaler.update()
            g_total = g_total + g_loss.detach()
        self.update_average()  # the running average of G's weights, which samples come from
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
    def eval_step(self, x: torch.Tensor, *labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """D on held-out real images and fresh fakes: a held-out D(x) far below the training D(x)
        means D memorises the training images."""
        x = x * 2 - 1
        real_logits = self.discriminator(x, *labels)
        fake_logits = self.discriminator(self.generator(self.noise(x.shape[0], x.device), *labels), *labels)
        return {
            "d_loss": discriminator_loss(real_logits, fake_logits, self.real_label),
            "d_real": torch.sigmoid(real_logits).mean(),
            "d_fake": torch.sigmoid(fake_logits).mean(),
        }


# --------------------------------------------------------------------------- sampling


def sample(
    generator: nn.Module, n: int, seed: int | None = None, batch_size: int = 500, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """n images from G in [-1, 1] on the CPU (in batches of ``batch_size``); ``seed`` fixes the noise;
    ``labels``: the classes of a conditional generator's images (default: ``classes_in_turn``)."""
    device = next(generator.parameters()).device
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    z = torch.randn(n, generator.latent_dim, generator=g).to(device)
    if labels is None and hasattr(generator, "num_classes"):
        labels = classes_in_turn(n, generator.num_classes, device)
    chunks = labels.split(batch_size) if labels is not None else [None] * len(z.split(batch_size))
    return torch.cat([generate(generator, zb, yb) for zb, yb in zip(z.split(batch_size), chunks)])
