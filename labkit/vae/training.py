"""The VAE's training for ``labkit.engine.loop.fit``: one Adam step on the negative ELBO of a batch, and the
test ELBO's parts (notebook 02, "Training").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import optim, settings
from ..engine.training import TrainingBase
from .losses import vae_loss


class VAETraining(TrainingBase):
    """Negative ELBO (reconstruction + beta * KL) per image in nats (notebook 02, "The loss")."""

    name = "vae"

    def __init__(self, model: nn.Module, lr: float = 1e-3, beta: float = 1.0, loss=vae_loss):
        self.model = model
        self.loss = loss  # (x_logits, x, mu, logvar, beta) -> parts; notebook 02 passes the one it defines
        self.beta = settings.number("beta", beta, at_least=0, what="a number >= 0 (1 is the plain VAE)")
        self.modules = {"model": model}
        self.optimizer = optim.adam(model.parameters(), lr=settings.learning_rate("lr", lr))
        self.optimizers = {"optimizer": self.optimizer}

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.precision.autocast():
            x_logits, mu, logvar = self.model(x)
            parts = self.loss(x_logits.float(), x, mu.float(), logvar.float(), beta=self.beta)
        self.precision.minimize(parts["loss"], self.optimizer)
        return {k: v.detach() for k, v in parts.items()}

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x_logits, mu, logvar = self.model(x)
        parts = self.loss(x_logits.float(), x, mu.float(), logvar.float(), beta=self.beta)
        parts["mse"] = F.mse_loss(torch.sigmoid(x_logits), x)
        return parts
