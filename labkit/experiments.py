"""The registry of model families: every recipe by name, as ``python -m labkit train MODEL``, ``doctor``,
``grade``, the gradebook, notebook 04 and ``make run`` find them. Each family declares its recipes in its own
package (``labkit.engine.family``); this is the one place that lists the families: the autoencoder
(``labkit.ae``), the VAEs (``labkit.vae``: the VAE, the conditional VAE and the VQ-VAE), the GANs (``labkit.gan``)
and diffusion (``labkit.diffusion``). Also ``trained``: a model trained by its recipe, or reused from the run it
left in the runs folder.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from .ae.recipe import RECIPE as AE
from .data import ImageData
from .diffusion.recipe import RECIPE as DIFFUSION
from .engine.checkpoint import Checkpoint
from .engine.family import Family, Option, Recipe
from .engine.runs import METRICS_FILE, Run, Trained, load_metrics
from .engine.training import History
from .gan.recipe import RECIPES as GANS
from .vae.cvae import RECIPE as CVAE
from .vae.recipe import RECIPE as VAE
from .vae.vqvae import RECIPE as VQVAE

FAMILIES = (
    Family("ae", (AE,)),
    Family("vae", (VAE, CVAE, VQVAE)),
    Family("gan", GANS),
    Family("diffusion", (DIFFUSION,)),
)
RECIPES: dict[str, Recipe] = {recipe.name: recipe for family in FAMILIES for recipe in family.recipes}
QUICKEST = "ae"  # the model the doctor's checks of resuming, reusing and two processes train: the quickest


def options() -> list[Option]:
    """The command-line options of every recipe, one per settings field, in the order the families declare
    them; recipes that share a field share its option, whose help joins theirs."""
    merged: dict[str, Option] = {}
    for recipe in RECIPES.values():
        for option in recipe.options:
            known = merged.get(option.name)
            if known is None:
                merged[option.name] = option
            elif (known.kind, known.choices) != (option.kind, option.choices):
                raise ValueError(f"{option.flag} is declared twice with different types or choices ({recipe.name})")
            elif option.help not in known.help.split("; "):
                merged[option.name] = Option(option.name, f"{known.help}; {option.help}", known.kind, known.choices)
    return list(merged.values())


def gradebook_metrics() -> tuple[tuple[str, str], ...]:
    """(run, metric) of every number the gradebook shows in a column, family by family."""
    return tuple((recipe.name, metric) for recipe in RECIPES.values() for metric in recipe.gradebook)


def settings_for(model: str, **overrides) -> object:
    """The settings object of ``model`` built with the given fields (None: the default, which may depend on the
    others, as a conditional diffusion model's epochs do)."""
    if model not in RECIPES:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[model].settings(**{k: v for k, v in overrides.items() if v is not None})


COMPARED = ("ae", "vae", "gan", "diffusion")  # notebook 04's columns
LIKELIHOOD_DEFINED = ("diffusion",)  # models with a likelihood bound that notebook 04 does not compute
CONDITIONAL = ("cvae", "cgan", "diffusion-cond")  # told which digit to draw: notebook 04, "The conditional models"
RECIPE_OF = {"diffusion-cond": "diffusion"}  # written by another name's recipe: train diffusion --conditional


def default_settings(name: str):
    """The settings notebook 04 compares model ``name`` with: the defaults of its notebook, which are those
    of ``python -m labkit train NAME`` (``labkit.experiments.RECIPES``), except where a notebook trains fewer
    epochs on a CPU (a settings class's ``for_notebook``). ``diffusion`` is flow matching
    (``labkit.diffusion.recipe.DiffusionSettings.for_notebook``: notebook 05's epochs), ``diffusion-cond`` the
    same model told the digit and sampled with classifier-free guidance (``train diffusion --conditional``)."""
    _check_name(name)
    settings_class = RECIPES[RECIPE_OF.get(name, name)].settings
    notebook_settings = getattr(settings_class, "for_notebook", settings_class)  # fewer CPU epochs than the CLI
    return notebook_settings(conditional=True) if name == "diffusion-cond" else notebook_settings()


def _check_name(name: str) -> None:
    if name not in COMPARED + CONDITIONAL:
        raise ValueError(f"unknown model {name!r}; notebook 04 compares {', '.join(COMPARED + CONDITIONAL)}")


def trained(name: str, data: ImageData, device: torch.device | str, cfg=None, progress: bool = True) -> Trained:
    """The model ``name`` trained with ``cfg`` (default: ``default_settings(name)``) on ``data``.

    Reuses ``runs/<name>`` when it holds a metrics.json and a checkpoint of all ``cfg.epochs``
    epochs for these settings; otherwise runs the headless recipe, which resumes a partial run.
    A run folder whose checkpoint belongs to other settings or data is reported, not overwritten.
    """
    _check_name(name)
    recipe = RECIPES[RECIPE_OF.get(name, name)].run
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
    training = cfg.fresh_training(device)
    history = History()
    checkpoint.restore(state, training, history, [], data.train_x)
    for module in training.modules.values():
        module.eval()
    return Trained(name, cfg, training, history, load_metrics(run.dir), run.dir, reused=done)
