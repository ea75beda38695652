"""What the course's networks share: MLP stacks, a base class that checks the image shape of its
input, the encoder widths, parameter counts and ``model_summary``, which prints the layers with their
output shapes and parameter counts ("Architecture" section of each notebook), drawing images from a
latent generator (``generate``, batch norm on batch statistics, the classes in turn), which the GANs,
the progression and the notebooks' explorations use, and the running average of a network's weights
that samples come from (``exponential_moving_average``: the GANs' generator, the diffusion model). The
autoencoder is in ``labkit.ae``, the VAE in ``labkit.vae``, the GANs in ``labkit.gan.nets``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .engine import settings
from .engine.optim import count_parameters as count_parameters  # a network's trainable parameters

MNIST_SHAPE = (1, 28, 28)


def _check_sizes(latent_dim: int, hidden: Sequence[int], image_shape: Sequence[int]) -> None:
    settings.whole_number("latent_dim", latent_dim)
    if not hidden:
        raise ValueError(f"hidden must be a non-empty list of layer sizes, got {hidden!r}")
    for size in hidden:
        settings.whole_number("every size in hidden", size)
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (channels, height, width), got {image_shape!r}")
    for size in image_shape:
        settings.whole_number("every size in image_shape", size)


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last): sizes [a, b, c] -> a->b->c."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class FlatImageModel(nn.Module):
    """Validates the sizes, and checks that inputs are images of the expected shape before the
    first layer sees them."""

    def __init__(self, latent_dim: int, hidden: Sequence[int], image_shape: Sequence[int]):
        super().__init__()
        _check_sizes(latent_dim, hidden, image_shape)
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.hidden = tuple(hidden)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            c, h, w = self.image_shape
            raise ValueError(
                f"{type(self).__name__} expects images of shape (batch, {c}, {h}, {w}), "
                f"got {tuple(x.shape)}. Reshape with x.view(-1, {c}, {h}, {w})."
            )


# Encoder widths. The narrower network 784 -> 128 -> 64 -> 32 (NARROW_HIDDEN) is the usual first MLP autoencoder;
# on the 4,000-digit offline subset it learns too slowly to beat PCA (AE) or the classic VAE in 20 epochs
# (benchmarks/quality.py measures both, "ae-narrow"), so the kit's default is wider (notebook 01, "Settings").
# The decoder mirrors the encoder.
DEFAULT_HIDDEN = (512, 256)
NARROW_HIDDEN = (128, 64)


@torch.no_grad()
def start_at_mean_image(decoder: nn.Module, images: torch.Tensor) -> None:
    """Set the bias of the decoder's last layer to the logit of the training images' mean, so that the
    untrained decoder already draws the average image instead of grey noise (notebook 02, "The model").

    A decoder that ends in logits of Bernoulli pixels (the VAE's) first spends its early steps learning
    where digits have ink at all; starting there saves them: on the offline digits the default VAE gets
    below the pytorch/examples script's test loss in 6 epochs instead of 8 (``benchmarks/vae_defaults.py``).
    The last ``nn.Linear`` gets one bias per pixel (its outputs must number C * H * W); a last convolution
    one bias per channel, the logit of the channel's mean. Means are clamped to [0.001, 0.999] so that
    an always-black pixel does not get an infinite bias."""
    layers = [m for m in decoder.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
    if not layers or layers[-1].bias is None:
        raise ValueError(
            "start_at_mean_image needs a decoder whose last layer is a linear or convolution layer with a bias"
        )
    layer, mean = layers[-1], images.float().mean(0)  # mean: (C, H, W)
    per_output = mean.flatten() if isinstance(layer, nn.Linear) else mean.flatten(1).mean(1)
    if per_output.numel() != layer.bias.numel():
        raise ValueError(
            f"the decoder's last layer has {layer.bias.numel()} outputs but the images have "
            f"{per_output.numel()} {'pixels' if isinstance(layer, nn.Linear) else 'channels'} "
            f"(shape {tuple(mean.shape)}): pass the images this decoder draws"
        )
    layer.bias.copy_(torch.logit(per_output.clamp(1e-3, 1 - 1e-3)).to(layer.bias))


def model_summary(model: nn.Module, input_shape: Sequence[int], device: torch.device | str | None = None) -> str:
    """A table of the leaf layers with their output shapes and parameter counts.

    Runs one forward pass on zeros of ``input_shape`` (batch included) with hooks on each layer.
    """
    device = device or next(model.parameters()).device
    rows: list[tuple[str, str, int]] = []
    hooks = []
    for name, module in model.named_modules():
        if len(list(module.children())) == 0:

            def hook(mod, _inp, out, name=name):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else "-"
                rows.append(
                    (
                        f"{name} ({type(mod).__name__})",
                        str(shape),
                        sum(p.numel() for p in mod.parameters(recurse=False)),
                    )
                )

            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    devices = [device] if torch.device(device).type == "cuda" else []
    try:  # the forward pass may draw random numbers (a VAE samples z): leave the generators as they were
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            model(torch.zeros(*input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'layer':<{width}}{'output shape':<22}{'parameters':>12}", "-" * (width + 34)]
    lines += [f"{n:<{width}}{s:<22}{p:>12,}" for n, s, p in rows]
    lines += ["-" * (width + 34), f"{'total trainable':<{width + 22}}{count_parameters(model):>12,}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- averaging the weights

# The average's decay at step n is capped at (1 + n) / (EMA_WARMUP + n): an average over about the last 1 / (EMA_WARMUP
# - 1) of the run so far, until the decay reaches ``ema``. For the diffusion model at its CPU defaults (4,095 steps,
# the cap still below 0.999 at the end) 5 gave a Fréchet distance of 8.05, where 3 gave 8.11, 10 8.28, 20 8.67, 40
# 8.93 and the trained weights themselves 9.03 (benchmarks/results/diffusion_ema.json, one training, 1,000 samples
# of 16 Heun steps).
EMA_WARMUP = 5


def ema_with_warmup(decay: float):
    """The update of an exponential moving average for ``AveragedModel(multi_avg_fn=...)``: torch's
    ``get_ema_multi_avg_fn(decay)`` with the decay of step n capped at (1 + n) / (EMA_WARMUP + n). A fixed
    0.999 would still hold 0.999 ** 600 = 55 % of the untrained weights after the 600 steps a CPU trains in a
    few minutes; the cap averages over the last quarter of the steps so far (the "power function" profile of
    Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models", with gamma near 3),
    so the average follows the early weights and settles to ``decay`` after about 4,000 steps."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        n = n_averaged.double()
        weight = 1 - torch.clamp((1 + n) / (EMA_WARMUP + n), max=decay)  # a tensor: no wait for the GPU
        for average, value in zip(averaged, current):
            if average.is_floating_point():
                average.lerp_(value, weight.to(average.dtype))
            else:
                average.copy_(value)

    return update


def exponential_moving_average(net: nn.Module, decay: float) -> AveragedModel:
    """A copy of ``net`` whose weights follow the trained ones as w_ema <- d w_ema + (1 - d) w after every
    step, d rising to ``decay`` (``ema_with_warmup``; torch.optim.swa_utils). Ho et al. 2020 (appendix B)
    and Song & Ermon 2020 (section 3.5) sample from such an average: it smooths out the noise of the last
    steps. Buffers are averaged too."""
    if not isinstance(decay, (int, float)) or isinstance(decay, bool) or not 0 <= decay < 1:
        raise ValueError(f"--ema must be a decay in [0, 1) such as 0.999, not {decay!r} (0 follows the weights)")
    return AveragedModel(net, multi_avg_fn=ema_with_warmup(decay), use_buffers=True)


# --------------------------------------------------------------------------- drawing from a generator


def classes_in_turn(n: int, num_classes: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The labels 0, 1, ..., num_classes - 1, 0, 1, ... (n,): what a conditional model's ``draw`` asks for when
    it is given no labels (the conditional GAN, the conditional diffusion model), each class equally often."""
    return torch.arange(n, device=device) % num_classes


def conditional_samples(model: nn.Module, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples of a conditional model with a prior (``sample(digits)``: the cVAE, ``labkit.vae.cvae``), the
    classes in turn, drawn with ``seed`` (the caller's generators left as they were): (images (n, C, H, W) in
    [0, 1], requested classes (n,))."""
    device = next(model.parameters()).device
    digits = classes_in_turn(n, model.num_classes, device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return model.sample(digits), digits


def code_of(model: nn.Module, x: torch.Tensor, *labels: torch.Tensor) -> torch.Tensor:
    """The code of images ``x`` under a model with an encoder: the autoencoder's code, a VAE's posterior mean
    (its ``encode`` gives the mean and the log-variance)."""
    codes = model.encode(x, *labels)
    return codes[0] if isinstance(codes, tuple) else codes


@contextmanager
def batch_statistics(module: nn.Module):
    """Run ``module``'s batch-norm layers on the batch's own statistics (as in training) without
    touching their running averages, so that drawing samples never changes the model."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in norms]
    for m in norms:
        m.train()
        m.track_running_stats = False
    try:
        yield module
    finally:
        for m, (training, track) in zip(norms, saved):
            m.train(training)
            m.track_running_stats = track


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Images G(z) in [-1, 1] on the CPU, with batch norm on batch statistics (as G was trained).
    A conditional generator (one with ``num_classes``, ``labkit.gan.cgan``) draws the classes ``labels``
    (N,), by default ``classes_in_turn``."""
    with batch_statistics(generator):
        if not hasattr(generator, "num_classes"):
            return generator(z).float().cpu()
        if labels is None:
            labels = classes_in_turn(len(z), generator.num_classes, z.device)
        return generator(z, labels.to(z.device)).float().cpu()
