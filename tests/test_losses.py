"""Known answers for the VAE's loss pieces (notebook 02, "The loss")."""

import math

import pytest
import torch
import torch.nn.functional as F

from labkit.losses import bernoulli_nll
from labkit.vae import kl_divergence, reparameterize, vae_loss


def test_kl_of_standard_normal_against_itself_is_zero():
    mu, logvar = torch.zeros(5, 32), torch.zeros(5, 32)
    assert torch.allclose(kl_divergence(mu, logvar), torch.zeros(5))


def test_kl_known_value_one_dimension():
    # KL(N(1, e^1) || N(0, 1)) = 0.5 * (sigma^2 + mu^2 - 1 - log sigma^2) = 0.5 * (e + 1 - 1 - 1)
    expected = 0.5 * (math.e - 1)
    assert kl_divergence(torch.tensor([[1.0]]), torch.tensor([[1.0]])).item() == pytest.approx(expected, rel=1e-6)


def test_closed_form_kl_matches_monte_carlo_estimate():
    torch.manual_seed(0)
    mu = torch.tensor([[0.5, -1.0, 2.0]])
    logvar = torch.tensor([[0.2, -0.7, 0.4]])
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    z = q.sample((400_000,))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean()
    assert kl_divergence(mu, logvar).item() == pytest.approx(monte_carlo.item(), rel=0.01)


def test_reparameterised_sample_carries_gradients_to_mu_and_logvar():
    mu = torch.zeros(4, 3, requires_grad=True)
    logvar = torch.zeros(4, 3, requires_grad=True)
    reparameterize(mu, logvar).pow(2).sum().backward()
    assert mu.grad is not None and mu.grad.abs().sum() > 0
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0


def test_reparameterised_samples_have_the_asked_mean_and_std():
    torch.manual_seed(1)
    mu = torch.full((200_000, 1), 3.0)
    logvar = torch.full((200_000, 1), math.log(4.0))  # sigma = 2
    z = reparameterize(mu, logvar)
    assert z.mean().item() == pytest.approx(3.0, abs=0.02)
    assert z.std().item() == pytest.approx(2.0, abs=0.02)


def test_bernoulli_nll_is_summed_bce_per_image():
    torch.manual_seed(2)
    logits, x = torch.randn(6, 1, 28, 28), torch.rand(6, 1, 28, 28)
    expected = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum") / 6
    assert bernoulli_nll(logits, x).mean().item() == pytest.approx(expected.item(), rel=1e-5)


def test_vae_loss_parts_add_up_and_beta_weights_only_the_kl():
    torch.manual_seed(3)
    logits, x = torch.randn(8, 1, 28, 28), torch.rand(8, 1, 28, 28)
    mu, logvar = torch.randn(8, 4), torch.randn(8, 4)
    plain = vae_loss(logits, x, mu, logvar)
    beta4 = vae_loss(logits, x, mu, logvar, beta=4.0)
    assert plain["loss"].item() == pytest.approx(plain["recon"].item() + plain["kl"].item(), rel=1e-6)
    assert plain["neg_elbo"].item() == pytest.approx(plain["loss"].item(), rel=1e-6)
    assert beta4["loss"].item() == pytest.approx(plain["recon"].item() + 4 * plain["kl"].item(), rel=1e-6)
    assert beta4["neg_elbo"].item() == pytest.approx(plain["neg_elbo"].item(), rel=1e-6)
