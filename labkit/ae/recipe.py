"""The autoencoder's settings and recipe, as ``python -m labkit train ae`` runs it: ``AESettings``
(notebook 01's defaults) and ``run_ae`` (train, save the figures, record the run). Colour images and other
sizes than MNIST's 28 x 28 (``--dataset``, ``--image-size``) get ``ConvAutoencoder`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import datasets, plots
from ..conv_nets import conv_plan, network_for
from ..data import ImageData
from ..engine import distributed, environment, settings
from ..engine.family import DoctorCheck, Option, Recipe
from ..engine.loop import evaluate
from ..engine.runs import Trained, fit_in_run, start_run, training_cost
from ..engine.training import History
from ..models import DEFAULT_HIDDEN, MNIST_SHAPE
from .model import Autoencoder, ConvAutoencoder
from .training import AutoencoderTraining


@dataclass
class AESettings(settings.RunSettings):
    """Defaults of notebook 01 (see its "Settings" cell for why these values). ``dataset`` and
    ``image_size``: what to train on (``labkit.datasets``); 1 x 28 x 28 images train the MLP of
    ``hidden``, any other shape ``ConvAutoencoder`` (which has no use for ``hidden``)."""

    epochs: int = field(default_factory=lambda: environment.pick(full=20, smoke=environment.SMOKE_EPOCHS))
    batch_size: int = 32
    lr: float = 1e-3
    latent_dim: int = 32
    hidden: tuple = DEFAULT_HIDDEN

    def __post_init__(self):
        super().__post_init__()
        for name in ("batch_size", "latent_dim"):
            settings.whole_number(name, getattr(self, name))
        shape = datasets.check_dataset(self.dataset, self.image_size)
        if shape != MNIST_SHAPE:
            conv_plan(shape)  # an image size the convolutions cannot halve is refused now, not after loading

    @property
    def run_name(self) -> str:
        """``ae`` on MNIST, with the dataset added otherwise (``ae-cifar10``; ``labkit.datasets.run_suffix``)."""
        return "ae" + datasets.run_suffix(self.dataset, self.image_size)

    def training(
        self,
        device: torch.device | str = "cpu",
        model_class: type = Autoencoder,
        image_shape: Sequence[int] | None = None,
    ) -> AutoencoderTraining:
        """A fresh autoencoder on ``device`` with its training, as these settings describe it;
        ``model_class`` is the network to build for 1 x 28 x 28 images (notebook 01 passes the one it
        defines); ``image_shape`` (default: the dataset's) picks ``ConvAutoencoder`` for other shapes."""
        shape = image_shape or datasets.image_shape(self.dataset, self.image_size)
        model = network_for(
            shape, model_class, Autoencoder, ConvAutoencoder, latent_dim=self.latent_dim, hidden=self.hidden
        )
        return AutoencoderTraining(model.to(device), lr=self.lr)


def ae_final(test: dict, history: History, model: torch.nn.Module) -> dict:
    """The ``final`` entry of an AE's metrics.json from ``evaluate`` on the test split."""
    return {"test_mse": test["loss"], "test_bce": test["bce"], **training_cost(history, model)}


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
    trained run (None under torchrun on ranks other than 0). The run is called ``cfg.run_name``.
    ``model_class``: the network to train on 1 x 28 x 28 images; ``data``: the images already loaded
    (default: ``cfg.dataset``); ``callbacks``: e.g. a live plot."""
    cfg = cfg or AESettings()
    run, device = start_run(cfg.run_name, cfg.seed, out, device)
    data = datasets.load_for(cfg, device, data)
    training = cfg.training(device, model_class, data.image_shape)
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
        if data.test_y is not None:  # the picture colours the codes by class
            title = f"t-SNE of AE codes, {data.label}"
            run.save_figure(plots.tsne_plot(codes, data.test_y, title=title, seed=cfg.seed), "latent_tsne")
        random_codes = torch.randn(32, cfg.latent_dim, device=device) * codes.std(0) + codes.mean(0)
        run.save_figure(plots.image_grid(model.decode(random_codes), title="AE decoding random codes"), "random_codes")
    plots.close_all()
    final = ae_final(test, history, model)
    return run.record(model="ae", cfg=cfg, training=training, data=data, history=history, final=final, device=device)


def remeasure_ae(training: AutoencoderTraining, data: ImageData, cfg: AESettings) -> dict[str, float]:
    """The test MSE per pixel of a student's weights, as ``run_ae`` measured it (``labkit.grade``)."""
    return {"test_mse": evaluate(training, data.test_x)["loss"]}


RECIPE = Recipe(
    "ae",
    run_ae,
    AESettings,
    options=(Option("latent_dim", "AE: size of the code", int),),
    doctor=(DoctorCheck.of("ae", AESettings),),
    remeasure=remeasure_ae,
    gradebook=("test_mse",),
    label="AE",
)
