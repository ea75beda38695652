"""Every model's recipe and settings by name, as ``python -m labkit train MODEL``, notebook 04 and ``doctor``
find them: the autoencoder (``labkit.ae``), the VAE (``labkit.vae``), the conditional VAE (``labkit.vae.cvae``),
the VQ-VAE (``labkit.vae.vqvae``), the GANs (``labkit.gan.recipe``) and diffusion (``labkit.diffusion.recipe``);
and ``trained``: a model trained by its recipe, or reused from the run it left in the runs folder.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from .ae.recipe import AESettings, run_ae
from .data import ImageData
from .diffusion.recipe import RECIPES_DIFFUSION
from .engine.checkpoint import Checkpoint
from .engine.runs import METRICS_FILE, Run, Trained, load_metrics
from .engine.training import History
from .gan.recipe import RECIPES_GAN
from .vae.cvae import CVAESettings, run_cvae
from .vae.recipe import VAESettings, run_vae
from .vae.vqvae import VQVAESettings, run_vqvae

RECIPES = {
    "ae": (run_ae, AESettings),
    "vae": (run_vae, VAESettings),
    "cvae": (run_cvae, CVAESettings),
    "vqvae": (run_vqvae, VQVAESettings),
    **RECIPES_GAN,
    **RECIPES_DIFFUSION,
}


def settings_for(model: str, **overrides) -> object:
    """The settings object of ``model`` built with the given fields (None: the default, which may depend on the
    others, as a conditional diffusion model's epochs do)."""
    if model not in RECIPES:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[model][1](**{k: v for k, v in overrides.items() if v is not None})


COMPARED = ("ae", "vae", "gan", "diffusion")
CONDITIONAL = ("cvae", "cgan", "diffusion-cond")  # told which digit to draw: notebook 04, "The conditional models"
RECIPE_OF = {"diffusion-cond": "diffusion"}  # written by another name's recipe: train diffusion --conditional


def default_settings(name: str):
    """The settings notebook 04 compares model ``name`` with: the defaults of its notebook, which are those
    of ``python -m labkit train NAME`` (``labkit.experiments.RECIPES``), except where a notebook trains fewer
    epochs on a CPU (a settings class's ``for_notebook``). ``diffusion`` is flow matching
    (``labkit.diffusion.recipe.DiffusionSettings.for_notebook``: notebook 05's epochs), ``diffusion-cond`` the
    same model told the digit and sampled with classifier-free guidance (``train diffusion --conditional``)."""
    _check_name(name)
    settings_class = RECIPES[RECIPE_OF.get(name, name)][1]
    notebook_settings = getattr(settings_class, "for_notebook", settings_class)  # fewer CPU epochs than the CLI
    return notebook_settings(conditional=True) if name == "diffusion-cond" else notebook_settings()


def _check_name(name: str) -> None:
    if name not in COMPARED + CONDITIONAL:
        raise ValueError(f"unknown model {name!r}; notebook 04 compares {', '.join(COMPARED + CONDITIONAL)}")


def make_training(name: str, cfg, device: torch.device | str):
    """A fresh, untrained training of model ``name`` (one of ``COMPARED`` or ``CONDITIONAL``) built from ``cfg``."""
    if name in ("gan", "cgan"):
        return cfg.training(*(m.to(device) for m in cfg.networks()))
    return cfg.training(device)


def trained(name: str, data: ImageData, device: torch.device | str, cfg=None, progress: bool = True) -> Trained:
    """The model ``name`` trained with ``cfg`` (default: ``default_settings(name)``) on ``data``.

    Reuses ``runs/<name>`` when it holds a metrics.json and a checkpoint of all ``cfg.epochs``
    epochs for these settings; otherwise runs the headless recipe, which resumes a partial run.
    A run folder whose checkpoint belongs to other settings or data is reported, not overwritten.
    """
    _check_name(name)
    recipe = RECIPES[RECIPE_OF.get(name, name)][0]
    cfg = cfg or default_settings(name)
    if getattr(cfg, "run_name", name) != name:
        raise ValueError(
            f"these settings describe a {cfg.run_name!r} run, which is not kept in runs/{name}: "
            f"ask for compare.trained({cfg.run_name!r}, ...) or change the settings"
        )
    run = Run(name)
    checkpoint = Checkpoint(run.checkpoint_path, asdict(cfg))
    state = checkpoint.load() if checkpoint.exists() else None
    done = state is not None and state["epochs_done"] >= cfg.epochs and (run.dir / METRICS_FILE).is_file()
    if not done:
        recipe(cfg, out=run.dir, device=str(device), progress=progress)
        state = checkpoint.load()
    training = make_training(name, cfg, device)
    history = History()
    checkpoint.restore(state, training, history, [], data.train_x)
    for module in training.modules.values():
        module.eval()
    return Trained(name, cfg, training, history, load_metrics(run.dir), run.dir, reused=done)
