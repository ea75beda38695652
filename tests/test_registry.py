"""The registry of families (``labkit.experiments.FAMILIES``): what the command line, the doctor, ``grade`` and the
gradebook read from it are the fixed interfaces they were when each named the families itself, and a recipe's
declaration is checked where it is made."""

import pytest

from labkit import experiments
from labkit.__main__ import _parser
from labkit.doctor import model_checks
from labkit.engine.family import DoctorCheck, Family, Option, Recipe
from labkit.grade import REEVALUATED


def test_the_command_line_trains_the_same_models_with_the_same_options():
    assert list(experiments.RECIPES) == ["ae", "vae", "cvae", "vqvae", "gan", "cgan", "dcgan", "diffusion"]
    train = _parser()._subparsers._group_actions[0].choices["train"]
    flags = {flag for action in train._actions for flag in action.option_strings}
    family_flags = (
        "--variant --beta --latent-dim --n-codes --code-dim --lr-g --lr-d --real-label --g-steps --loss --n-critic "
        "--gp-weight --spectral-norm --objective --conditional --guidance --sampler --sample-steps --ema "
        "--lr-schedule --warmup-steps --downsample --n-images"
    ).split()
    assert set(family_flags) <= flags
    args = _parser().parse_args(["train", "dcgan", "--loss", "wgan-gp", "--spectral-norm", "--n-images", "64"])
    assert (args.loss, args.spectral_norm, args.n_images, args.conditional) == ("wgan-gp", True, 64, None)
    with pytest.raises(SystemExit):  # choices come from the recipe's declaration
        _parser().parse_args(["train", "gan", "--loss", "hinge"])


def test_every_option_sets_a_field_of_each_recipe_that_declares_it():
    for recipe in experiments.RECIPES.values():
        fields = recipe.settings.__dataclass_fields__
        assert {option.name for option in recipe.options} <= set(fields), recipe.name


def test_options_shared_by_recipes_join_their_helps_once_and_must_agree(monkeypatch):
    merged = {option.name: option for option in experiments.options()}
    assert merged["beta"].help == (
        "VAE: weight of the KL term (beta-VAE); cVAE: weight of the KL term; VQ-VAE: the commitment weight"
    )
    assert merged["lr_g"].help == "GAN: generator learning rate (default: --lr)"  # three GANs, said once
    clash = {
        "a": Recipe("a", print, object, (Option("beta", "a: one", float),)),
        "b": Recipe("b", print, object, (Option("beta", "b: other", int),)),
    }
    monkeypatch.setattr(experiments, "RECIPES", clash)
    with pytest.raises(ValueError, match="--beta is declared twice"):
        experiments.options()


def test_the_gradebook_keeps_its_columns_and_grade_its_models():
    assert experiments.gradebook_metrics() == (
        ("ae", "test_mse"),
        ("vae", "test_neg_elbo_nats"),
        ("vae", "test_recon_nats"),
        ("vae", "test_kl_nats"),
        ("gan", "fid_classifier"),
        ("gan", "class_coverage"),
        ("dcgan", "seconds_per_epoch"),
        ("diffusion", "fid_classifier"),
        ("diffusion", "memorised_fraction"),
    )
    assert REEVALUATED == ("ae", "vae", "cvae", "vqvae", "gan", "cgan", "diffusion")  # not the DCGAN: art


def test_the_doctor_checks_every_model_and_the_classifier():
    checks = model_checks()
    assert [check.name for check in checks] == [
        *("ae", "vae", "cvae", "vqvae", "gan", "gan-wgan-gp", "cgan", "dcgan", "dcgan-wgan-gp-sn"),
        *("diffusion-eps", "diffusion-flow-cond", "classifier"),
    ]
    labelled = {check.name for check in checks if check.data == "labelled digits"}
    assert labelled == {"cvae", "cgan", "diffusion-flow-cond", "classifier"}
    assert [check.name for check in checks if check.compiled] == ["dcgan"]
    training = next(check for check in checks if check.name == "gan-wgan-gp").build("cpu")
    assert type(training).__name__ == "WGANGPTraining" and training.generator.training


def test_every_recipe_builds_a_fresh_training_from_its_settings_alone():
    for recipe in experiments.RECIPES.values():
        training = recipe.settings(epochs=1).fresh_training("cpu")
        assert training.modules and all(m.training for m in training.modules.values()), recipe.name


def test_a_doctor_check_on_unknown_data_is_refused_where_it_is_declared():
    with pytest.raises(ValueError, match="trains on one of digits, labelled digits, art"):
        DoctorCheck("x", print, "faces")
    assert Family("x").recipes == ()
