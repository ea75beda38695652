"""The Wasserstein GAN with gradient penalty (WGAN-GP; Gulrajani et al. 2017, "Improved Training of
Wasserstein GANs"): the critic's and the generator's losses, the gradient penalty, and the training
step ``WGANGPTraining`` that ``python -m labkit train gan --loss wgan-gp`` and notebook 03,
"Other losses: WGAN-GP and spectral normalisation", run.

The critic is a discriminator without a sigmoid (the course's discriminators already return raw
scores) and without batch norm: the penalty is taken image by image, and batch norm would tie each
image's score to the others in its batch (section 4 of the paper).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..engine import settings
from ..engine.training import History
from .training import GANTraining

GP_WEIGHT = 10.0  # lambda of the paper, used for every experiment there
N_CRITIC = 5  # critic updates per generator update (algorithm 1)
WGAN_BETAS = (0.0, 0.9)  # Adam's betas in the paper


def check_bce_tricks_unused(real_label: float, g_steps: int, n_critic: int) -> None:
    """Refuse the BCE loss's tricks in WGAN-GP settings, saying why: the critic has no labels to smooth, and
    it balances the two networks the other way round (``n_critic`` critic updates per generator update)."""
    if real_label != 1:
        raise ValueError(
            f"real_label={real_label:g} is label smoothing, a trick of the BCE loss; the WGAN-GP critic "
            "has no labels: leave real_label at 1"
        )
    if g_steps != 1:
        raise ValueError(
            f"g_steps={g_steps} is a trick of the BCE loss; WGAN-GP balances the two the other way "
            f"round, with n_critic critic updates per generator update (now {n_critic})"
        )


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """E[D(G(z))] - E[D(x)]: minimising it makes the critic score real images above fakes; its negative
    estimates the Wasserstein-1 distance between the two distributions when the critic is 1-Lipschitz
    (Arjovsky et al. 2017, "Wasserstein GAN", eq. 3). The gradient penalty is added apart."""
    return fake_scores.mean() - real_scores.mean()


def wasserstein_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))]: the generator raises the critic's score of its images (Gulrajani et al. 2017, algorithm 1)."""
    return -fake_scores.mean()


def gradient_penalty(
    critic: nn.Module | Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """The mean over images of (||grad_x D(x_hat)||_2 - 1)^2, without the weight lambda.

    x_hat = eps * real + (1 - eps) * fake with one eps ~ U[0, 1] per image (Gulrajani et al. 2017,
    eq. 3 and algorithm 1). The norm is taken per image over all its pixels and channels: the gradient
    of one score with respect to one whole image. (Taking it over the channels alone, pixel by
    pixel, penalises another quantity.) ``create_graph`` keeps the penalty differentiable, so the
    critic's optimiser step lowers it. Run it outside autocast: the double backward stays in float32.
    ``critic``: D, or a function of the images alone (a conditional critic with the labels bound to it).
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake images must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    eps = torch.rand(len(real), *[1] * (real.dim() - 1), device=real.device, dtype=real.dtype)  # (B, 1, 1, 1)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)  # (B,)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)  # each score depends on its image only
    norms = grad.flatten(1).norm(2, dim=1)  # (B,): over all pixels and channels of each image
    return ((norms - 1) ** 2).mean()


class WGANGPTraining(GANTraining):
    """The WGAN-GP game as a ``Training`` for ``labkit.engine.loop.fit`` (Gulrajani et al. 2017, algorithm 1).

    Every batch is one critic update: critic loss + ``gp_weight`` * gradient penalty. Every
    ``n_critic``-th batch the generator is updated too. Adam with betas (0, 0.9) as in the paper.
    Reports per batch: ``d_loss`` (critic loss without the penalty), ``gp`` (the penalty),
    ``wasserstein`` (E[D(x)] - E[D(G(z))], the distance estimate that should fall as G improves),
    ``g_loss`` = -E[D(G(z))], and ``d_real`` / ``d_fake``, the mean critic scores (not probabilities).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *,
        n_critic: int = N_CRITIC,
        gp_weight: float = GP_WEIGHT,
        betas: tuple[float, float] = WGAN_BETAS,
        **kwargs,
    ):
        if kwargs.get("real_label", 1.0) != 1.0:
            raise ValueError("label smoothing (real_label < 1) belongs to the BCE loss; WGAN-GP has no labels")
        norms = [m for m in discriminator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if norms:
            raise ValueError(
                "the WGAN-GP critic must not use batch norm (the gradient penalty is per image): build the "
                "discriminator with norm=False, as GANSettings(loss='wgan-gp').networks() does"
            )
        super().__init__(generator, discriminator, betas=betas, **kwargs)
        self.n_critic = settings.whole_number("n_critic (critic updates per generator update)", n_critic)
        self.gp_weight = settings.number("gp_weight", gp_weight, at_least=0, what="a number >= 0 (10 in the paper)")
        self.critic_steps = 0

    def train_step(self, x: torch.Tensor, *labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``labels`` as for ``GANTraining.train_step``: the penalty then scores each interpolate with
        the label of the real and fake image it lies between."""
        x = x * 2 - 1  # [0, 1] -> [-1, 1], the range of G's tanh
        scaler = self.precision.scaler
        # 1. the critic: score real images above fakes, with gradients of norm 1 in between
        self.opt_d.zero_grad(set_to_none=True)
        with self.precision.autocast():
            fake = self.generator(self.noise(len(x), x.device), *labels).detach()
            real_scores = self.discriminator(x, *labels).float()
            fake_scores = self.discriminator(fake, *labels).float()
            d_loss = critic_loss(real_scores, fake_scores)
        critic = lambda images: self.discriminator(images, *labels)  # noqa: E731 (D with the batch's labels, if any)
        gp = gradient_penalty(critic, x, fake.float())  # float32, outside autocast
        scaler.scale(d_loss + self.gp_weight * gp).backward()
        scaler.step(self.opt_d)
        scaler.update()
        self.critic_steps += 1
        # 2. the generator, once every n_critic critic updates
        if self.critic_steps % self.n_critic == 0:
            self.opt_g.zero_grad(set_to_none=True)
            with self.precision.autocast():
                fresh = self.generator(self.noise(len(x), x.device), *labels)
                g_loss = wasserstein_generator_loss(self.discriminator(fresh, *labels).float())
            scaler.scale(g_loss).backward()  # the critic gets gradients too, but only G's optimiser steps
            scaler.step(self.opt_g)
            scaler.update()
            self.update_average()
        return {
            "d_loss": d_loss.detach(),
            "gp": gp.detach(),
            "wasserstein": -d_loss.detach(),
            "g_loss": wasserstein_generator_loss(fake_scores.detach()),
            "d_real": real_scores.detach().mean(),
            "d_fake": fake_scores.detach().mean(),
        }

    def epoch_end(self, record: dict, history: History) -> None:
        """The BCE game's "D has won" warning does not apply: a critic is meant to be trained to optimality."""

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor, *labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The critic on held-out real images and fresh fakes: the held-out Wasserstein estimate."""
        x = x * 2 - 1
        real_scores = self.discriminator(x, *labels).float()
        fake_scores = self.discriminator(self.generator(self.noise(x.shape[0], x.device), *labels), *labels).float()
        d_loss = critic_loss(real_scores, fake_scores)
        return {"d_loss": d_loss, "wasserstein": -d_loss, "d_real": real_scores.mean(), "d_fake": fake_scores.mean()}
