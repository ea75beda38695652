"""Shapes, sizes and clear errors of the course's networks."""

import pytest
import torch

from labkit.ae import Autoencoder
from labkit.models import NARROW_HIDDEN, count_parameters, model_summary
from labkit.vae import VAE_VARIANTS, make_vae


def test_autoencoder_shapes_and_pixel_range():
    model = Autoencoder()
    x = torch.rand(5, 1, 28, 28)
    assert model.encode(x).shape == (5, 32)
    out = model(x)
    assert out.shape == (5, 1, 28, 28)
    assert out.min() >= 0 and out.max() <= 1


def test_autoencoder_with_the_seed_widths_has_the_seed_architecture():
    # 784->128->64->32->64->128->784, weights and biases counted by hand
    expected = (
        (784 * 128 + 128) + (128 * 64 + 64) + (64 * 32 + 32) + (32 * 64 + 64) + (64 * 128 + 128) + (128 * 784 + 784)
    )
    assert count_parameters(Autoencoder(hidden=NARROW_HIDDEN)) == expected == 222_384


def test_default_autoencoder_is_784_512_256_32_mirrored():
    model = Autoencoder()
    widths = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [512, 256, 32, 256, 512, 784]


def test_classic_vae_matches_pytorch_examples_parameter_count():
    # pytorch/examples vae/main.py: fc1 784->400, fc21/fc22 400->20, fc3 20->400, fc4 400->784
    assert count_parameters(make_vae("classic")) == 652_824


@pytest.mark.parametrize("variant", sorted(VAE_VARIANTS))
def test_vae_variants_shapes(variant):
    model = make_vae(variant)
    latent = VAE_VARIANTS[variant]["latent_dim"]
    x = torch.rand(3, 1, 28, 28)
    logits, mu, logvar = model(x)
    assert logits.shape == (3, 1, 28, 28)
    assert mu.shape == logvar.shape == (3, latent)
    samples = model.sample(4)
    assert samples.shape == (4, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1


def test_vae_overrides_win():
    assert make_vae("classic", latent_dim=7).latent_dim == 7


@pytest.mark.parametrize("latent", [0, -3, 2.5])
def test_bad_latent_size_is_refused_with_its_name(latent):
    with pytest.raises(ValueError, match="latent_dim must be"):
        Autoencoder(latent_dim=latent)
    with pytest.raises(ValueError, match="latent_dim must be"):
        make_vae("default", latent_dim=latent)


def test_unknown_variant_lists_the_choices():
    with pytest.raises(ValueError, match="default, narrow, classic, latent2"):
        make_vae("huge")


def test_images_of_the_wrong_shape_get_a_clear_error():
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, 1, 28, 28\), got \(4, 784\)"):
        Autoencoder()(torch.rand(4, 784))
    with pytest.raises(ValueError, match=r"got \(2, 3, 32, 32\)"):
        make_vae()(torch.rand(2, 3, 32, 32))


def test_model_summary_lists_layers_shapes_and_total():
    text = model_summary(Autoencoder(hidden=NARROW_HIDDEN), (1, 1, 28, 28))
    assert "(1, 32)" in text and "(1, 1, 28, 28)" in text
    assert "222,384" in text
