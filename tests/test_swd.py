"""The sliced Wasserstein distance of ``labkit.swd`` (Karras et al. 2018): known answers on images the tests
make. Identical sets are at 0; a colour shifted by a constant moves only the low-pass level, by exactly the
mean over the directions of |<direction, shift>|; the pyramid sums back to the images."""

import math

import pytest
import torch

from labkit import swd


def _images(n=12, channels=3, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.2 + 0.5 * torch.rand(n, channels, size, size, generator=g)  # in [0.2, 0.7]: room to shift


def test_the_pyramid_sums_back_to_the_images_and_ends_at_16_pixels():
    images = _images(2)
    levels = swd.laplacian_pyramid(images)
    assert [level.shape[-1] for level in levels] == [64, 32, 16]
    rebuilt = levels[-1]
    for band in reversed(levels[:-1]):
        up = torch.zeros_like(band)
        up[..., ::2, ::2] = rebuilt * 4
        rebuilt = band + swd._blur(up)
    assert torch.allclose(rebuilt, images, atol=1e-5)


def test_sets_that_differ_by_a_constant_are_at_the_mean_of_the_projected_shift():
    g = torch.Generator().manual_seed(1)
    a, shift = torch.randn(500, 20, generator=g), torch.randn(20, generator=g)
    directions = torch.nn.functional.normalize(torch.randn(256, 20, generator=g), dim=1)
    expected = float((directions @ shift).abs().mean())
    assert swd.sliced_wasserstein_distance(a, a + shift, directions) == pytest.approx(expected, rel=1e-5)
    assert swd.sliced_wasserstein_distance(a, a[torch.randperm(500, generator=g)], directions) < 1e-6  # order free


def test_identical_sets_are_at_zero_and_a_colour_shift_is_at_the_distance_it_must_be():
    real = _images()
    assert swd.sliced_wasserstein(real, real.clone())["sliced_wasserstein"] == pytest.approx(0, abs=1e-6)
    shifted = real.clone()
    shifted[:, 0] += 0.1  # the red channel, everywhere
    found = swd.sliced_wasserstein(real, shifted)
    fine, coarse = found["sliced_wasserstein_levels"][:-1], found["sliced_wasserstein_levels"][-1]
    assert fine == pytest.approx([0, 0], abs=0.01)  # band-pass levels carry no constant (float rounding aside)
    # the low-pass level: every descriptor moves by 0.1 / std(red) on its 49 red coordinates; for directions
    # uniform on the sphere in d = 3 * 49 dimensions the mean |<direction, u>| is |u| G(d/2) / (sqrt(pi) G((d+1)/2))
    low = swd.patches(swd.laplacian_pyramid(real)[-1], swd.PATCHES_PER_IMAGE, torch.Generator().manual_seed(0))
    u = 0.1 / low[:, :49].std() * math.sqrt(49)
    d = low.shape[1]
    expected = 1e3 * float(u) * math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / math.sqrt(math.pi)
    assert coarse == pytest.approx(expected, rel=0.1)  # 512 random directions: a few per cent of spread
    assert found["sliced_wasserstein"] == pytest.approx(coarse / 3, rel=1e-6)


def test_noise_is_further_from_real_images_than_other_real_images_are():
    real, others = _images(16, seed=0), _images(16, seed=1)
    noise = torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    smooth = torch.nn.functional.avg_pool2d(real, 3, stride=1, padding=1)  # the same images, without their texture
    found = swd.sliced_wasserstein_to_real(torch.cat([real, others]), noise, n=16)
    assert found["sliced_wasserstein_real"] < found["sliced_wasserstein"]
    assert (
        swd.sliced_wasserstein(real, smooth)["sliced_wasserstein_levels"][0]
        > swd.sliced_wasserstein(real, others)["sliced_wasserstein_levels"][0]
    )


def test_sets_of_other_shapes_are_refused():
    with pytest.raises(ValueError, match="alike in shape"):
        swd.sliced_wasserstein(_images(4), _images(3))
