"""The autoencoder's training for ``labkit.engine.loop.fit``: one Adam step on the mean squared error of a
batch (notebook 01, "Training").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import optim, settings
from ..engine.training import TrainingBase
from ..losses import bernoulli_nll_of_probabilities


class AutoencoderTraining(TrainingBase):
    """Mean squared error between images and reconstructions (notebook 01, "Training")."""

    name = "ae"

    def __init__(self, model: nn.Module, lr: float = 1e-3):
        self.model = model
        self.modules = {"model": model}
        self.optimizer = optim.adam(model.parameters(), lr=settings.learning_rate("lr", lr))
        self.optimizers = {"optimizer": self.optimizer}

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.precision.autocast():
            loss = F.mse_loss(self.model(x), x)  # per pixel
        self.precision.minimize(loss, self.optimizer)
        return {"loss": loss.detach()}

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        recon = self.model(x).float()
        return {"loss": F.mse_loss(recon, x), "bce": bernoulli_nll_of_probabilities(recon, x).mean()}
