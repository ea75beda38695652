"""Figures of the course: image grids, loss curves, latent spaces; each returns a matplotlib Figure.

One image-grid function (``image_grid``) underlies every picture of images. Titles carry the
dataset label so that an offline subset or a synthetic stand-in is never mistaken for the real data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from .engine.training import History

DIGIT_COLORS = "tab10"


def grid_array(
    images: torch.Tensor, nrow: int, value_range: tuple[float, float] = (0.0, 1.0), padding: int = 2
) -> np.ndarray:
    """Tile a batch (B, C, H, W) into one picture (rows of ``nrow`` images, white gaps of ``padding``
    pixels), pixels mapped from ``value_range`` to [0, 1]: a NumPy array (H', W', C).

    What ``torchvision.utils.make_grid`` does, written out so that a headless run that only saves
    figures does not spend seconds importing torchvision."""
    low, high = value_range
    images = ((images.detach().float().cpu() - low) / (high - low)).clamp(0, 1)
    b, c, h, w = images.shape
    if b == 1:
        padding = 0  # a single image is shown as it is, without a frame (as make_grid does)
    cols = min(nrow, b)
    rows = -(-b // cols)
    grid = torch.ones(c, rows * (h + padding) + padding, cols * (w + padding) + padding)
    for i, image in enumerate(images):
        top, left = padding + (i // cols) * (h + padding), padding + (i % cols) * (w + padding)
        grid[:, top : top + h, left : left + w] = image
    return grid.permute(1, 2, 0).numpy()


def image_grid(
    images: torch.Tensor,
    nrow: int = 8,
    title: str | None = None,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
    ax: plt.Axes | None = None,
    size: float = 0.9,
) -> plt.Figure:
    """Show a batch of images (B, C, H, W) as one grid, ``nrow`` images per row.

    ``value_range`` is the range of the pixels: (0, 1) for MNIST models, (-1, 1) for tanh GANs.
    """
    if images.dim() != 4:
        raise ValueError(f"image_grid expects a batch of images (B, C, H, W), got shape {tuple(images.shape)}")
    array = grid_array(images, nrow, value_range)
    if ax is None:
        rows = int(np.ceil(len(images) / nrow))
        fig, ax = plt.subplots(figsize=(max(2.0, size * min(nrow, len(images))), max(1.2, size * rows + 0.4)))
    else:
        fig = ax.figure
    ax.imshow(array.squeeze(-1) if array.shape[-1] == 1 else array, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def reconstruction_grid(originals: torch.Tensor, reconstructions: torch.Tensor, title: str = "") -> plt.Figure:
    """Originals (top row) over their reconstructions (bottom row)."""
    n = len(originals)
    fig, axes = plt.subplots(2, 1, figsize=(max(4.0, 0.9 * n), 2.6))
    image_grid(originals, nrow=n, title="originals", ax=axes[0])
    image_grid(reconstructions, nrow=n, title="reconstructions", ax=axes[1])
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def loss_curves(
    history: History, panels: Sequence[tuple[str, str]] = (("loss", "loss"),), title: str = "", log_y: bool = False
) -> plt.Figure:
    """One panel per (quantity, y-label): train and test curves of that quantity per epoch.

    ``loss_curves(h)`` draws the loss; the VAE passes ``VAE_PANELS`` to split the ELBO.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (key, ylabel) in zip(axes[0], panels):
        for split, style in (("train", "-o"), ("test", "--s")):
            values = history.series(f"{split}_{key}")
            if values:
                epochs = [r["epoch"] for r in history if f"{split}_{key}" in r]
                ax.plot(epochs, values, style, markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.set_title(key)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.lines:  # a run of 0 epochs has no curves to name
            ax.legend()
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


VAE_PANELS = (
    ("neg_elbo", "-ELBO (nats / image)"),
    ("recon", "reconstruction (nats / image)"),
    ("kl", "KL (nats / image)"),
)


def latent_scatter(
    codes: torch.Tensor,
    labels: torch.Tensor,
    title: str = "",
    axis_labels: tuple[str, str] = ("z1", "z2"),
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """2-D points coloured by digit label (a 2-D latent space, or a t-SNE embedding)."""
    codes = np.asarray(codes.detach().cpu() if torch.is_tensor(codes) else codes)
    labels = np.asarray(labels.detach().cpu() if torch.is_tensor(labels) else labels)
    if codes.ndim != 2 or codes.shape[1] != 2:
        raise ValueError(f"latent_scatter needs 2-D points (N, 2), got {codes.shape}; use tsne_plot for more dims")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.4, 4.6))
    else:
        fig = ax.figure
    points = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap=DIGIT_COLORS, s=6, alpha=0.8, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def tsne_embedding(codes: torch.Tensor, seed: int = 0, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """t-SNE (scikit-learn) of the first ``max_points`` codes: returns (embedding (N, 2), indices)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    codes = np.asarray(codes.detach().float().cpu())
    index = np.arange(min(len(codes), max_points))
    perplexity = float(min(30, max(5, (len(index) - 1) // 4)))
    with threadpool_limits(limits=1, user_api="openmp"):  # t-SNE's threads thrash on a busy small machine
        embedding = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
            codes[index]
        )
    return embedding, index


def tsne_plot(
    codes: torch.Tensor,
    labels: torch.Tensor,
    title: str = "",
    seed: int = 0,
    max_points: int = 2000,
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """t-SNE of latent codes coloured by digit."""
    embedding, index = tsne_embedding(codes, seed=seed, max_points=max_points)
    labels = np.asarray(labels.detach().cpu() if torch.is_tensor(labels) else labels)[index]
    return latent_scatter(embedding, labels, title=title, axis_labels=("t-SNE 1", "t-SNE 2"), ax=ax)


def linear_path(z_start: torch.Tensor, z_end: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Points evenly spaced on the segment from z_start to z_end (both (D,)): shape (steps, D)."""
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    t = torch.linspace(0, 1, steps, device=z_start.device).unsqueeze(1)
    return (1 - t) * z_start.unsqueeze(0) + t * z_end.unsqueeze(0)


def interpolation_strip(images: torch.Tensor, title: str = "") -> plt.Figure:
    """Decoded points along a path in latent space, shown as one row."""
    return image_grid(images, nrow=len(images), title=title)


def manifold_points(n: int = 15, spread: float = 0.95) -> torch.Tensor:
    """An n x n grid of 2-D latent points at Gaussian quantiles (so it covers the prior evenly).

    Row 0 is the top of the picture (largest z2); columns run from small to large z1.
    """
    from scipy.stats import norm

    q = torch.tensor(norm.ppf(np.linspace(1 - spread, spread, n)), dtype=torch.float32)
    z1, z2 = torch.meshgrid(q, q.flip(0), indexing="xy")
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)


def manifold_grid(
    decode: Callable[[torch.Tensor], torch.Tensor], n: int = 15, title: str = "", device: torch.device | str = "cpu"
) -> plt.Figure:
    """Decode an n x n grid of a 2-D latent space: the learned manifold of digits."""
    with torch.no_grad():
        images = decode(manifold_points(n).to(device))
    return image_grid(images, nrow=n, title=title, size=0.45)


def close_all() -> None:
    """Close every open figure (the CLI calls this after saving to keep memory flat)."""
    plt.close("all")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where figures can be displayed and updated live).

    A kernel's shell is Jupyter's ``ZMQInteractiveShell`` or a subclass of it: Colab's is
    ``google.colab._shell.Shell``, so the whole class hierarchy is checked, not the class's name.
    A terminal IPython (``TerminalInteractiveShell``) cannot show live figures and is not a notebook."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)


class LiveLossPlot:
    """A ``fit`` callback that redraws the loss curves after every epoch, in place, in a notebook.

    Outside a notebook it does nothing. ``panels`` as in ``loss_curves``.
    """

    def __init__(self, panels: Sequence[tuple[str, str]] = (("loss", "loss"),), title: str = ""):
        self.panels, self.title = panels, title
        self._handle = None

    def __call__(self, epoch: int, record: dict, history: History) -> None:
        if not in_notebook():
            return
        from IPython.display import display

        fig = loss_curves(history, self.panels, title=self.title)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)


def gan_curves(history: History, title: str = "", real_label: float | None = None) -> plt.Figure:
    """Left: D and G losses per epoch. Right: mean D(x) and mean D(G(z)) per epoch (epoch means),
    with held-out D(x) when the run evaluated on a test split. Notebook 03, "Reading the curves".
    A WGAN-GP run (its history has ``train_wasserstein``) gets ``wasserstein_curves`` instead."""
    if history.series("train_wasserstein"):
        return wasserstein_curves(history, title)
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.3))
    left.plot(epochs, history.series("train_d_loss"), "-o", ms=3, label="D loss")
    left.plot(epochs, history.series("train_g_loss"), "-o", ms=3, label="G loss")
    left.axhline(2 * math.log(2), color="C0", ls=":", lw=1, label="D loss at D = 1/2 (2 ln 2)")
    left.axhline(math.log(2), color="C1", ls=":", lw=1, label="G loss at D = 1/2 (ln 2)")
    losses = history.series("train_d_loss") + history.series("train_g_loss")
    left.set_ylim(0, 1.08 * max([2 * math.log(2), *[v for v in losses if math.isfinite(v)]]))
    left.set_ylabel("BCE (nats)")
    right.plot(epochs, history.series("train_d_real"), "-o", ms=3, color="C2", label="D(x), real")
    right.plot(epochs, history.series("train_d_fake"), "-o", ms=3, color="C3", label="D(G(z)), fake")
    if history.series("test_d_real"):
        right.plot(
            [r["epoch"] for r in history if "test_d_real" in r],
            history.series("test_d_real"),
            "--s",
            ms=3,
            color="C2",
            alpha=0.6,
            label="D(x), held-out real",
        )
    right.axhline(0.5, color="grey", ls=":", lw=1, label="1/2 (D cannot tell)")
    if real_label is not None and real_label < 1:
        right.axhline(real_label, color="C2", ls=":", lw=1, label=f"real target {real_label:g}")
    right.set_ylim(0, 1)
    right.set_ylabel("mean discriminator output")
    return _per_epoch_panels(fig, (left, right), title)


def wasserstein_curves(history: History, title: str = "") -> plt.Figure:
    """A WGAN-GP run per epoch. Left: the critic's Wasserstein estimate E[D(x)] - E[D(G(z))] (it falls
    as G improves) and the gradient penalty. Right: the mean critic scores of real images and fakes
    (scores, not probabilities: only their gap means something). Notebook 03, "Other losses"."""
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.3))
    left.plot(epochs, history.series("train_wasserstein"), "-o", ms=3, label="Wasserstein estimate")
    if history.series("test_wasserstein"):
        left.plot(epochs, history.series("test_wasserstein"), "--s", ms=3, alpha=0.6, label="held-out estimate")
    left.plot(epochs, history.series("train_gp"), "-o", ms=3, label="gradient penalty (without lambda)")
    left.set_ylabel("critic units")
    right.plot(epochs, history.series("train_d_real"), "-o", ms=3, color="C2", label="mean D(x), real")
    right.plot(epochs, history.series("train_d_fake"), "-o", ms=3, color="C3", label="mean D(G(z)), fake")
    right.set_ylabel("mean critic score")
    return _per_epoch_panels(fig, (left, right), title)


def runs_per_epoch(
    histories: Mapping[str, Sequence[dict]],
    key: str,
    ylabel: str = "",
    title: str = "",
    chance: float | None = None,
    ylim: tuple[float, float] | None = None,
) -> plt.Figure:
    """One curve per run: ``key`` of each epoch's record, for runs (histories, or some of their epochs) named by
    ``histories``' keys; ``chance`` draws the value of a model that ignores what it is asked (e.g. 0.1 for a
    conditional accuracy over ten digits); ``ylim`` fixes the y range. Notebook 03, "Why the label is heard late"."""
    fig, ax = plt.subplots(figsize=(5.5, 3.3))
    for name, records in histories.items():
        kept = [r for r in records if key in r]
        ax.plot([r["epoch"] for r in kept], [r[key] for r in kept], "-o", ms=3, label=name)
    if chance is not None:
        ax.axhline(chance, color="grey", ls=":", lw=1, label=f"chance ({chance:g})")
    ax.set_ylabel(ylabel or key)
    if ylim is not None:
        ax.set_ylim(*ylim)
    return _per_epoch_panels(fig, (ax,), title)


def codebook_usage(indices: torch.Tensor, n_codes: int, title: str = "") -> plt.Figure:
    """How often each code of a VQ-VAE's codebook is used, as bars: dead codes are the gaps.
    Notebook 02, "The VQ-VAE"."""
    counts = torch.bincount(indices.flatten().long().cpu(), minlength=n_codes)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.06 * n_codes + 2), 3.0))
    ax.bar(range(n_codes), counts.numpy(), width=0.9)
    ax.set_xlabel("code")
    ax.set_ylabel("uses")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _per_epoch_panels(fig: plt.Figure, axes, title: str) -> plt.Figure:
    """The finish of the per-epoch figures: whole-number epoch axes, grid, legends, title."""
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
