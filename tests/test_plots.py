"""The image grid under every picture of the course: known tiles, gaps and value ranges."""

import numpy as np
import pytest
import torch

from labkit import plots


def test_grid_array_tiles_images_in_rows_with_white_gaps():
    images = torch.stack([torch.full((1, 2, 3), v) for v in (0.0, 0.25, 0.5)])  # three 2x3 images
    grid = plots.grid_array(images, nrow=2, padding=1)
    assert grid.shape == (2 * (2 + 1) + 1, 2 * (3 + 1) + 1, 1)  # 2 rows, 2 columns
    assert np.all(grid[1:3, 1:4] == 0.0) and np.all(grid[1:3, 5:8] == 0.25)  # first row
    assert np.all(grid[4:6, 1:4] == 0.5)  # second row, first slot
    assert np.all(grid[4:6, 5:8] == 1.0) and np.all(grid[0] == 1.0) and np.all(grid[:, 4] == 1.0)  # gaps, empty slot


def test_grid_array_maps_the_value_range_to_zero_one_and_clips():
    images = torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(4, 1, 1, 1)
    grid = plots.grid_array(images, nrow=4, value_range=(-1, 1), padding=0)
    assert grid[0, :, 0].tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0])


def test_grid_array_agrees_with_torchvision_make_grid_on_colour_images():
    from torchvision.utils import make_grid

    images = torch.rand(5, 3, 4, 6) * 2 - 1
    ours = plots.grid_array(images, nrow=3, value_range=(-1, 1))
    theirs = make_grid(images, nrow=3, padding=2, pad_value=1.0, normalize=True, value_range=(-1, 1))
    np.testing.assert_allclose(ours, theirs.permute(1, 2, 0).numpy(), atol=1e-6)


def test_a_single_image_is_shown_without_a_frame():
    image = torch.rand(1, 1, 5, 7)
    np.testing.assert_array_equal(plots.grid_array(image, nrow=8)[:, :, 0], image[0, 0].numpy())


def test_runs_per_epoch_draws_each_runs_values_at_their_epochs_and_skips_epochs_without_them():
    first = [{"epoch": 1, "acc": 0.1}, {"epoch": 2, "acc": 0.5}, {"epoch": 3}]  # epoch 3 measured nothing
    second = [{"epoch": 1, "acc": 0.2}, {"epoch": 2, "acc": 0.3}, {"epoch": 3, "acc": 0.9}]
    fig = plots.runs_per_epoch({"a": first, "b": second}, "acc", chance=0.1, ylim=(0, 1))
    ax = fig.axes[0]
    a, b, chance = ax.lines
    assert list(a.get_xdata()) == [1, 2] and list(a.get_ydata()) == [0.1, 0.5]
    assert list(b.get_xdata()) == [1, 2, 3] and list(b.get_ydata()) == [0.2, 0.3, 0.9]
    assert list(chance.get_ydata()) == [0.1, 0.1] and ax.get_ylim() == (0, 1)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "chance (0.1)"]
    plots.close_all()
