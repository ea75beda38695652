"""The VAE's settings and recipe, as ``python -m labkit train vae`` runs it: ``VAESettings`` (notebook 02's
defaults), ``run_vae`` (train, evaluate, figures, metrics.json) and the run's name. Colour images and other
sizes than MNIST's 28 x 28 (``--dataset``, ``--image-size``) get ``ConvVAE`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import datasets, plots
from ..conv_nets import conv_plan, network_for
from ..data import ImageData, first_test_index
from ..engine import distributed, environment, settings
from ..engine.family import DoctorCheck, Option, Recipe
from ..engine.loop import evaluate
from ..engine.runs import Trained, fit_in_run, start_run, training_cost
from ..engine.training import History
from ..models import MNIST_SHAPE, start_at_mean_image
from .evaluation import elbo_terms
from .losses import vae_loss
from .model import VAE, VAE_VARIANTS, ConvVAE
from .training import VAETraining


@dataclass
class VAESettings(settings.RunSettings):
    """Defaults of notebook 02 (see its "Settings" cell for why these values). ``dataset`` and
    ``image_size``: what to train on (``labkit.datasets``); 1 x 28 x 28 images train the MLP of
    ``variant``, any other shape ``ConvVAE`` with the variant's ``latent_dim``."""

    variant: str = "default"
    epochs: int = field(default_factory=lambda: environment.pick(full=20, smoke=environment.SMOKE_EPOCHS))
    batch_size: int = 32
    lr: float = 1e-3
    beta: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        settings.one_of("variant", self.variant, VAE_VARIANTS)
        settings.number("beta", self.beta, at_least=0, what="a number >= 0 (1 is the plain VAE)")
        shape = datasets.check_dataset(self.dataset, self.image_size)
        if shape != MNIST_SHAPE:
            conv_plan(shape)  # an image size the convolutions cannot halve is refused now, not after loading

    def training(
        self,
        device: torch.device | str = "cpu",
        model_class: type = VAE,
        loss=vae_loss,
        image_shape: Sequence[int] | None = None,
    ) -> VAETraining:
        """A fresh VAE of ``variant`` on ``device`` with its training, as these settings describe it;
        ``model_class`` and ``loss`` are the network for 1 x 28 x 28 images and the ELBO (notebook 02
        passes its own); ``image_shape`` (default: the dataset's) picks ``ConvVAE`` for other shapes."""
        shape = image_shape or datasets.image_shape(self.dataset, self.image_size)
        model = network_for(shape, model_class, VAE, ConvVAE, **VAE_VARIANTS[self.variant])
        return VAETraining(model.to(device), lr=self.lr, beta=self.beta, loss=loss)


def vae_final(test: dict, history: History, model: torch.nn.Module) -> dict:
    """The ``final`` entry of a VAE's metrics.json from ``evaluate`` on the test split."""
    return {**elbo_terms(test), **training_cost(history, model)}


def run_vae(
    cfg: VAESettings | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    *,
    model_class: type = VAE,
    loss=vae_loss,
    data: ImageData | None = None,
    callbacks=(),
) -> Trained | None:
    """Train a VAE variant of notebook 02 and write its figures and metrics.json; returns the trained
    run (None under torchrun on ranks other than 0). The run is called ``vae``, ``vae-<variant>``, and
    ``-beta<beta>`` is added when beta is not 1, the dataset after ``vae`` when it is not MNIST
    (``vae_run_name``). ``model_class`` and ``loss``: the network for 1 x 28 x 28 images and the ELBO
    (notebook 02 passes its own); ``data``: the images already loaded (default: ``cfg.dataset``);
    ``callbacks``: e.g. a live plot."""
    cfg = cfg or VAESettings()
    run, device = start_run(vae_run_name(cfg), cfg.seed, out, device)
    data = datasets.load_for(cfg, device, data)
    training = cfg.training(device, model_class, loss, data.image_shape)
    model = training.model
    start_at_mean_image(model.decoder, data.train_x)  # the untrained decoder draws the average image
    history = fit_in_run(run, training, data, cfg, progress, callbacks)
    if not distributed.is_main():
        return None  # under torchrun, rank 0 evaluates and writes the run
    torch.manual_seed(cfg.seed)  # the test ELBO draws z: make the reported number repeatable
    test = evaluate(training, data.test_x)
    title = f"VAE ({cfg.variant}) on {data.label}"
    with torch.no_grad():
        x = data.test_x[:10]
        run.save_figure(plots.loss_curves(history, plots.VAE_PANELS, title=title), "loss_curves")
        mu, _ = model.encode(x)
        run.save_figure(
            plots.reconstruction_grid(x, model.decode(mu), title=f"{title}: reconstructions"), "reconstructions"
        )
        run.save_figure(plots.image_grid(model.sample(32), title=f"{title}: samples from the prior"), "prior_samples")
        mu_all, _ = model.encode(data.test_x)
        if model.latent_dim == 2:
            if data.test_y is not None:  # the scatter colours the means by class
                scatter = plots.latent_scatter(mu_all, data.test_y, title=f"{title}: latent means")
                run.save_figure(scatter, "latent_scatter")
            run.save_figure(
                plots.manifold_grid(model.decode, title=f"{title}: decoded manifold", device=device), "manifold"
            )
        # A t-SNE of the latent means takes longer than ten epochs of training here; notebook 02
        # draws it, and notebook 04 draws it beside the AE's for the report.
        labelled = data.test_y is not None  # from a 1 to a 7; without labels between the first and last image
        a, b = (first_test_index(data, 1), first_test_index(data, 7)) if labelled else (0, data.n_test - 1)
        path = plots.linear_path(mu_all[a], mu_all[b], steps=10)
        run.save_figure(plots.interpolation_strip(model.decode(path), title=f"{title}: interpolation"), "interpolation")
    plots.close_all()
    final = vae_final(test, history, model)
    return run.record(model="vae", cfg=cfg, training=training, data=data, history=history, final=final, device=device)


def vae_run_name(cfg: VAESettings) -> str:
    """``vae``, then the dataset when it is not MNIST (``labkit.datasets.run_suffix``), ``-<variant>`` for
    variants other than the default and ``-beta<beta>`` when beta is not 1: ``vae-cifar10-latent2-beta4``."""
    name = "vae" + datasets.run_suffix(cfg.dataset, cfg.image_size)
    name = name if cfg.variant == "default" else f"{name}-{cfg.variant}"
    return name if cfg.beta == 1 else f"{name}-beta{cfg.beta:g}"


def remeasure_vae(training: VAETraining, data: ImageData, cfg: VAESettings) -> dict[str, float]:
    """The test -ELBO of a student's weights, with ``run_vae``'s seed for the z it draws (``labkit.grade``)."""
    torch.manual_seed(cfg.seed)
    return {"test_neg_elbo_nats": evaluate(training, data.test_x)["neg_elbo"]}


RECIPE = Recipe(
    "vae",
    run_vae,
    VAESettings,
    options=(
        Option("variant", "VAE variant: default, narrow, classic or latent2"),
        Option("beta", "VAE: weight of the KL term (beta-VAE)", float),
    ),
    doctor=(DoctorCheck.of("vae", VAESettings),),
    remeasure=remeasure_vae,
    gradebook=("test_neg_elbo_nats", "test_recon_nats", "test_kl_nats"),
    label="VAE",
)
