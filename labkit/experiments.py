"""Each model's default settings and its headless recipe: train, save figures, write metrics.json.

The notebooks take their defaults from the settings classes here and walk through the same
recipe cell by cell; ``python -m labkit train MODEL`` runs the recipe in one go.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from . import distributed, plots, settings
from .data import ImageData, load_mnist
from .gan_experiments import RECIPES_GAN  # the GAN recipes live with the GANs
from .loop import History, evaluate, seconds_per_epoch
from .losses import vae_loss
from .models import DEFAULT_HIDDEN, VAE, VAE_VARIANTS, Autoencoder, count_parameters
from .precision import PRECISIONS
from .runs import Run, Trained, fit_in_run, start_run
from .train import AutoencoderObjective, VAEObjective


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

    def objective(self, device: torch.device | str = "cpu", model_class: type = Autoencoder) -> AutoencoderObjective:
        """A fresh autoencoder on ``device`` with its objective, as these settings describe it;
        ``model_class`` is the network to build (notebook 01 passes the one it defines)."""
        model = model_class(latent_dim=self.latent_dim, hidden=self.hidden).to(device)
        return AutoencoderObjective(model, lr=self.lr)


@dataclass
class VAESettings:
    """Defaults of notebook 02 (see its "Settings" cell for why these values)."""

    variant: str = "default"
    epochs: int = field(default_factory=lambda: settings.pick(full=20, smoke=settings.SMOKE_EPOCHS))
    batch_size: int = 32
    lr: float = 1e-3
    beta: float = 1.0
    seed: int = 0
    precision: str = "auto"
    compile: bool = False

    def __post_init__(self):
        settings.one_of("variant", self.variant, VAE_VARIANTS)
        settings.whole_number("epochs", self.epochs, low=0)
        settings.whole_number("batch_size", self.batch_size)
        settings.learning_rate("lr", self.lr)
        settings.number("beta", self.beta, at_least=0, what="a number >= 0 (1 is the plain VAE)")
        settings.one_of("precision", self.precision, PRECISIONS)

    def objective(self, device: torch.device | str = "cpu", model_class: type = VAE, loss=vae_loss) -> VAEObjective:
        """A fresh VAE of ``variant`` on ``device`` with its objective, as these settings describe it;
        ``model_class`` and ``loss`` are the network and the ELBO (notebook 02 passes its own)."""
        model = model_class(**VAE_VARIANTS[self.variant]).to(device)
        return VAEObjective(model, lr=self.lr, beta=self.beta, loss=loss)


def _prepare(name: str, seed: int, out, device, data: ImageData | None) -> tuple[Run, torch.device, ImageData]:
    run, device = start_run(name, seed, out, device)
    return run, device, (data.to(device) if data is not None else load_mnist(device))


def _final_common(history: History, model: torch.nn.Module) -> dict:
    return {"seconds_per_epoch": seconds_per_epoch(history), "parameters": count_parameters(model)}


def ae_final(test: dict, history: History, model: torch.nn.Module) -> dict:
    """The ``final`` entry of an AE's metrics.json from ``evaluate`` on the test split."""
    return {"test_mse": test["loss"], "test_bce": test["bce"], **_final_common(history, model)}


def vae_final(test: dict, history: History, model: torch.nn.Module) -> dict:
    """The ``final`` entry of a VAE's metrics.json from ``evaluate`` on the test split."""
    return {
        "test_neg_elbo_nats": test["neg_elbo"],
        "test_recon_nats": test["recon"],
        "test_kl_nats": test["kl"],
        "test_mse": test["mse"],
        **_final_common(history, model),
    }


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
    run, device, data = _prepare("ae", cfg.seed, out, device, data)
    objective = cfg.objective(device, model_class)
    model = objective.model
    history = fit_in_run(run, objective, data, cfg, progress, callbacks)
    if not distributed.is_main():
        return None  # under torchrun, rank 0 evaluates and writes the run
    test = evaluate(objective, data.test_x)
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
    return run.record(model="ae", cfg=cfg, objective=objective, data=data, history=history, final=final, device=device)


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
    ``-beta<beta>`` is added when beta is not 1. ``model_class`` and ``loss``: the network and the
    ELBO (notebook 02 passes its own); ``data``: MNIST already loaded; ``callbacks``: e.g. a live plot."""
    cfg = cfg or VAESettings()
    run, device, data = _prepare(vae_run_name(cfg), cfg.seed, out, device, data)
    objective = cfg.objective(device, model_class, loss)
    model = objective.model
    history = fit_in_run(run, objective, data, cfg, progress, callbacks)
    if not distributed.is_main():
        return None  # under torchrun, rank 0 evaluates and writes the run
    torch.manual_seed(cfg.seed)  # the test ELBO draws z: make the reported number repeatable
    test = evaluate(objective, data.test_x)
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
            run.save_figure(plots.latent_scatter(mu_all, data.test_y, title=f"{title}: latent means"), "latent_scatter")
            run.save_figure(
                plots.manifold_grid(model.decode, title=f"{title}: decoded manifold", device=device), "manifold"
            )
        # A t-SNE of the latent means takes longer than ten epochs of training here; notebook 02
        # draws it, and notebook 04 draws it beside the AE's for the report.
        a, b = first_test_index(data, 1), first_test_index(data, 7)
        path = plots.linear_path(mu_all[a], mu_all[b], steps=10)
        run.save_figure(plots.interpolation_strip(model.decode(path), title=f"{title}: interpolation"), "interpolation")
    plots.close_all()
    final = vae_final(test, history, model)
    return run.record(model="vae", cfg=cfg, objective=objective, data=data, history=history, final=final, device=device)


def vae_run_name(cfg: VAESettings) -> str:
    """``vae`` for the default variant, ``vae-<variant>`` otherwise, with ``-beta<beta>`` when beta is not 1."""
    name = "vae" if cfg.variant == "default" else f"vae-{cfg.variant}"
    return name if cfg.beta == 1 else f"{name}-beta{cfg.beta:g}"


def first_test_index(data: ImageData, digit: int) -> int:
    """Index of the first test image of ``digit`` (for interpolation pictures)."""
    found = (data.test_y == digit).nonzero()
    if len(found) == 0:
        raise ValueError(f"the test split holds no image of digit {digit}")
    return int(found[0])


RECIPES = {"ae": (run_ae, AESettings), "vae": (run_vae, VAESettings), **RECIPES_GAN}


def settings_for(model: str, **overrides) -> object:
    """The settings object of ``model`` with the given fields replaced (None means default)."""
    if model not in RECIPES:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(RECIPES)}")
    cfg = RECIPES[model][1]()
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
