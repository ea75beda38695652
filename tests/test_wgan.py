"""WGAN-GP and spectral normalisation: the gradient penalty's known answers, the critic's schedule,
the refusals that keep the options apart, and short real runs from the recipe and the command line."""

import json
import math

import pytest
import torch
from torch import nn

import labkit
from labkit.__main__ import main
from labkit.gan import nets as gan_nets
from labkit.gan import wgan
from labkit.gan.recipe import DCGANSettings, GANSettings, run_gan


def _linear_critic(shape, norm: float) -> nn.Module:
    """D(x) = w . x + b with ||w|| = ``norm``: its gradient is w for every image."""
    torch.manual_seed(0)
    linear = nn.Linear(math.prod(shape), 1)
    with torch.no_grad():
        linear.weight.mul_(norm / linear.weight.norm())
    return nn.Sequential(nn.Flatten(), linear, nn.Flatten(0))


def test_gradient_penalty_of_a_linear_critic_is_its_weights_norm_minus_one_squared():
    shape = (3, 4, 4)  # colour: a norm over the channels alone (pixel by pixel) gives another number
    critic = _linear_critic(shape, norm=3.0)
    real, fake = torch.rand(8, *shape), torch.rand(8, *shape)
    assert labkit.gradient_penalty(critic, real, fake).item() == pytest.approx((3.0 - 1.0) ** 2, rel=1e-5)
    per_pixel = critic[1].weight.view(shape).norm(dim=0)  # what a per-pixel implementation would take
    assert ((per_pixel - 1) ** 2).mean().item() != pytest.approx(4.0, rel=0.05)


def test_gradient_penalty_is_differentiable_and_its_gradient_has_the_known_value():
    critic = _linear_critic((1, 5, 5), norm=3.0)
    weight = critic[1].weight
    wgan.gradient_penalty(critic, torch.rand(4, 1, 5, 5), torch.rand(4, 1, 5, 5)).backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w|| = 4/3 w when ||w|| = 3
    assert torch.allclose(weight.grad, 4 / 3 * weight.detach(), atol=1e-6)


def test_gradient_penalty_is_zero_for_a_one_lipschitz_linear_critic_and_refuses_mismatched_batches():
    critic = _linear_critic((1, 6, 6), norm=1.0)
    assert wgan.gradient_penalty(critic, torch.rand(5, 1, 6, 6), torch.rand(5, 1, 6, 6)).item() < 1e-10
    with pytest.raises(ValueError, match="same shape"):
        wgan.gradient_penalty(critic, torch.rand(5, 1, 6, 6), torch.rand(4, 1, 6, 6))


def test_critic_and_generator_losses_have_their_known_values():
    real, fake = torch.tensor([2.0, 4.0]), torch.tensor([-1.0, 0.0])
    assert wgan.critic_loss(real, fake).item() == pytest.approx(-0.5 - 3.0)  # E[D(fake)] - E[D(real)]
    assert wgan.wasserstein_generator_loss(fake).item() == pytest.approx(0.5)


def test_the_critic_steps_n_critic_times_per_generator_step():
    cfg = GANSettings(loss="wgan-gp", n_critic=5, latent_dim=8)
    training = cfg.training(*gan_nets.mlp_gan(8))
    x = torch.rand(16, 1, 28, 28)
    for _ in range(10):
        out = training.train_step(x)
    steps = lambda opt: {int(s["step"]) for s in opt.state.values()}  # noqa: E731
    assert steps(training.opt_d) == {10} and steps(training.opt_g) == {2}
    assert set(out) == {"d_loss", "gp", "wasserstein", "g_loss", "d_real", "d_fake"}
    assert out["wasserstein"].item() == pytest.approx((out["d_real"] - out["d_fake"]).item(), abs=1e-5)
    assert training.opt_d.param_groups[0]["betas"] == wgan.WGAN_BETAS


def test_settings_keep_the_two_losses_tricks_apart():
    with pytest.raises(ValueError, match="label smoothing"):
        GANSettings(loss="wgan-gp", real_label=0.9)
    with pytest.raises(ValueError, match="n_critic"):
        GANSettings(loss="wgan-gp", g_steps=2)
    with pytest.raises(ValueError, match="loss"):
        GANSettings(loss="hinge")
    assert DCGANSettings(loss="wgan-gp").real_label == 1.0  # the DCGAN's default smoothing is the BCE loss's
    assert DCGANSettings().real_label == 0.9
    with pytest.raises(ValueError, match="does not train the wgan-gp loss"):
        GANSettings(loss="wgan-gp").training(*gan_nets.mlp_gan(), training_class=labkit.gan.GANTraining)
    with pytest.raises(ValueError, match="batch norm"):
        wgan.WGANGPTraining(*gan_nets.dcgan(28, 1, width=8))  # the DCGAN's D has batch norm by default


def test_the_networks_leave_batch_norm_out_of_a_critic_or_a_spectrally_normalised_d():
    def norms(D):
        return sum(isinstance(m, nn.BatchNorm2d) for m in D.modules())

    assert norms(DCGANSettings(dataset="mnist").networks()[1]) == 1
    assert norms(DCGANSettings(dataset="mnist", loss="wgan-gp").networks()[1]) == 0
    assert norms(DCGANSettings(dataset="mnist", spectral_norm=True).networks()[1]) == 0
    assert GANSettings(loss="wgan-gp", spectral_norm=True).run_name == "gan-wgan-gp-sn"
    assert DCGANSettings(dataset="cifar10", spectral_norm=True).run_name == "dcgan-cifar10-sn"


def test_spectral_norm_makes_every_layers_largest_singular_value_one():
    torch.manual_seed(0)
    _, D = DCGANSettings(dataset="mnist", width=8, spectral_norm=True).networks()
    gan_nets.add_spectral_norm(D)  # again: layers already normalised are left as they are
    layers = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers and all(len(m.parametrizations.weight) == 1 for m in layers)
    D.train()
    for _ in range(30):  # one power iteration per forward pass
        D(torch.rand(4, 1, 28, 28))
    D.eval()
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="batch norm"):
        gan_nets.add_spectral_norm(gan_nets.dcgan(28, 1, width=8)[1])


def test_a_spectrally_normalised_run_trains_with_the_optimiser_on_the_normalised_weights():
    cfg = GANSettings(spectral_norm=True, latent_dim=8)
    training = cfg.training(*gan_nets.mlp_gan(8))
    originals = {
        id(m.parametrizations.weight.original)
        for m in training.discriminator.modules()
        if hasattr(m, "parametrizations")
    }
    in_optimiser = {id(p) for group in training.opt_d.param_groups for p in group["params"]}
    assert originals and originals <= in_optimiser


@pytest.mark.parametrize("options", [{"loss": "wgan-gp"}, {"spectral_norm": True}])
def test_run_gan_with_each_option_writes_its_own_run(tmp_path, options):
    cfg = GANSettings(epochs=1, batch_size=256, **options)
    trained = run_gan(cfg, out=tmp_path / cfg.run_name, device="cpu", progress=False)
    record = json.loads((tmp_path / cfg.run_name / "metrics.json").read_text())
    assert record["hyperparameters"]["loss"] == cfg.loss
    assert record["hyperparameters"]["spectral_norm"] == cfg.spectral_norm
    assert "fid_classifier" in trained.final and (tmp_path / cfg.run_name / "gan_curves.png").is_file()
    if cfg.loss == "wgan-gp":
        assert math.isfinite(trained.final["wasserstein"]) and trained.final["gp"] >= 0


def test_the_command_line_takes_the_loss_and_spectral_norm(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "gan", "--loss", "wgan-gp", "--spectral-norm", "--n-critic", "2", "--epochs", "1",
                 "--batch-size", "256", "--out", str(out), "--device", "cpu", "--no-progress"])  # fmt: skip
    assert code == 0
    hyper = json.loads((out / "metrics.json").read_text())["hyperparameters"]
    assert (hyper["loss"], hyper["spectral_norm"], hyper["n_critic"]) == ("wgan-gp", True, 2)
    assert main(["train", "vae", "--loss", "wgan-gp", "--out", str(tmp_path / "v")]) == 2
    assert "--loss does not apply to vae" in capsys.readouterr().err
