"""Notebook 04's measurements: known answers for the smoothness numbers, the stability summary and
the table, and reuse of an earlier run's weights instead of training again."""

import pytest
import torch
from torch import nn

from labkit import compare
from labkit.ae import AESettings
from labkit.data import load_mnist
from labkit.engine.checkpoint import CheckpointError
from labkit.engine.loop import History


class _FixedLogits(nn.Module):
    """A stand-in classifier whose answer we know: the same logits for every image."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits), requires_grad=False)

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def test_an_even_cross_fade_has_step_ratio_one_and_a_single_jump_has_ratio_equal_to_the_steps():
    a, b = torch.zeros(1, 1, 28, 28), torch.ones(1, 1, 28, 28)
    t = torch.linspace(0, 1, 10).view(-1, 1, 1, 1)
    uniform = compare.path_smoothness((1 - t) * a + t * b, _FixedLogits([0.0] * 10))
    assert uniform["largest_step_ratio"] == pytest.approx(1.0, abs=1e-5)
    assert uniform["mid_path_confidence"] == pytest.approx(0.1)  # uniform logits: 1/10
    jump = compare.path_smoothness(torch.cat([a, a, a, b, b]), _FixedLogits([5.0] + [0.0] * 9))
    assert jump["largest_step_ratio"] == pytest.approx(4.0)  # steps 0, 0, d, 0: max / mean = 4
    assert jump["mid_path_confidence"] == pytest.approx(torch.softmax(torch.tensor([5.0] + [0.0] * 9), 0)[0].item())


def test_stability_counts_the_epochs_in_which_the_test_loss_rose():
    model = compare.Trained("vae", None, None, History({"test_loss": v} for v in (3.0, 2.0, 2.5, 1.0)), {}, None)
    assert compare.stability(model) == "test loss rose in 1 of 3 epoch-to-epoch steps"
    records = [{"train_d_loss": v, "train_d_real": 0.7, "train_d_fake": 0.3} for v in (1.0, 1.2, 1.0, 1.2)]
    gan_model = compare.Trained("gan", None, None, History(records), {}, None)
    assert (
        compare.stability(gan_model, last=4)
        == "D loss spread 0.100 over the last 4 epochs; D(x) - D(G(z)) = 0.40 at the end"
    )


def _results():
    quality = {
        m: {"fid_classifier": f, "class_coverage": c, "class_kl_from_uniform": 0.5, "diversity_ratio": 0.9}
        for m, f, c in (("ae", 120.0, 7), ("vae", 40.0, 10), ("gan", 25.0, 9))
    }
    return {
        "reconstruction": {
            "ae": {"mse_per_pixel": 0.0142, "bce_nats": 70.0},
            "vae": {"mse_per_pixel": 0.02, "bce_nats": 80.0},
        },
        "elbo": {"neg_elbo": 120.0, "recon": 95.0, "kl": 25.0},
        "iwae": 115.0,
        "iwae_k": 64,
        "quality": quality,
        "smoothness": {m: {"largest_step_ratio": 1.5, "mid_path_confidence": 0.8} for m in compare.COMPARED},
        "stability": {m: f"{m} steady" for m in compare.COMPARED},
        "cost": {m: {"seconds_per_epoch": 1.0, "epochs": 20, "parameters": 1000} for m in compare.COMPARED},
    }


def test_the_table_puts_each_measured_value_in_its_models_column():
    rows = compare.comparison_rows(_results())
    by_aspect = {r[0]: r[1:] for r in rows}
    fid = next(v for k, v in by_aspect.items() if k.startswith("Samples: Fréchet"))
    assert fid == ("120", "40", "25")
    assert by_aspect["Reconstruction: test MSE per pixel"] == ("0.0142", "0.02", "n/a (no encoder)")
    assert by_aspect["Likelihood bound: test -ELBO (recon + KL), nats"][1] == "120 (95 + 25)"
    table = compare.comparison_table(rows).splitlines()
    assert table[0] == "| Aspect (measured) | AE | VAE | GAN |" and len(table) == len(rows) + 2


@pytest.mark.slow
def test_an_earlier_run_is_reused_and_a_run_of_other_settings_is_reported(monkeypatch):
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    mnist_offline = load_mnist("cpu", verbose=False)  # the data the recipe trains on
    cfg = AESettings(epochs=1)
    first = compare.trained("ae", mnist_offline, "cpu", cfg, progress=False)
    again = compare.trained("ae", mnist_offline, "cpu", cfg, progress=False)
    assert (first.reused, again.reused) == (False, True)
    assert len(again.history) == 1 and again.metrics["model"] == "ae"
    assert all(torch.equal(a, b) for a, b in zip(first.training.model.parameters(), again.training.model.parameters()))
    with pytest.raises(CheckpointError, match=r"lr=0\.001, this run has lr=0\.002"):
        compare.trained("ae", mnist_offline, "cpu", AESettings(epochs=1, lr=2e-3), progress=False)


def test_only_the_three_mnist_models_are_compared(mnist_offline):
    with pytest.raises(ValueError, match="notebook 04 compares ae, vae, gan"):
        compare.trained("dcgan", mnist_offline, "cpu")
