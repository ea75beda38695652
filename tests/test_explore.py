"""The explorers' drawing, without widgets: decoded points, the marker, and walks between noise vectors."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from labkit import explore, vae
from labkit.gan import nets as gan_nets


@pytest.fixture(scope="module")
def vae2():
    torch.manual_seed(0)
    return vae.make_vae("latent2").eval()


def test_decoding_a_point_is_the_models_decoding_of_that_point(vae2):
    image = explore.decode_point(vae2, 1.5, -0.25)
    with torch.no_grad():
        expected = vae2.decode(torch.tensor([[1.5, -0.25]]))
    assert image.shape == (1, 1, 28, 28)
    torch.testing.assert_close(image, expected)
    assert not torch.allclose(image, explore.decode_point(vae2, -1.5, 0.25))  # another point, another image


def test_decode_point_refuses_a_model_whose_latent_space_is_not_two_dimensional():
    with pytest.raises(ValueError, match="2-D latent space, this one has 32"):
        explore.decode_point(vae.make_vae("default"), 0.0, 0.0)


def test_explorer_figure_marks_the_point_on_the_scatter_and_shows_its_decoding(vae2):
    codes = torch.tensor([[0.0, 0.0], [1.0, -1.0], [-2.0, 0.5]])
    fig = explore.latent_explorer_figure(vae2, codes, torch.tensor([0, 3, 7]), 0.75, -1.25)
    scatter_ax, image_ax = fig.axes[0], fig.axes[1]
    markers = [line for line in scatter_ax.lines if line.get_gid() == explore.MARKER_GID]
    assert len(markers) == 1
    assert list(markers[0].get_xdata()) == [0.75] and list(markers[0].get_ydata()) == [-1.25]
    points = scatter_ax.collections[0].get_offsets()
    assert points.tolist() == codes.tolist()  # the scatter is of the codes given
    shown = np.asarray(image_ax.images[0].get_array())  # (28, 28): one grey image, no frame
    decoded = explore.decode_point(vae2, 0.75, -1.25)[0, 0].numpy()
    np.testing.assert_allclose(shown, decoded, atol=1e-6)
    assert "(0.75, -1.25)" in image_ax.get_title()
    plt.close(fig)


def test_slerp_and_lerp_start_and_end_at_the_two_vectors():
    a, b = torch.randn(2, 100, generator=torch.Generator().manual_seed(1))
    for path in (explore.slerp(a, b, [0.0, 1.0]), explore.lerp(a, b, [0.0, 1.0])):
        torch.testing.assert_close(path[0], a)
        torch.testing.assert_close(path[1], b)


def test_slerp_of_two_orthogonal_unit_vectors_halfway_is_their_normalised_sum():
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    torch.testing.assert_close(explore.slerp(a, b, 0.5)[0], torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2))
    torch.testing.assert_close(explore.lerp(a, b, 0.5)[0], torch.tensor([0.5, 0.5, 0.0]))


def test_slerp_keeps_the_length_where_the_straight_line_cuts_inside_the_sphere():
    a, b = torch.randn(2, 100, generator=torch.Generator().manual_seed(2))
    b = b * a.norm() / b.norm()  # equal lengths
    t = torch.linspace(0, 1, 11)
    torch.testing.assert_close(explore.slerp(a, b, t).norm(dim=1), a.norm().expand(11))
    halfway = explore.lerp(a, b, 0.5)[0].norm() / a.norm()
    assert 0.6 < halfway < 0.8  # about 1/sqrt(2) for random directions


def test_slerp_of_parallel_vectors_falls_back_to_the_straight_line():
    a = torch.tensor([1.0, 2.0])
    path = explore.slerp(a, 3 * a, [0.0, 0.5, 1.0])
    assert torch.isfinite(path).all()
    torch.testing.assert_close(path, explore.lerp(a, 3 * a, [0.0, 0.5, 1.0]))


def test_interpolation_fractions_outside_zero_one_are_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        explore.slerp(torch.ones(3), -torch.ones(3), 1.5)


class TinyGenerator(nn.Module):
    """A generator without batch norm, so that each image depends on its own z only."""

    latent_dim = 8

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh())

    def forward(self, z):
        return self.net(z).view(-1, 1, 4, 4)


def test_walk_ends_are_the_images_of_the_two_noise_vectors():
    torch.manual_seed(0)
    g = TinyGenerator()
    z_a, z_b = torch.randn(2, 8)
    for spherical in (True, False):
        walk = explore.walk_images(g, z_a, z_b, [0.0, 0.5, 1.0], spherical=spherical)
        assert walk.shape == (3, 1, 4, 4)
        torch.testing.assert_close(walk[0], g(z_a[None])[0].detach())
        torch.testing.assert_close(walk[2], g(z_b[None])[0].detach())
    halfway = {s: explore.walk_images(g, z_a, z_b, 0.5, spherical=s)[0] for s in (True, False)}
    torch.testing.assert_close(halfway[True], g(explore.slerp(z_a, z_b, 0.5)).detach()[0])
    assert not torch.allclose(halfway[True], halfway[False])  # the two paths differ in the middle


def test_walk_through_a_batch_norm_generator_is_repeatable_and_leaves_it_unchanged():
    torch.manual_seed(0)
    g, _ = gan_nets.mlp_gan()
    z_a, z_b = torch.randn(2, g.latent_dim)
    running_mean = [m.running_mean.clone() for m in g.modules() if isinstance(m, nn.BatchNorm1d)]
    first = explore.walk_images(g, z_a, z_b, 0.3)  # one image: batch norm still works
    torch.testing.assert_close(first, explore.walk_images(g, z_a, z_b, 0.3))
    assert first.shape == (1, 1, 28, 28) and first.abs().max() <= 1
    after = [m.running_mean for m in g.modules() if isinstance(m, nn.BatchNorm1d)]
    assert all(torch.equal(x, y) for x, y in zip(running_mean, after))
