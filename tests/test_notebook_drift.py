"""Notebooks 01 to 04 write out, in cells the student edits and runs, ideas that ``labkit`` holds copies of for
the command line: the autoencoder (01); the reparameterisation, the VAE, the KL term and the loss (02); the DCGAN's
blocks and networks, the two adversarial losses and the training step (03); the smoothness of a latent path (04).
These tests run those definitions alone and compare them with labkit's copies (the same layer names and shapes,
the same initial weights from the same seed, the same outputs from the same weights, inputs and random numbers),
so that a notebook and ``python -m labkit train ...`` train and measure the same thing, and a change made to one
and not the other fails here. Notebook 05's cells have their own such tests (tests/test_diffusion_notebook.py)."""

import ast
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from test_notebook import _defined, _load, _python, _text
from torch import nn

import labkit
from labkit import compare
from labkit.ae.model import Autoencoder
from labkit.gan import cgan
from labkit.gan import nets as gan_nets
from labkit.gan.training import GANTraining, discriminator_loss, generator_loss
from labkit.models import DEFAULT_HIDDEN, NARROW_HIDDEN
from labkit.vae import losses as vae_losses
from labkit.vae.model import VAE, VAE_VARIANTS

AE_NOTEBOOK, VAE_NOTEBOOK, GAN_NOTEBOOK, COMPARE_NOTEBOOK = (
    "01_ae.ipynb",
    "02_vae.ipynb",
    "03_gan_abstract_art.ipynb",
    "04_compare.ipynb",
)
# How each cell is found: a line it alone holds
AE_CELL = "class Autoencoder("
VAE_MODEL_CELL = "def reparameterize("  # and class VAE
VAE_LOSS_CELL = "def vae_loss("  # and kl_divergence
GAN_NETWORKS_CELL = "def up("  # and down, Generator, Discriminator
GAN_LOSSES_CELL = "def discriminator_loss("  # and generator_loss
GAN_TRAINING_CELL = "class AdversarialTraining("
SMOOTHNESS_CELL = "def path_smoothness("
# What each notebook's set-up cell imports that these definitions use
NOTEBOOK_IMPORTS = {
    AE_NOTEBOOK: {"torch": torch, "nn": nn, "labkit": labkit},
    VAE_NOTEBOOK: {"torch": torch, "nn": nn, "F": F, "labkit": labkit},
    GAN_NOTEBOOK: {"torch": torch, "nn": nn, "F": F, "gan": labkit.gan, "gan_nets": gan_nets},
    COMPARE_NOTEBOOK: {"torch": torch},
}


def _cell(notebook: str, marker: str) -> str:
    found = [_text(c) for c in _load(notebook)["cells"] if c["cell_type"] == "code" and marker in _text(c)]
    assert len(found) == 1, f"expected one code cell of {notebook} holding {marker!r}, found {len(found)}"
    return found[0]


def _run_definitions(notebook: str, *markers: str) -> dict:
    """The namespace after running the functions and classes defined by the cells holding ``markers``, in order,
    on top of what the notebook's set-up cell imports. The cells' other lines use the definitions on the
    notebook's data (build a model, train, plot) and are left out."""
    imports = NOTEBOOK_IMPORTS[notebook]
    setup_names = _defined(_python(_cell(notebook, "explain_missing_names(")))
    assert set(imports) <= setup_names, f"{notebook}'s set-up cell no longer imports {set(imports) - setup_names}"
    namespace = dict(imports)
    for marker in markers:
        cell = ast.parse(_cell(notebook, marker))
        cell.body = [node for node in cell.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
        exec(compile(cell, f"{notebook} ({marker})", "exec"), namespace)
    return namespace


def _built_alike(build_ours, build_theirs, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """The notebook's network and labkit's, each built right after ``torch.manual_seed(seed)``: the same layers
    under the same names and shapes, made in the same order, so drawing the same initial weights."""
    torch.manual_seed(seed)
    ours = build_ours()
    torch.manual_seed(seed)
    theirs = build_theirs()
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    layers = [(k, v.shape) for k, v in ours_state.items()], [(k, v.shape) for k, v in theirs_state.items()]
    assert layers[0] == layers[1], "the notebook's network has other layers (names, shapes) than labkit's"
    for key, value in ours_state.items():
        torch.testing.assert_close(value, theirs_state[key], rtol=0, atol=0, msg=key)
    return ours, theirs


def _assert_same_outputs(ours: nn.Module, theirs: nn.Module, *inputs: torch.Tensor) -> None:
    """The same outputs in training mode (batch norm on the batch's statistics, which it also records) and then
    in evaluation mode (batch norm on the statistics just recorded)."""
    with torch.no_grad():
        for training in (True, False):
            ours.train(training)
            theirs.train(training)
            expected = theirs(*inputs)
            assert expected.abs().sum() > 0
            torch.testing.assert_close(ours(*inputs), expected, rtol=0, atol=0)


# --------------------------------------------------------------------------- notebook 01: the autoencoder


@pytest.mark.parametrize("latent_dim, hidden", [(32, DEFAULT_HIDDEN), (32, NARROW_HIDDEN), (2, (400,))])
def test_the_notebooks_autoencoder_is_labkits(latent_dim, hidden):
    notebook_class = _run_definitions(AE_NOTEBOOK, AE_CELL)["Autoencoder"]
    ours, theirs = _built_alike(
        lambda: notebook_class(latent_dim=latent_dim, hidden=hidden), lambda: Autoencoder(latent_dim, hidden)
    )
    assert ours.latent_dim == theirs.latent_dim == latent_dim
    x, z = torch.rand(5, 1, 28, 28), torch.randn(5, latent_dim)
    _assert_same_outputs(ours, theirs, x)
    with torch.no_grad():
        assert ours(x).shape == x.shape
        torch.testing.assert_close(ours.encode(x), theirs.encode(x), rtol=0, atol=0)
        torch.testing.assert_close(ours.decode(z), theirs.decode(z), rtol=0, atol=0)


# --------------------------------------------------------------------------- notebook 02: the VAE and its loss


def test_the_notebooks_reparameterize_is_labkits_draw_for_draw():
    """From the same random numbers, the same z and the same gradients to mu and log sigma^2."""
    reparameterize = _run_definitions(VAE_NOTEBOOK, VAE_MODEL_CELL)["reparameterize"]
    mu, logvar, weights = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    draws = []
    for function in (reparameterize, vae_losses.reparameterize):
        leaf_mu, leaf_logvar = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
        torch.manual_seed(0)
        z = function(leaf_mu, leaf_logvar)
        (weights * z).sum().backward()
        draws.append((z.detach(), leaf_mu.grad, leaf_logvar.grad))
    for ours, theirs in zip(*draws):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    torch.manual_seed(0)
    eps = torch.randn(4, 3)
    torch.testing.assert_close(draws[0][0], mu + torch.exp(0.5 * logvar) * eps)  # z = mu + sigma * eps
    torch.testing.assert_close(draws[0][1], weights)  # dz/dmu = 1


@pytest.mark.parametrize("variant", sorted(VAE_VARIANTS))
def test_the_notebooks_vae_is_labkits(variant):
    """Notebook 02 builds ``VAE(**labkit.vae.VAE_VARIANTS[variant])``: for each variant, labkit's ``VAE``."""
    notebook_class = _run_definitions(VAE_NOTEBOOK, VAE_MODEL_CELL)["VAE"]
    ours, theirs = _built_alike(lambda: notebook_class(**VAE_VARIANTS[variant]), lambda: VAE(**VAE_VARIANTS[variant]))
    assert (ours.latent_dim, ours.hidden) == (theirs.latent_dim, theirs.hidden)
    x, z = torch.rand(5, 1, 28, 28), torch.randn(5, theirs.latent_dim)
    with torch.no_grad():
        for mine, reference in zip(ours.encode(x), theirs.encode(x), strict=True):  # mu, logvar
            torch.testing.assert_close(mine, reference, rtol=0, atol=0)
        torch.testing.assert_close(ours.decode_logits(z), theirs.decode_logits(z), rtol=0, atol=0)
        torch.testing.assert_close(ours.decode(z), theirs.decode(z), rtol=0, atol=0)
        for seed in (0, 1):  # the forward pass draws z, the prior sample its noise: from the same seed, the same
            torch.manual_seed(seed)
            mine = ours(x)
            torch.manual_seed(seed)
            reference = theirs(x)
            assert mine[0].shape == x.shape
            for a, b in zip(mine, reference, strict=True):  # logits, mu, logvar
                torch.testing.assert_close(a, b, rtol=0, atol=0)
            torch.manual_seed(seed)
            mine = ours.sample(4)
            torch.manual_seed(seed)
            torch.testing.assert_close(mine, theirs.sample(4), rtol=0, atol=0)


def test_the_notebooks_kl_divergence_is_labkits():
    kl_divergence = _run_definitions(VAE_NOTEBOOK, VAE_LOSS_CELL)["kl_divergence"]
    mu, logvar = torch.randn(6, 4), torch.randn(6, 4)
    torch.testing.assert_close(kl_divergence(mu, logvar), vae_losses.kl_divergence(mu, logvar), rtol=0, atol=0)
    zeros = torch.zeros(2, 3)
    torch.testing.assert_close(kl_divergence(zeros, zeros), torch.zeros(2))  # the prior itself
    torch.testing.assert_close(kl_divergence(torch.ones(2, 3), zeros), torch.full((2,), 1.5))  # |mu|^2 / 2


@pytest.mark.parametrize("beta", [1.0, 4.0, 0.0])
def test_the_notebooks_vae_loss_is_labkits(beta):
    """The same four numbers (the loss minimised, reconstruction, KL, -ELBO) for every beta notebook 02 trains with."""
    vae_loss = _run_definitions(VAE_NOTEBOOK, VAE_LOSS_CELL)["vae_loss"]
    generator = torch.Generator().manual_seed(0)
    x_logits, x = 3 * torch.randn(5, 1, 28, 28, generator=generator), torch.rand(5, 1, 28, 28, generator=generator)
    mu, logvar = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    ours = vae_loss(x_logits, x, mu, logvar, beta=beta)
    theirs = vae_losses.vae_loss(x_logits, x, mu, logvar, beta=beta)
    assert ours.keys() == theirs.keys() == {"loss", "recon", "kl", "neg_elbo"}
    for key, value in theirs.items():
        torch.testing.assert_close(ours[key], value, rtol=0, atol=0, msg=key)
    torch.testing.assert_close(ours["loss"], ours["recon"] + beta * ours["kl"])
    # logits 0 (every pixel 1/2) and the prior as posterior: 784 pixels of ln 2 nats each, no KL
    at_half = vae_loss(torch.zeros(2, 1, 28, 28), x[:2], torch.zeros(2, 8), torch.zeros(2, 8), beta=beta)
    assert at_half["loss"].item() == pytest.approx(784 * math.log(2)) and at_half["kl"].item() == 0


# --------------------------------------------------------------------------- notebook 03: the DCGAN


def test_the_notebooks_project_and_up_blocks_are_labkits():
    """``project``: z as a 1x1 image to 4x4 (labkit's ``_project``); ``up``: resize, then convolve (``_up``)."""
    cells = _run_definitions(GAN_NOTEBOOK, GAN_NETWORKS_CELL)
    ours, theirs = _built_alike(lambda: cells["project"](100, 32), lambda: gan_nets._project(100, 32, 4))
    _assert_same_outputs(ours, theirs, torch.randn(3, 100, 1, 1))
    ours, theirs = _built_alike(lambda: cells["up"](16, 8), lambda: gan_nets._up(16, 8, "resize"))
    _assert_same_outputs(ours, theirs, torch.randn(3, 16, 4, 4))


@pytest.mark.parametrize("norm", [True, False])
def test_the_notebooks_down_block_is_labkits(norm):
    down = _run_definitions(GAN_NOTEBOOK, GAN_NETWORKS_CELL)["down"]
    ours, theirs = _built_alike(lambda: down(6, 8, norm=norm), lambda: gan_nets._down(6, 8, "stride", norm=norm))
    _assert_same_outputs(ours, theirs, torch.randn(3, 6, 8, 8))


@pytest.mark.parametrize("latent_dim, width", [(100, 64), (16, 8)])  # DCGANSettings' sizes, and small ones
def test_the_notebooks_dcgan_networks_are_labkits(latent_dim, width):
    """Notebook 03 trains its own ``Generator`` and ``Discriminator`` at 64 x 64 RGB with stride-2 downsampling:
    labkit's ``dcgan(64, 3, latent_dim, width, "stride", norm=True)``, with the DCGAN initialisation."""
    cells = _run_definitions(GAN_NOTEBOOK, GAN_NETWORKS_CELL)
    ours, theirs = _built_alike(
        lambda: cells["Generator"](latent_dim, width), lambda: gan_nets.DCGANGenerator(latent_dim, 64, 3, width)
    )
    assert ours.latent_dim == theirs.latent_dim == latent_dim
    _assert_same_outputs(ours, theirs, torch.randn(2, latent_dim))
    ours, theirs = _built_alike(
        lambda: cells["Discriminator"](width), lambda: gan_nets.DCGANDiscriminator(64, 3, width, "stride", norm=True)
    )
    _assert_same_outputs(ours, theirs, torch.rand(2, 3, 64, 64) * 2 - 1)


@pytest.mark.parametrize("real_label", [1.0, 0.9])
def test_the_notebooks_adversarial_losses_are_labkits(real_label):
    cells = _run_definitions(GAN_NOTEBOOK, GAN_LOSSES_CELL)
    generator = torch.Generator().manual_seed(0)
    real_logits, fake_logits = 3 * torch.randn(8, generator=generator), 3 * torch.randn(8, generator=generator)
    torch.testing.assert_close(
        cells["discriminator_loss"](real_logits, fake_logits, real_label),
        discriminator_loss(real_logits, fake_logits, real_label),
        rtol=0,
        atol=0,
    )
    torch.testing.assert_close(
        cells["discriminator_loss"](real_logits, fake_logits),  # the default target for real images
        discriminator_loss(real_logits, fake_logits),
        rtol=0,
        atol=0,
    )
    torch.testing.assert_close(cells["generator_loss"](fake_logits), generator_loss(fake_logits), rtol=0, atol=0)
    half = torch.zeros(4)  # D = 1/2 everywhere: 2 ln 2 for D whatever the target, ln 2 for G
    assert cells["discriminator_loss"](half, half, real_label).item() == pytest.approx(2 * math.log(2))
    assert cells["generator_loss"](half).item() == pytest.approx(math.log(2))


@pytest.mark.parametrize(
    "networks, real_label, g_steps",
    [
        ("notebook dcgan", 0.9, 1),  # the notebook's own DCGAN with label smoothing (section "Training")
        ("mlp", 1.0, 2),  # the MNIST GAN (section "The MNIST GAN"), with k = 2 as in "one change at a time"
        ("conditional", 1.0, 1),  # the conditional GAN: labels go to G and D
    ],
)
def test_the_notebooks_training_step_is_labkits(networks, real_label, g_steps):
    """Two steps of the notebook's ``AdversarialTraining`` and of labkit's ``GANTraining`` from the same weights,
    batch and random numbers end with the same weights, batch-norm statistics and reported numbers: the images
    mapped to [-1, 1], the losses, which optimiser steps when, and zero_grad (which only a second step shows:
    D's gradients from the generator's loss are left over from the first)."""
    cells = _run_definitions(GAN_NOTEBOOK, GAN_NETWORKS_CELL, GAN_LOSSES_CELL, GAN_TRAINING_CELL)
    notebook_class = cells["AdversarialTraining"]
    assert issubclass(notebook_class, GANTraining) and "train_step" in vars(notebook_class)  # its own step
    torch.manual_seed(0)
    if networks == "notebook dcgan":
        generator, discriminator = cells["Generator"](16, 8), cells["Discriminator"](8)
        x, labels = torch.rand(4, 3, 64, 64), ()
    else:
        generator, discriminator = (cgan.conditional_gan if networks == "conditional" else gan_nets.mlp_gan)()
        x = torch.rand(8, 1, 28, 28)
        labels = (torch.tensor([0, 1, 2, 3, 4, 5, 6, 9]),) if networks == "conditional" else ()
    trainings, reports = [], []
    for training_class in (notebook_class, GANTraining):
        training = training_class(
            copy.deepcopy(generator),
            copy.deepcopy(discriminator),
            lr_g=3e-4,
            lr_d=1e-4,
            real_label=real_label,
            g_steps=g_steps,
        )
        torch.manual_seed(1)
        reports.append([training.train_step(x, *labels) for _ in range(2)])
        trainings.append(training)
    ours, theirs = trainings
    for name, untrained in (("generator", generator), ("discriminator", discriminator)):
        reference = theirs.modules[name].state_dict()
        assert any(not torch.equal(v, reference[k]) for k, v in untrained.state_dict().items())  # it learnt
        for key, value in ours.modules[name].state_dict().items():
            torch.testing.assert_close(value, reference[key], msg=f"{name}: {key}")
    for mine, expected in zip(*reports):
        assert mine.keys() == expected.keys() == {"d_loss", "g_loss", "d_real", "d_fake"}
        for key, value in expected.items():
            torch.testing.assert_close(mine[key], value, msg=key)


# --------------------------------------------------------------------------- notebook 04: the latent path


def test_the_notebooks_path_smoothness_is_labkits():
    """Notebook 04 hands its ``path_smoothness`` to ``compare.interpolation``, which runs it without gradients."""
    path_smoothness = _run_definitions(COMPARE_NOTEBOOK, SMOOTHNESS_CELL)["path_smoothness"]
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    ends = torch.rand(2, 1, 28, 28)
    t = torch.linspace(0, 1, 10).view(-1, 1, 1, 1)
    cross_fade = (1 - t) * ends[0] + t * ends[1]  # nine steps of the same length
    one_jump = ends.repeat_interleave(5, dim=0)  # five of one image, five of the other: one step, eight still
    paths = {"cross-fade": cross_fade, "one jump": one_jump, "noise": torch.rand(10, 1, 28, 28)}
    with torch.no_grad():
        for name, path in paths.items():
            ours = path_smoothness(path, classifier)
            assert ours == compare.path_smoothness(path, classifier), name
            assert ours.keys() == {"largest_step_ratio", "mid_path_confidence"}
        assert path_smoothness(cross_fade, classifier)["largest_step_ratio"] == pytest.approx(1, rel=1e-4)
        assert path_smoothness(one_jump, classifier)["largest_step_ratio"] == pytest.approx(9)  # d / (d / 9)
        for parameter in classifier.parameters():  # no opinion: 1/10 on every digit
            parameter.zero_()
        assert path_smoothness(cross_fade, classifier)["mid_path_confidence"] == pytest.approx(0.1)
