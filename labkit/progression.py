"""Watching a model learn (notebook 03, "Watching G learn"; notebook 05): ``FixedNoise`` turns one batch of
noise, drawn once, into images after every epoch; its frames become a figure (one row per epoch) and an
animated GIF.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from . import plots
from .engine import files, settings
from .engine.training import History
from .models import generate


class FixedNoise:
    """A ``fit`` callback: turn one fixed batch of noise into images after every epoch and keep the frames.

    ``source``: a generator G (with ``latent_dim``), whose noise z is drawn once from ``seed``, or a training
    with ``draw(n, seed=...)`` (a diffusion model's, which starts its sampler from the same noise for the same
    seed). ``frames[i]`` are the images (n, C, H, W) in [-1, 1] after epoch ``epochs[i]``. Because the noise
    never changes, any change between frames is the model learning (notebook 03, "Watching G learn")."""

    def __init__(self, source, n: int = 64, seed: int = 0):
        settings.whole_number("n", n)
        self.n, self.seed = n, seed
        self.generator = source if isinstance(source, nn.Module) else None
        self.training = None if self.generator is not None else source
        self.z = None
        if self.generator is not None:
            device = next(source.parameters()).device
            self.z = torch.randn(n, source.latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
        elif not callable(getattr(source, "draw", None)):
            raise TypeError(f"FixedNoise needs a generator or a training that draws samples, not {type(source)}")
        self.frames: list[torch.Tensor] = []
        self.epochs: list[int] = []

    def __call__(self, epoch: int, record: dict, history: History) -> None:
        if self.generator is not None:
            self.frames.append(generate(self.generator, self.z))
        else:
            self.frames.append(self.training.draw(self.n, seed=self.seed).float().cpu() * 2 - 1)
        self.epochs.append(epoch)

    def state_dict(self) -> dict:
        """The noise and the frames so far (as 8-bit images: a checkpoint of 100 epochs stays small)."""
        return {
            "z": None if self.z is None else self.z.cpu(),
            "epochs": list(self.epochs),
            "frames": [((f + 1) * 127.5).round().to(torch.uint8) for f in self.frames],
        }

    def load_state_dict(self, state: dict) -> None:
        if self.z is not None:
            self.z = state["z"].to(self.z.device)
        self.epochs = list(state["epochs"])
        self.frames = [f.float() / 127.5 - 1 for f in state["frames"]]

    def figure(self, **kwargs) -> plt.Figure:
        return fixed_noise_progression(self.frames, self.epochs, **kwargs)

    def save_gif(self, path: str | Path, **kwargs) -> Path:
        return progression_gif(self.frames, self.epochs, path, **kwargs)


def _pick_rows(n: int, max_rows: int) -> list[int]:
    if n <= max_rows:
        return list(range(n))
    return sorted({round(i * (n - 1) / (max_rows - 1)) for i in range(max_rows)})


def fixed_noise_progression(
    frames: Sequence[torch.Tensor], epochs: Sequence[int], per_row: int = 8, max_rows: int = 10, title: str = ""
) -> plt.Figure:
    """The first ``per_row`` fixed-noise images after each epoch, one row per epoch (at most
    ``max_rows`` rows, evenly spaced, first and last included). Notebook 03, "Watching G learn"."""
    if not frames:
        raise ValueError("no frames yet: pass the FixedNoise callback to fit(..., callbacks=[...]) and train")
    rows = _pick_rows(len(frames), max_rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(0.9 * per_row + 0.8, 0.95 * len(rows) + 0.5), squeeze=False)
    for ax, i in zip(axes[:, 0], rows):
        plots.image_grid(frames[i][:per_row], nrow=per_row, value_range=(-1, 1), ax=ax)
        ax.text(-0.01, 0.5, f"epoch {epochs[i]}", transform=ax.transAxes, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _frame_image(images: torch.Tensor, nrow: int, label: str, scale: int):
    """One GIF frame: the image grid as a PIL RGB image, enlarged ``scale`` times, labelled on top."""
    from PIL import Image, ImageDraw

    array = (plots.grid_array(images, nrow, value_range=(-1, 1)) * 255).round().astype(np.uint8)
    picture = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).convert("RGB")
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    canvas = Image.new("RGB", (picture.width, picture.height + 14), "white")
    canvas.paste(picture, (0, 14))
    ImageDraw.Draw(canvas).text((3, 1), label, fill="black")
    return canvas


def progression_gif(
    frames: Sequence[torch.Tensor],
    epochs: Sequence[int],
    path: str | Path,
    n_show: int = 32,
    nrow: int = 8,
    ms_per_frame: int = 300,
    scale: int | None = None,
    max_frames: int = 40,
) -> Path:
    """Write the fixed-noise frames as an animated GIF (Pillow), one frame per epoch (at most
    ``max_frames``, evenly spaced, first and last kept: 100 epochs would make a file of megabytes),
    each labelled with its epoch (the label also keeps Pillow from merging two identical frames).
    Loops forever. ``scale`` enlarges small images (default: x2 below 48 pixels). Notebook 03,
    "Watching G learn". Written atomically (``labkit.engine.files``): a full disk leaves the previous
    GIF, never one cut short."""
    if not frames:
        raise ValueError("no frames to animate: train with the FixedNoise callback first")
    scale = scale or (2 if frames[0].shape[-1] < 48 else 1)
    pictures = [
        _frame_image(frames[i][:n_show], nrow, f"epoch {epochs[i]}", scale) for i in _pick_rows(len(frames), max_frames)
    ]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=ms_per_frame, loop=0)
    return files.write_bytes(path, buffer.getvalue())
