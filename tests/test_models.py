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


def test_a_decoder_started_at_the_mean_image_draws_the_mean_digit(mnist_offline):
    from labkit.models import start_at_mean_image

    model = make_vae("default")
    start_at_mean_image(model.decoder, mnist_offline.train_x)
    last = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()  # only the bias speaks: the output is the same for every code
        drawn = model.decode(torch.randn(3, 32))
    mean = mnist_offline.train_x.mean(0)
    torch.testing.assert_close(drawn, mean.clamp(1e-3, 1 - 1e-3).expand(3, 1, 28, 28), rtol=0, atol=1e-5)
    assert float(drawn[0, 0, 0, 0]) == pytest.approx(1e-3)  # a corner pixel is never inked: clamped, not -inf
    assert float(drawn.max()) > 0.5  # the middle of the digits


def test_a_convolutional_decoder_starts_at_each_channels_mean_colour():
    from labkit.models import start_at_mean_image
    from labkit.vae import ConvVAE

    model = ConvVAE(latent_dim=8, image_shape=(3, 32, 32))
    images = torch.stack([torch.full((32, 32), v) for v in (0.2, 0.5, 0.8)]).expand(6, 3, 32, 32)
    start_at_mean_image(model.decoder, images)
    bias = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)][-1].bias
    torch.testing.assert_close(torch.sigmoid(bias), torch.tensor([0.2, 0.5, 0.8]))


def test_images_that_do_not_fit_the_decoder_are_refused_with_both_sizes():
    from labkit.models import start_at_mean_image

    with pytest.raises(ValueError, match="784 outputs but the images have 3072 pixels"):
        start_at_mean_image(make_vae("default").decoder, torch.rand(4, 3, 32, 32))


def test_the_vae_recipe_starts_its_decoder_at_the_mean_training_image(mnist_offline):
    """Zero epochs: the recipe's model is as it starts."""
    from labkit import vae

    trained = vae.run_vae(vae.VAESettings(epochs=0, variant="narrow"), device="cpu", progress=False, data=mnist_offline)
    bias = trained.training.model.decoder[0][-1].bias
    expected = torch.logit(mnist_offline.train_x.mean(0).flatten().clamp(1e-3, 1 - 1e-3))
    torch.testing.assert_close(bias, expected)
