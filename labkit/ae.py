"""The autoencoder of notebook 01: the network, its training (mean squared error), its
settings and its recipe (train, save the figures, record the run), as ``python -m labkit train ae``
runs it. Notebook 01 writes the network out in a cell with the same layer names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import plots
from .data import ImageData
from .engine import distributed, settings
from .engine.loop import History, TrainingBase, evaluate
from .engine.precision import PRECISIONS
from .engine.runs import Trained, cost, fit_in_run, start_mnist_run
from .losses import bernoulli_nll_of_probabilities
from .models import DEFAULT_HIDDEN, MNIST_SHAPE, FlatImageModel, mlp


class Autoencoder(FlatImageModel):
    """The MLP autoencoder of notebook 01: 784 -> 512 -> 256 -> 32 -> 256 -> 512 -> 784 by default.

    Inputs: ``latent_dim`` size of the code; ``hidden`` encoder widths (the decoder mirrors them;
    ``NARROW_HIDDEN`` = (128, 64) is the course handout's narrower network); ``image_shape`` (C, H, W).
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


class AutoencoderTraining(TrainingBase):
    """Mean squared error between images and reconstructions (notebook 01, "Training")."""

    name = "ae"

    def __init__(self, model: nn.Module, lr: float = 1e-3):
        self.model = model
        self.modules = {"model": model}
        self.optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate("lr", lr))
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


@dataclass
class AESettings:
    """Defaults of notebook 01 (see its "Settings" cell for why these values)."""

    epochs: int = field(default_factory=lambda: settings.pick(full=20, smoke=settings.SMOKE_EPOCHS))
    batch_size: int = 32
    lr: float = 1e-3
    latent_dim: int = 32
    hidden: tuple = DEFAULT_HIDDEN
    seed: int = 0
    precision: str = "auto"
    compile: bool = False

    def __post_init__(self):
        settings.whole_number("epochs", self.epochs, low=0)
        for name in ("batch_size", "latent_dim"):
            settings.whole_number(name, getattr(self, name))
        settings.learning_rate("lr", self.lr)
        settings.one_of("precision", self.precision, PRECISIONS)

    def training(self, device: torch.device | str = "cpu", model_class: type = Autoencoder) -> AutoencoderTraining:
        """A fresh autoencoder on ``device`` with its training, as these settings describe it;
        ``model_class`` is the network to build (notebook 01 passes the one it defines)."""
        model = model_class(latent_dim=self.latent_dim, hidden=self.hidden).to(device)
        return AutoencoderTraining(model, lr=self.lr)


def ae_final(test: dict, history: History, model: torch.nn.Module) -> dict:
    """The ``final`` entry of an AE's metrics.json from ``evaluate`` on the test split."""
    return {"test_mse": test["loss"], "test_bce": test["bce"], **cost(history, model)}


def run_ae(
    cfg: AESettings | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    *,
    model_class: type = Autoencoder,
    data: ImageData | None = None,
    callbacks=(),
) -> Trained | None:
    """Train the autoencoder of notebook 01 and write its figures and metrics.json; returns the
    trained run (None under torchrun on ranks other than 0). ``model_class``: the network to train;
    ``data``: MNIST already loaded; ``callbacks``: e.g. a live plot."""
    cfg = cfg or AESettings()
    run, device, data = start_mnist_run("ae", cfg.seed, out, device, data)
    training = cfg.training(device, model_class)
    model = training.model
    history = fit_in_run(run, training, data, cfg, progress, callbacks)
    if not distributed.is_main():
        return None  # under torchrun, rank 0 evaluates and writes the run
    test = evaluate(training, data.test_x)
    with torch.no_grad():
        x = data.test_x[:10]
        run.save_figure(
            plots.loss_curves(history, (("loss", "MSE per pixel"),), title=f"AE on {data.label}"), "loss_curves"
        )
        run.save_figure(
            plots.reconstruction_grid(x, model(x), title=f"AE reconstructions, {data.label}"), "reconstructions"
        )
        codes = model.encode(data.test_x)
        run.save_figure(
            plots.tsne_plot(codes, data.test_y, title=f"t-SNE of AE codes, {data.label}", seed=cfg.seed), "latent_tsne"
        )
        random_codes = torch.randn(32, cfg.latent_dim, device=device) * codes.std(0) + codes.mean(0)
        run.save_figure(plots.image_grid(model.decode(random_codes), title="AE decoding random codes"), "random_codes")
    plots.close_all()
    final = ae_final(test, history, model)
    return run.record(model="ae", cfg=cfg, training=training, data=data, history=history, final=final, device=device)
