"""The small UNet that denoises in notebook 05, "The network" (Ronneberger et al. 2015, with the time
embedding, residual blocks and attention of Ho et al. 2020): it takes a noisy image, the time and
optionally a label, and returns a tensor of the image's shape (the noise, or the velocity).

For 1 x 28 x 28 digits and the defaults (``width=32``, ``mults=(1, 2, 2)``), with B images:

    input          (B, 1, 28, 28)
    stem           (B, 32, 28, 28)
    level 0        (B, 32, 28, 28)  -> skip, down to (B, 32, 14, 14)
    level 1        (B, 64, 14, 14)  -> skip, down to (B, 64, 7, 7)
    level 2        (B, 64, 7, 7)    self-attention, -> skip
    middle         (B, 64, 7, 7)    residual, self-attention, residual
    up level 2     (B, 64, 7, 7)    with its skip, self-attention, up to (B, 64, 14, 14)
    up level 1     (B, 64, 14, 14)  with its skip, up to (B, 64, 28, 28)
    up level 0     (B, 32, 28, 28)  with its skip
    output         (B, 1, 28, 28)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def time_embedding(time: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of ``time`` (B,) in [0, 1] (Vaswani et al. 2017, section 3.5, as Ho et al. 2020
    embed the step): ``dim`` sines and cosines of 1000 t at geometrically spaced frequencies, (B, dim)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=time.device) / half)
    angles = 1000 * time.float()[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResidualBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 convolution, twice, with the time (and label) embedding added in between,
    and a 1x1 convolution on the skip when the channels change: (B, c_in, H, W) -> (B, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, embedding_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.embedding = nn.Linear(embedding_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, c_out, H, W)
        h = h + self.embedding(F.silu(embedding))[:, :, None, None]  # the time, per channel
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Every pixel attends to every other (Vaswani et al. 2017), used at the lowest resolution only, where
    7 x 7 = 49 positions make it cheap: (B, C, H, W) -> (B, C, H, W), residual."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.norm = _norm(channels)
        self.attention = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, H*W, C)
        out, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


def check_image_shape(image_shape: Sequence[int], mults: Sequence[int]) -> None:
    """A clear error when a UNet with ``len(mults)`` levels cannot halve images of ``image_shape`` (C, H, W)
    between its levels; settings call it before any data is loaded."""
    _, height, side = image_shape
    factor = 2 ** (len(mults) - 1)
    if height % factor or side % factor:
        raise ValueError(
            f"a UNet with {len(mults)} levels halves the image {len(mults) - 1} times: {height} x {side} "
            f"pixels must divide by {factor}: choose --image-size {max(factor, height // factor * factor)}"
        )


class UNet(nn.Module):
    """A UNet that predicts noise (DDPM) or velocity (flow matching) for images of ``image_shape`` (C, H, W).

    Inputs: ``width`` channels of the first level; ``mults`` each level's channels as multiples of
    ``width`` (the image is halved between levels: H and W must divide by 2 ** (levels - 1));
    ``num_classes`` > 0 adds a label embedding with one extra "no label" class (index ``num_classes``)
    for classifier-free guidance; ``dropout`` inside the residual blocks.
    ``forward(x, time, labels=None)``: ``x`` (B, C, H, W), ``time`` (B,) in [0, 1], ``labels`` (B,) or None.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        width: int = 32,
        mults: Sequence[int] = (1, 2, 2),
        num_classes: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_image_shape(image_shape, mults)
        channels = image_shape[0]
        self.image_shape, self.width, self.mults = tuple(image_shape), width, tuple(mults)
        self.num_classes = num_classes
        embedding_dim = 4 * width
        self.time_mlp = nn.Sequential(
            nn.Linear(width, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim)
        )
        self.label_embedding = nn.Embedding(num_classes + 1, embedding_dim) if num_classes else None
        widths = [width * m for m in mults]
        last = len(widths) - 1
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.down = nn.ModuleList()
        c = width
        for level, w in enumerate(widths):
            self.down.append(
                nn.ModuleDict(
                    {
                        "block": ResidualBlock(c, w, embedding_dim, dropout),
                        "attention": SelfAttention(w) if level == last else nn.Identity(),
                        "resample": nn.Conv2d(w, w, 3, stride=2, padding=1) if level < last else nn.Identity(),
                    }
                )
            )
            c = w
        self.middle = nn.ModuleList(
            [ResidualBlock(c, c, embedding_dim, dropout), SelfAttention(c), ResidualBlock(c, c, embedding_dim, dropout)]
        )
        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            w = widths[level]
            self.up.append(
                nn.ModuleDict(
                    {
                        "block": ResidualBlock(c + w, w, embedding_dim, dropout),  # with the skip of this level
                        "attention": SelfAttention(w) if level == last else nn.Identity(),
                        "resample": (
                            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, w, 3, padding=1))
                            if level > 0
                            else nn.Identity()
                        ),
                    }
                )
            )
            c = w
        self.head = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)  # the untrained network predicts 0: a calm start
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, time: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        embedding = self.time_mlp(time_embedding(time, self.width))  # (B, 4 width)
        if self.label_embedding is not None:
            if labels is None:  # unconditional use of a conditional network: the "no label" class
                labels = torch.full((len(x),), self.num_classes, device=x.device, dtype=torch.long)
            embedding = embedding + self.label_embedding(labels)
        h = self.stem(x)  # (B, width, H, W)
        skips = []
        for level in self.down:
            h = level["attention"](level["block"](h, embedding))
            skips.append(h)
            h = level["resample"](h)  # halved, except after the last level
        h = self.middle[2](self.middle[1](self.middle[0](h, embedding)), embedding)
        for level in self.up:
            h = level["block"](torch.cat([h, skips.pop()], dim=1), embedding)
            h = level["resample"](level["attention"](h))  # doubled, except at the first level
        return self.head(h)  # (B, C, H, W)
