"""The conditional VAE: it uses the label, it learns, it draws the digit asked for, it trains in mixed
precision under CUDA's rules, and its recipe writes the metrics.json the report reads."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit import metrics
from labkit.engine import environment
from labkit.engine.loop import evaluate, fit
from labkit.vae.cvae import (
    CVAE_BETA,
    ConditionalVAE,
    CVAESettings,
    conditional_samples,
    run_cvae,
)

FINAL_KEYS = {
    "test_neg_elbo_nats",
    "test_recon_nats",
    "test_kl_nats",
    "test_mse",
    "conditional_accuracy",
    "conditional_accuracy_per_digit",
    "fid_classifier",
    "class_coverage",
    "seconds_per_epoch",
    "parameters",
}


@pytest.fixture(scope="module")
def classifier(mnist_offline, tmp_path_factory):
    model, accuracy = metrics.digit_classifier(mnist_offline, epochs=2, cache_dir=tmp_path_factory.mktemp("cache"))
    assert accuracy > 0.9
    return model


@pytest.fixture(scope="module")
def trained(mnist_offline):
    """A cVAE of the default settings after two epochs on the 4,000 offline digits, and its test -ELBO
    before training."""
    data = mnist_offline
    environment.seed_everything(0)
    training = CVAESettings(lr=2e-3).training("cpu")
    torch.manual_seed(0)
    before = evaluate(training, data.test_x, data.test_y)["neg_elbo"]
    history = fit(
        training,
        data.train_x,
        data.test_x,
        epochs=2,
        batch_size=64,
        progress=False,
        train_y=data.train_y,
        test_y=data.test_y,
    )
    return training, history, before


class ReadsTopLeftPixel(nn.Module):
    """A stand-in digit classifier whose answers are known: the digit is 10 x the top-left pixel."""

    def forward(self, x):
        return F.one_hot((x[:, 0, 0, 0] * 10).round().long(), 10).float()


def test_conditional_accuracy_known_answers_overall_and_per_digit():
    requested = torch.tensor([0, 1, 1, 3, 3, 3, 5, 5, 9, 9])
    predicted = torch.tensor([0, 1, 7, 3, 3, 8, 5, 5, 9, 4])
    images = torch.zeros(600, 1, 28, 28)  # the pattern 60 times: more images than one batch of 500
    images[:, 0, 0, 0] = predicted.repeat(60) / 10
    result = metrics.conditional_accuracy(images, requested.repeat(60), ReadsTopLeftPixel())
    assert result["conditional_accuracy"] == pytest.approx(0.7)
    per_digit = result["conditional_accuracy_per_digit"]
    expected = {0: 1.0, 1: 0.5, 3: 2 / 3, 5: 1.0, 9: 0.5}  # the other digits were never asked for
    assert len(per_digit) == 10
    for digit, value in enumerate(per_digit):
        assert value == pytest.approx(expected[digit]) if digit in expected else math.isnan(value)
    with pytest.raises(ValueError, match="one requested digit per image"):
        metrics.conditional_accuracy(images, requested, ReadsTopLeftPixel())


def test_the_label_changes_the_code_and_the_image_and_only_its_own_row():
    torch.manual_seed(0)
    model = ConditionalVAE().eval()
    z, x = torch.randn(4, 32), torch.rand(4, 1, 28, 28)
    threes, fives = torch.full((4,), 3), torch.full((4,), 5)
    with torch.no_grad():
        assert (model.decode(z, threes) - model.decode(z, fives)).abs().max() > 1e-3
        assert (model.encode(x, threes)[0] - model.encode(x, fives)[0]).abs().max() > 1e-3
        mixed = torch.tensor([3, 5, 3, 5])
        one_by_one = torch.cat([model.decode(z[i : i + 1], mixed[i : i + 1]) for i in range(4)])
        torch.testing.assert_close(model.decode(z, mixed), one_by_one)
        x_logits, mu, logvar = model(x, mixed)
    assert x_logits.shape == x.shape and mu.shape == logvar.shape == (4, 32)
    samples = model.sample(torch.tensor([0, 7, 7]))
    assert samples.shape == (3, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1
    with pytest.raises(ValueError, match="one class index per image"):
        model.decode(z, torch.rand(4))


def test_training_lowers_the_test_negative_elbo_clearly(trained):
    _, history, before = trained
    record = history.last
    assert before > 500  # ~784 * log 2 nats for a decoder that says 0.5 everywhere
    assert record["test_neg_elbo"] < 0.4 * before
    assert record["test_neg_elbo"] == pytest.approx(record["test_recon"] + record["test_kl"], rel=1e-5)
    assert record["train_kl"] > 0 and record["test_mse"] < 0.1
    assert record["train_loss"] == pytest.approx(record["train_recon"] + CVAE_BETA * record["train_kl"], rel=1e-5)


def test_the_trained_model_relies_on_the_label(trained, mnist_offline):
    training, _, _ = trained
    torch.manual_seed(0)
    right = evaluate(training, mnist_offline.test_x, mnist_offline.test_y)["neg_elbo"]
    torch.manual_seed(0)
    wrong = evaluate(training, mnist_offline.test_x, (mnist_offline.test_y + 1) % 10)["neg_elbo"]
    assert wrong > right + 20  # nats per image (46 here): the wrong digit explains the image worse


def test_the_classifier_reads_samples_as_the_requested_digit_far_more_often_than_chance(trained, classifier):
    samples, digits = conditional_samples(trained[0].model, 500, seed=0)
    assert torch.equal(digits[:12], torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]))
    result = metrics.conditional_accuracy(samples, digits, classifier)
    assert result["conditional_accuracy"] > 0.5  # chance is 0.1; 0.77 after these two epochs, 0.98 after twenty
    assert sum(a > 0.3 for a in result["conditional_accuracy_per_digit"]) >= 8
    torch.randn(3)  # the caller's generator moves on: the seed alone decides the samples
    assert torch.equal(conditional_samples(trained[0].model, 500, seed=0)[0], samples)
    assert not torch.equal(conditional_samples(trained[0].model, 500, seed=1)[0], samples)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"latent_dim": 0}, "latent_dim must be"), ({"beta": -1}, "beta must be"), ({"precision": "half"}, "precision")],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CVAESettings(**kwargs)


def test_smoke_mode_cuts_the_epochs(monkeypatch):
    assert CVAESettings().epochs == 20
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    assert CVAESettings().epochs == 2


@pytest.mark.gpu_emulation
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_an_epoch_in_mixed_precision_under_cudas_rules(precision, cuda_autocast_rules, mnist_offline):
    torch.manual_seed(0)
    x, y = mnist_offline.train_x[:192], mnist_offline.train_y[:192]
    test_x, test_y = mnist_offline.test_x[:100], mnist_offline.test_y[:100]
    training = CVAESettings(epochs=1).training("cpu")
    history = fit(
        training, x, test_x, epochs=1, batch_size=64, progress=False, precision=precision, train_y=y, test_y=test_y
    )
    assert training.precision.mode == precision
    assert all(math.isfinite(v) for v in history.last.values()), history.last
    assert all(math.isfinite(v) for v in evaluate(training, test_x, test_y).values())


def test_run_cvae_in_smoke_mode_writes_figures_and_final_metrics(tmp_path, monkeypatch, classifier):
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    # the digit classifier of the 4,000 digits stands in for the smoke split's own (its cache is tested elsewhere)
    monkeypatch.setattr(metrics, "digit_classifier", lambda data, seed=0, **kwargs: (classifier, 0.9))
    trained = run_cvae(CVAESettings(epochs=1, batch_size=128), out=tmp_path / "run", device="cpu", progress=False)
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert trained.name == "cvae" and record["model"] == "cvae" and record["smoke"] and record["epochs"] == 1
    assert record["hyperparameters"]["latent_dim"] == 32 and record["hyperparameters"]["precision"] == "fp32"
    final = record["final"]
    assert set(final) >= FINAL_KEYS and final == trained.final
    assert len(final["conditional_accuracy_per_digit"]) == 10 and 0 <= final["conditional_accuracy"] <= 1
    assert final["test_neg_elbo_nats"] == pytest.approx(final["test_recon_nats"] + final["test_kl_nats"], rel=1e-5)
    assert final["fid_classifier"] > 0 and 1 <= final["class_coverage"] <= 10
    assert final["parameters"] == sum(p.numel() for p in trained.training.model.parameters())
    for name in ("loss_curves", "reconstructions", "digit_grid", "style_transfer"):
        assert (tmp_path / "run" / record["figures"][name]).is_file()
