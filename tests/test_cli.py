"""``python -m labkit train``: the headless interface other tools rely on."""

import json
import os
import subprocess
import sys

import pytest


def run_cli(*args, tmp_path, smoke="1"):
    env = {
        **os.environ,
        "LABKIT_SMOKE": smoke,
        "LABKIT_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "LABKIT_DATA": str(tmp_path),
        "LABKIT_DEVICE": "cpu",
    }
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize(
    "model, final_keys, figures",
    [
        ("ae", {"test_mse", "seconds_per_epoch"}, {"loss_curves", "reconstructions", "latent_tsne", "random_codes"}),
        (
            "vae",
            {"test_neg_elbo_nats", "test_recon_nats", "test_kl_nats", "seconds_per_epoch"},
            {"loss_curves", "reconstructions", "prior_samples", "interpolation"},
        ),
        (
            "gan",
            {"seconds_per_epoch", "d_real", "d_fake", "diversity_ratio", "fid_classifier", "class_coverage"},
            {"real_images", "gan_curves", "progression", "progression_gif", "samples"},
        ),
        (
            "cgan",
            {"fid_classifier", "class_coverage", "conditional_accuracy", "conditional_accuracy_per_digit"},
            {"real_images", "gan_curves", "progression", "progression_gif", "samples", "digit_grid"},
        ),
        (
            "cvae",
            {"test_neg_elbo_nats", "conditional_accuracy", "conditional_accuracy_per_digit", "fid_classifier"},
            {"loss_curves", "reconstructions", "digit_grid", "style_transfer"},
        ),
        (
            "vqvae",
            {"test_mse", "codebook_perplexity", "codebook_usage", "seconds_per_epoch"},
            {"loss_curves", "reconstructions", "random_codes", "codebook_usage"},
        ),
    ],
)
def test_train_writes_metrics_json_and_figures(tmp_path, model, final_keys, figures):
    out = tmp_path / "run"
    result = run_cli(
        "train", model, "--epochs", "1", "--seed", "3", "--out", str(out), "--no-progress", tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "offline subset" in result.stdout  # the fallback is announced
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == model and metrics["epochs"] == 1 and metrics["seed"] == 3
    assert metrics["device"] == "cpu" and metrics["smoke"] is True
    assert metrics["dataset"]["name"] == "MNIST" and metrics["dataset"]["source"] == "offline-subset"
    assert (metrics["dataset"]["n_train"], metrics["dataset"]["n_test"]) == (2000, 500)
    assert len(metrics["history"]) == 1 and metrics["history"][0]["epoch"] == 1
    assert final_keys <= set(metrics["final"])
    assert set(metrics["figures"]) == figures
    for name in figures:
        magic = (out / metrics["figures"][name]).read_bytes()[:6]
        assert magic in (b"\x89PNG\r\n", b"GIF89a")
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed["final"].keys() == metrics["final"].keys()
    for key, value in metrics["final"].items():  # numbers, or lists of numbers (the cVAE's accuracy per digit)
        assert printed["final"][key] == pytest.approx(value), key


def test_latent2_vae_draws_the_scatter_and_manifold(tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "train", "vae", "--variant", "latent2", "--epochs", "1", "--out", str(out), "--no-progress", tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"latent_scatter", "manifold"} <= set(metrics["figures"])
    assert metrics["hyperparameters"]["variant"] == "latent2"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "-1"], "epochs must be a whole number >= 0"),
        (["--batch-size", "0"], "batch_size must be a whole number >= 1"),
        (["--lr", "0"], "lr must be a positive number"),
        (["--beta", "1"], "--beta does not apply to ae"),
    ],
)
def test_bad_arguments_get_a_clear_error_and_no_run(tmp_path, args, message):
    out = tmp_path / "run"
    result = run_cli("train", "ae", "--out", str(out), *args, tmp_path=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "metrics.json").exists()


def test_unwritable_output_folder_is_reported_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("train", "ae", "--out", str(blocker / "run"), tmp_path=tmp_path)
    assert result.returncode == 2
    assert "cannot write to the output folder" in result.stderr
    assert "epoch" not in result.stderr.lower()  # nothing was trained


def test_unknown_model_lists_the_choices(tmp_path):
    result = run_cli("train", "transformer", tmp_path=tmp_path)
    assert result.returncode == 2 and "invalid choice" in result.stderr and "'ae'" in result.stderr
