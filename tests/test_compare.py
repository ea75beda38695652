"""Notebook 04's measurements: known answers for the smoothness numbers, the stability summary,
memorisation, the cost of a sample and the table (four columns: AE, VAE, GAN, diffusion), and reuse of an
earlier run's weights instead of training again."""

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from labkit import compare, gan, metrics
from labkit.ae import AESettings
from labkit.data import load_mnist
from labkit.diffusion.recipe import DiffusionSettings
from labkit.engine.checkpoint import CheckpointError
from labkit.engine.training import History
from labkit.gan.recipe import GANSettings


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
        for m, f, c in (("ae", 120.0, 7), ("vae", 40.0, 10), ("gan", 25.0, 9), ("diffusion", 30.0, 10))
    }
    evaluations = {"ae": 1, "vae": 1, "gan": 1, "diffusion": 32}
    return {
        "reconstruction": {
            "ae": {"mse_per_pixel": 0.0142, "bce_nats": 70.0},
            "vae": {"mse_per_pixel": 0.02, "bce_nats": 80.0},
        },
        "elbo": {"vae": {"neg_elbo": 120.0, "recon": 95.0, "kl": 25.0}},
        "iwae": {"vae": 115.0},
        "iwae_k": 64,
        "quality": quality,
        "memorisation": {"ae": 0.0, "vae": 0.012, "gan": 0.25, "diffusion": 1.0, "real test digits": 0.01},
        "smoothness": {m: {"largest_step_ratio": 1.5, "mid_path_confidence": 0.8} for m in ("ae", "vae", "gan")},
        "stability": {m: f"{m} steady" for m in compare.COMPARED},
        "cost": {
            m: {
                "seconds_per_epoch": 1.0,
                "epochs": 20,
                "train_seconds": 21.5,
                "sampling_seconds_per_1000": 0.01 * evaluations[m],
                "network_evaluations": evaluations[m],
                "parameters": 1000,
            }
            for m in compare.COMPARED
        },
    }


def test_the_table_puts_each_measured_value_in_its_models_column():
    rows = compare.comparison_rows(_results())
    by_aspect = {r[0]: r[1:] for r in rows}
    assert all(len(cells) == 4 for cells in by_aspect.values())  # AE, VAE, GAN, diffusion
    fid = next(v for k, v in by_aspect.items() if k.startswith("Samples: Fréchet"))
    assert fid == ("120", "40", "25", "30")
    assert by_aspect["Reconstruction: test MSE per pixel"] == ("0.0142", "0.02", "n/a (no encoder)", "n/a (no encoder)")
    not_likelihood = "n/a (not a likelihood model)"
    assert by_aspect["Likelihood bound: test -ELBO (recon + KL), nats"] == (
        not_likelihood,
        "120 (95 + 25)",
        not_likelihood,
        "n/a (defined, not computed here)",
    )
    assert by_aspect["Likelihood bound: importance-weighted, k = 64, nats"] == ("n/a", "115", "n/a", "n/a")
    memorised = next(v for k, v in by_aspect.items() if k.startswith("Memorisation"))
    assert memorised == ("0", "0.012", "0.25", "1")
    steps = next(v for k, v in by_aspect.items() if k.startswith("Latent space: largest step"))
    assert steps == ("1.5", "1.5", "1.5", "n/a (not measured)")  # no interpolation of diffusion's noise
    assert by_aspect["Cost: network evaluations per sample"] == ("1", "1", "1", "32")
    assert by_aspect["Cost: seconds per 1,000 samples (on this notebook's device)"] == ("0.01", "0.01", "0.01", "0.32")
    assert by_aspect["Cost: seconds to train, all epochs (on the device the run trained on)"] == ("21.5",) * 4
    table = compare.comparison_table(rows).splitlines()
    assert table[0] == "| Aspect (measured) | AE | VAE | GAN | Diffusion |" and len(table) == len(rows) + 2


def test_copies_of_training_digits_are_all_memorised_and_held_out_digits_about_one_in_a_hundred(mnist_offline):
    train, test = mnist_offline.train_x, mnist_offline.test_x
    memorised = compare.memorised_fractions(
        {"copies": train[:300], "held out": test[:300], "half copies": torch.cat([train[300:350], test[300:350]])},
        train,
        test,
    )
    assert memorised["copies"] == 1.0
    assert memorised["half copies"] == pytest.approx(0.5, abs=0.02)  # the copies, and about 1 % of the rest
    # one threshold for all gives each set what labkit.metrics.memorisation gives it alone
    alone = metrics.memorisation(test[:300], train, test)["memorised_fraction"]
    assert memorised["held out"] == alone <= 0.02
    with pytest.raises(ValueError, match="no samples"):
        compare.memorised_fractions({}, train, test)


def _trained(name, cfg, training, history=()):
    for module in training.modules.values():
        module.eval()
    return compare.Trained(name, cfg, training, History(history), {}, None)


def _diffusion(**overrides):
    cfg = DiffusionSettings(width=8, mults=(1, 2), sample_steps=4, **overrides)
    torch.manual_seed(0)
    return _trained(cfg.run_name, cfg, cfg.training("cpu"))


def test_a_diffusion_sample_costs_its_sampler_steps_in_network_calls_and_twice_that_when_guided():
    assert compare.network_evaluations(_diffusion(sampler="euler")) == 4  # Euler: one call per step
    assert compare.network_evaluations(_diffusion()) == 7  # Heun, flow's default: two per step but the last
    assert compare.network_evaluations(_diffusion(sampler="euler", conditional=True)) == 8  # guided (w = 2)
    assert compare.network_evaluations(_diffusion(sampler="euler", conditional=True, guidance=1.0)) == 4  # plain
    ae = AESettings()
    assert compare.network_evaluations(_trained("ae", ae, ae.training("cpu"))) == 1  # one call of the decoder


def test_the_parameters_counted_are_those_trained_once_each_not_the_average_of_the_weights():
    diffusion = _diffusion()
    net = sum(p.numel() for p in diffusion.training.net.parameters())
    assert diffusion.parameters == 2 * net  # the UNet and its running average, a copy
    assert compare.trained_parameters(diffusion.training) == net
    cfg = GANSettings()
    training = cfg.training(*cfg.networks())
    both = sum(p.numel() for m in (training.generator, training.discriminator) for p in m.parameters())
    assert compare.trained_parameters(training) == both  # the GAN trains two networks


def test_cost_sums_the_epochs_seconds_and_keeps_the_measured_sampling_time():
    ae = AESettings()
    model = _trained("ae", ae, ae.training("cpu"), [{"seconds": 2.0}, {"seconds": 3.0}, {"seconds": 5.0}])
    cost = compare.cost(model, 0.25)
    assert cost["train_seconds"] == 10.0 and cost["seconds_per_epoch"] == 4.0  # the first epoch left out
    assert (cost["epochs"], cost["sampling_seconds_per_1000"], cost["network_evaluations"]) == (3, 0.25, 1)
    assert cost["parameters"] == sum(p.numel() for p in model.training.model.parameters())
    assert math.isnan(compare.cost(model)["sampling_seconds_per_1000"])  # not measured


def test_samples_come_from_each_trainings_draw_and_the_timed_ones_are_the_same_images():
    diffusion = _diffusion()
    images, seconds = compare.timed_samples(diffusion, 6, seed=3)
    assert images.shape == (6, 1, 28, 28) and images.device.type == "cpu"
    assert 0 <= images.min() and images.max() <= 1
    assert torch.equal(images, diffusion.training.draw(6, seed=3).cpu()) and math.isfinite(seconds)
    cfg = GANSettings()
    torch.manual_seed(0)
    gan_model = _trained("gan", cfg, cfg.training(*cfg.networks()))
    expected = (gan.sample(gan_model.training.generator, 5, seed=1) + 1) / 2  # what notebook 04 always drew
    assert torch.equal(compare.samples(gan_model, 5, seed=1), expected)
    with pytest.raises(ValueError, match="at least one sample"):
        compare.timed_samples(diffusion, 0, seed=0)


def test_conditional_diffusion_is_asked_for_the_digits_in_turn_with_its_guidance():
    model = _diffusion(conditional=True)
    images, digits = compare.conditional_samples(model, 12, seed=2)
    assert digits.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert torch.equal(images, model.training.draw(12, digits, seed=2).cpu())
    head = model.training.ema.module.head[-1]  # zero at the start: an untrained net ignores its labels
    torch.nn.init.normal_(head.weight, std=0.1)
    guided = compare.conditional_samples(model, 12, seed=2)[0]
    unguided = replace(model.cfg, guidance=0.0).training("cpu")
    unguided.ema.load_state_dict(model.training.ema.state_dict())
    assert torch.equal(guided, model.training.draw(12, digits, seed=2).cpu())
    assert not torch.equal(guided, unguided.draw(12, digits, seed=2).cpu())  # w = 2 is not w = 0


def test_diffusion_has_no_latent_path_to_walk(mnist_offline):
    with pytest.raises(ValueError, match="diffusion has no latent code"):
        compare.interpolation(_diffusion(), mnist_offline, _FixedLogits([0.0] * 10))


def test_the_compared_settings_are_the_commands_and_a_conditional_run_has_its_own_folder(monkeypatch, mnist_offline):
    full = compare.default_settings("diffusion")  # notebook 05's: python -m labkit train diffusion, but on a CPU
    assert full == DiffusionSettings.for_notebook() and full.run_name == "diffusion"  # fewer epochs
    assert replace(full, epochs=DiffusionSettings().epochs) == DiffusionSettings()  # the same run otherwise
    cond = compare.default_settings("diffusion-cond")
    assert cond == DiffusionSettings.for_notebook(conditional=True) and cond.run_name == "diffusion-cond"
    assert replace(cond, epochs=DiffusionSettings(conditional=True).epochs) == DiffusionSettings(conditional=True)
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    smoke = compare.default_settings("diffusion-cond")
    assert smoke == DiffusionSettings(conditional=True) and smoke.width == 8  # the smoke-mode UNet of the command
    with pytest.raises(ValueError, match="a 'diffusion-cond' run, which is not kept in runs/diffusion"):
        compare.trained("diffusion", mnist_offline, "cpu", DiffusionSettings(conditional=True))


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


@pytest.mark.slow
def test_a_conditional_diffusion_run_is_trained_in_its_folder_and_reused(monkeypatch):
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    mnist_offline = load_mnist("cpu", verbose=False)  # the data the recipe trains on
    cfg = replace(compare.default_settings("diffusion-cond"), epochs=1, mults=(1, 2), sample_steps=2)
    first = compare.trained("diffusion-cond", mnist_offline, "cpu", cfg, progress=False)
    again = compare.trained("diffusion-cond", mnist_offline, "cpu", cfg, progress=False)
    assert (first.reused, again.reused) == (False, True) and first.folder.name == "diffusion-cond"
    assert again.metrics["hyperparameters"]["conditional"] is True and len(again.history) == 1
    assert torch.equal(compare.conditional_samples(first, 10, 0)[0], compare.conditional_samples(again, 10, 0)[0])


def test_only_the_four_mnist_families_are_compared(mnist_offline):
    with pytest.raises(ValueError, match="notebook 04 compares ae, vae, gan, diffusion, cvae, cgan, diffusion-cond"):
        compare.trained("dcgan", mnist_offline, "cpu")
