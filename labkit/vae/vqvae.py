"""The VQ-VAE of van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning":
the vector quantiser with its straight-through gradient, the loss (eq. 3, next to the paper), the
network, its training, its settings and its recipe, as ``run_vqvae`` runs it.

A convolutional encoder turns a 28 x 28 digit into a 7 x 7 grid of vectors z_e; each is replaced by its
nearest entry of a learned codebook, so an image becomes 49 whole numbers in [0, n_codes), and the
decoder draws the digit back from the codes. Other datasets and sizes (``--dataset``, ``--image-size``)
get a grid of a quarter of the image side (8 x 8 for 32 x 32 images), in any number of channels.
Reconstruction and the two codebook terms are per image (summed over pixels or over the grid and the
code dimensions, averaged over the batch); the reconstruction is in nats.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import datasets, plots
from ..data import ImageData, batches
from ..engine import distributed, environment, optim, settings
from ..engine.family import DoctorCheck, Option, Recipe
from ..engine.loop import evaluate
from ..engine.runs import Trained, fit_in_run, start_run, training_cost
from ..engine.training import History, TrainingBase
from ..losses import bernoulli_nll
from ..models import MNIST_SHAPE, FlatImageModel

CODEBOOK_INIT_STD = 0.02  # about the spread of a fresh encoder's z_e, so that the codes start among them
LOW_USAGE = 0.5  # ``codebook_usage_report`` warns when fewer than this fraction of the codes are used


class Quantized(NamedTuple):
    """What ``VectorQuantizer`` returns (see there)."""

    z_q: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    indices: torch.Tensor


class VectorQuantizer(nn.Module):
    """A codebook of ``n_codes`` vectors e_k of size ``code_dim``; every vector of z_e is replaced by its
    nearest code, z_q = e_k with k = argmin_j ||z_e - e_j||^2 (van den Oord et al. 2017, eq. 1-2).

    Input z_e: (B, code_dim) or (B, code_dim, H, W). Returns ``Quantized``: ``z_q`` (float32, z_e's
    shape) through the straight-through estimator, whose gradient is copied to z_e unchanged (section
    3.2); ``codebook_loss`` ||sg[z_e] - e||^2, which moves only the codes, and ``commitment_loss``
    ||z_e - sg[e]||^2, which moves only the encoder (eq. 3), both means over the batch of squared
    distances summed per item; ``indices`` (B,) or (B, H, W).
    """

    def __init__(self, n_codes: int = 64, code_dim: int = 4):
        super().__init__()
        self.n_codes = settings.whole_number("n_codes", n_codes)
        self.code_dim = settings.whole_number("code_dim", code_dim)
        self.codebook = nn.Embedding(n_codes, code_dim)  # (n_codes, code_dim)
        nn.init.normal_(self.codebook.weight, std=CODEBOOK_INIT_STD)

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code to each row of ``flat`` (N, code_dim): (N,). Squared distances in
        float32, autocast switched off: in 16 bits the matrix product mistakes near ties."""
        with _no_autocast(flat.device.type):
            e, flat = self.codebook.weight.float(), flat.float()
            distances = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)  # (N, n_codes)
        return distances.argmin(1)

    def forward(self, z_e: torch.Tensor) -> Quantized:
        if z_e.dim() not in (2, 4) or z_e.shape[1] != self.code_dim:
            raise ValueError(
                f"VectorQuantizer expects (batch, {self.code_dim}) or (batch, {self.code_dim}, H, W), "
                f"got {tuple(z_e.shape)}"
            )
        z_e = z_e.float()
        last = z_e.movedim(1, -1)  # (B, code_dim) or (B, H, W, code_dim)
        indices = self.nearest(last.reshape(-1, self.code_dim)).view(last.shape[:-1])
        z_q = self.codebook(indices).movedim(-1, 1)  # back to z_e's shape
        codebook_loss = _per_item(z_q - z_e.detach())  # ||sg[z_e] - e||^2
        commitment_loss = _per_item(z_e - z_q.detach())  # ||z_e - sg[e]||^2
        z_q = z_e + (z_q - z_e).detach()  # straight-through: z_q's value, z_e's gradient
        return Quantized(z_q, codebook_loss, commitment_loss, indices)


def _per_item(difference: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm per item (summed over every dimension but the batch), averaged over the batch."""
    return difference.pow(2).flatten(1).sum(1).mean()


def _no_autocast(device_type: str):
    """Autocast switched off for the block if it is on (creating none when it is off, as ``Precision`` does)."""
    try:
        on = torch.is_autocast_enabled(device_type)
    except (RuntimeError, TypeError):  # a device type autocast does not know
        on = False
    return torch.autocast(device_type, enabled=False) if on else contextlib.nullcontext()


def codebook_stats(indices: torch.Tensor, n_codes: int) -> dict[str, float]:
    """How much of the codebook the ``indices`` use: ``codebook_perplexity``, exp of the entropy (nats)
    of their histogram (n_codes when all codes are used equally, 1 when one code does everything), and
    ``codebook_usage``, the fraction of codes used at least once. Dead codes pull both down."""
    counts = torch.bincount(indices.flatten().long(), minlength=n_codes).double()
    p = counts[counts > 0] / counts.sum()
    return {
        "codebook_perplexity": float((-(p * p.log()).sum()).exp()),
        "codebook_usage": float((counts > 0).double().mean()),
    }


def usage_line(stats: dict[str, float], n_codes: int) -> str:
    """``"41 of 64 codes used, perplexity 23.5"``."""
    used, perplexity = round(stats["codebook_usage"] * n_codes), stats["codebook_perplexity"]
    return f"{used} of {n_codes} codes used, perplexity {perplexity:.1f}"


def codebook_usage_report(stats: dict[str, float], n_codes: int, low: float = LOW_USAGE) -> str:
    """One line on the codebook's use; when fewer than ``low`` of the codes are used, also a warning
    that says what to try."""
    line = usage_line(stats, n_codes)
    if stats["codebook_usage"] < low:
        line += (
            ": most codes are dead (never the nearest to any z_e). Try a smaller code_dim, fewer codes "
            "(n_codes), a lower learning rate, or restart dead codes at encoder outputs of a batch"
        )
        warnings.warn(line, stacklevel=2)
    return line


def vqvae_loss(
    x_logits: torch.Tensor, x: torch.Tensor, codebook_loss: torch.Tensor, commitment_loss: torch.Tensor, beta=0.25
) -> dict[str, torch.Tensor]:
    """The VQ-VAE objective (van den Oord et al. 2017, eq. 3), per image:
    -log p(x | z_q(x)) + ||sg[z_e(x)] - e||^2 + beta * ||z_e(x) - sg[e]||^2.

    The reconstruction is the Bernoulli negative log-likelihood in nats, from logits (safe under
    autocast); beta = 0.25 is the paper's commitment weight. Returns ``loss`` (what is minimised),
    ``recon``, ``codebook`` and ``commitment``.
    """
    recon = bernoulli_nll(x_logits, x).mean()
    loss = recon + codebook_loss + beta * commitment_loss
    return {"loss": loss, "recon": recon, "codebook": codebook_loss, "commitment": commitment_loss}


class VQVAE(FlatImageModel):
    """Convolutional encoder -> a 7 x 7 grid of ``code_dim`` vectors -> ``VectorQuantizer`` -> decoder.

    Inputs: ``n_codes`` and ``code_dim`` of the codebook; ``widths`` the channels of the encoder's two
    stride-2 convolutions (the decoder mirrors them); ``image_shape`` (C, H, W), H and W divisible by 4.
    The decoder returns logits; ``decode`` applies the sigmoid. ``latent_dim`` is ``code_dim``.
    """

    def __init__(
        self,
        n_codes: int = 64,
        code_dim: int = 4,
        widths: Sequence[int] = (32, 64),
        image_shape: Sequence[int] = MNIST_SHAPE,
    ):
        super().__init__(code_dim, widths, image_shape)
        if len(widths) != 2 or self.image_shape[1] % 4 or self.image_shape[2] % 4:
            raise ValueError(f"VQVAE needs two widths and images of a size divisible by 4, got {widths}, {image_shape}")
        (c, h, w), (w1, w2) = self.image_shape, widths
        self.n_codes, self.code_dim, self.grid = n_codes, code_dim, (h // 4, w // 4)
        self.encoder = nn.Sequential(
            nn.Conv2d(c, w1, 4, stride=2, padding=1),  # (B, 32, 14, 14)
            nn.ReLU(),
            nn.Conv2d(w1, w2, 4, stride=2, padding=1),  # (B, 64, 7, 7)
            nn.ReLU(),
            nn.Conv2d(w2, code_dim, 1),  # (B, 4, 7, 7): z_e, one code_dim vector per grid cell
        )
        self.quantizer = VectorQuantizer(n_codes, code_dim)  # (B, 4, 7, 7) -> nearest codes, indices (B, 7, 7)
        self.decoder = nn.Sequential(
            nn.Conv2d(code_dim, w2, 3, padding=1),  # (B, 64, 7, 7)
            nn.ReLU(),
            nn.ConvTranspose2d(w2, w1, 4, stride=2, padding=1),  # (B, 32, 14, 14)
            nn.ReLU(),
            nn.ConvTranspose2d(w1, c, 4, stride=2, padding=1),  # (B, 1, 28, 28) logits
        )

    @property
    def n_latents(self) -> int:
        """Codes per image: 49 for MNIST."""
        return math.prod(self.grid)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's continuous output z_e: (B, code_dim, 7, 7)."""
        self._check_input(x)
        return self.encoder(x)

    def decode_logits(self, z_q: torch.Tensor) -> torch.Tensor:
        return self.decoder(z_q)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities (B, 1, 28, 28) for quantised codes z_q (B, code_dim, 7, 7)."""
        return torch.sigmoid(self.decoder(z_q))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities for a grid of code indices (B, 7, 7)."""
        return self.decode(self.quantizer.codebook(indices).movedim(-1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        """Returns (reconstruction logits, the ``Quantized`` codes of the images)."""
        q = self.quantizer(self.encode(x))
        return self.decode_logits(q.z_q), q

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        """The code indices of images x: (B, 7, 7) whole numbers in [0, n_codes)."""
        return self.quantizer(self.encode(x)).indices

    @torch.no_grad()
    def sample_random_codes(self, n: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Decode n grids of uniformly random codes: (n, 1, 28, 28). Not the paper's samples, which draw
        the codes from a PixelCNN prior fitted after training (section 3.3); what random codes look like."""
        device = device or next(self.parameters()).device
        return self.decode_indices(torch.randint(self.n_codes, (n, *self.grid), device=device))


class VQVAETraining(TrainingBase):
    """Reconstruction + codebook + beta * commitment per image (van den Oord et al. 2017, eq. 3)."""

    name = "vqvae"

    def __init__(self, model: nn.Module, lr: float = 2e-3, beta: float = 0.25):
        self.model = model
        self.beta = settings.number("beta", beta, at_least=0, what="a number >= 0 (the paper's is 0.25)")
        self.modules = {"model": model}
        self.optimizer = optim.adam(model.parameters(), lr=settings.learning_rate("lr", lr))
        self.optimizers = {"optimizer": self.optimizer}

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.precision.autocast():
            x_logits, q = self.model(x)
            parts = vqvae_loss(x_logits.float(), x, q.codebook_loss, q.commitment_loss, beta=self.beta)
        self.precision.minimize(parts["loss"], self.optimizer)
        return {k: v.detach() for k, v in parts.items()}

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x_logits, q = self.model(x)
        parts = vqvae_loss(x_logits.float(), x, q.codebook_loss, q.commitment_loss, beta=self.beta)
        parts["mse"] = F.mse_loss(torch.sigmoid(x_logits.float()), x)  # per pixel
        return parts


@torch.no_grad()
def code_indices(model: VQVAE, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The code indices of every image of ``x``, (N, 7, 7), in batches, the model in evaluation mode."""
    was_training = model.training
    model.eval()
    indices = torch.cat([model.encode_indices(xb) for xb in batches(x, batch_size=batch_size, shuffle=False)])
    model.train(was_training)
    return indices


def codebook_usage(model: VQVAE, x: torch.Tensor) -> dict[str, float]:
    """``codebook_stats`` of the codes ``model`` gives the images ``x``: how much of the codebook is alive."""
    return codebook_stats(code_indices(model, x), model.n_codes)


@dataclass
class VQVAESettings(settings.RunSettings):
    """Defaults measured on the 4,000-digit offline subset: after 20 epochs the test MSE is about 0.005
    per pixel with 50-60 of the 64 codes in use. A code_dim of 8 or 16 left more codes dead and
    reconstructed worse; beta is the paper's. ``dataset`` and ``image_size``: what to train on
    (``labkit.datasets``), images whose side is a multiple of 4 (the grid is a quarter of it)."""

    epochs: int = field(default_factory=lambda: environment.pick(full=20, smoke=environment.SMOKE_EPOCHS))
    batch_size: int = 32
    lr: float = 2e-3
    n_codes: int = 64
    code_dim: int = 4
    beta: float = 0.25

    def __post_init__(self):
        super().__post_init__()
        for name in ("batch_size", "n_codes", "code_dim"):
            settings.whole_number(name, getattr(self, name))
        settings.number("beta", self.beta, at_least=0, what="a number >= 0 (the paper's is 0.25)")
        _, side, _ = datasets.check_dataset(self.dataset, self.image_size)
        if side % 4:
            raise ValueError(
                f"the VQ-VAE halves the image side twice, so it needs a side that is a multiple of 4; {self.dataset} "
                f"gives {side}x{side} images: choose an --image-size such as 28, 32 or 64"
            )

    @property
    def run_name(self) -> str:
        """``vqvae`` on MNIST, with the dataset added otherwise (``labkit.datasets.run_suffix``)."""
        return "vqvae" + datasets.run_suffix(self.dataset, self.image_size)

    def training(self, device: torch.device | str = "cpu", image_shape: Sequence[int] | None = None) -> VQVAETraining:
        """A fresh VQ-VAE on ``device`` with its training, as these settings describe it, for images of
        ``image_shape`` (default: the dataset's)."""
        shape = image_shape or datasets.image_shape(self.dataset, self.image_size)
        model = VQVAE(n_codes=self.n_codes, code_dim=self.code_dim, image_shape=shape).to(device)
        return VQVAETraining(model, lr=self.lr, beta=self.beta)


def vqvae_final(test: dict, usage: dict, history: History, model: torch.nn.Module) -> dict:
    """The ``final`` entry of a VQ-VAE's metrics.json: ``evaluate`` and ``codebook_usage`` on the test split."""
    return {"test_mse": test["mse"], "test_recon_nats": test["recon"], **usage, **training_cost(history, model)}


def run_vqvae(
    cfg: VQVAESettings | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    *,
    data: ImageData | None = None,
    callbacks=(),
) -> Trained | None:
    """Train the VQ-VAE and write its figures and metrics.json; returns the trained run (None under
    torchrun on ranks other than 0). The run is called ``cfg.run_name``. ``data``: the images already
    loaded (default: ``cfg.dataset``); ``callbacks``: e.g. a live plot. Warns when most of the codebook
    is dead (``codebook_usage_report``)."""
    cfg = cfg or VQVAESettings()
    run, device = start_run(cfg.run_name, cfg.seed, out, device)
    data = datasets.load_for(cfg, device, data)
    training = cfg.training(device, data.image_shape)
    model = training.model
    history = fit_in_run(run, training, data, cfg, progress, callbacks)
    if not distributed.is_main():
        return None  # under torchrun, rank 0 evaluates and writes the run
    test = evaluate(training, data.test_x)
    indices = code_indices(model, data.test_x)
    usage = codebook_stats(indices, cfg.n_codes)
    codebook_usage_report(usage, cfg.n_codes)  # warns when most codes are dead
    title = f"VQ-VAE on {data.label}"
    panels = (("recon", "reconstruction (nats / image)"), ("codebook", "codebook loss"), ("mse", "MSE per pixel"))
    with torch.no_grad():
        x = data.test_x[:10]
        run.save_figure(plots.loss_curves(history, panels, title=title), "loss_curves")
        run.save_figure(
            plots.reconstruction_grid(x, torch.sigmoid(model(x)[0]), title=f"{title}: reconstructions"),
            "reconstructions",
        )
        run.save_figure(plots.image_grid(model.sample_random_codes(32), title=f"{title}: random codes"), "random_codes")
        run.save_figure(
            plots.codebook_usage(indices, cfg.n_codes, f"test codes: {usage_line(usage, cfg.n_codes)}"),
            "codebook_usage",
        )
    plots.close_all()
    final = vqvae_final(test, usage, history, model)
    return run.record(model="vqvae", cfg=cfg, training=training, data=data, history=history, final=final, device=device)


def remeasure_vqvae(training: VQVAETraining, data: ImageData, cfg: VQVAESettings) -> dict[str, float]:
    """The test MSE per pixel of a student's weights, as ``run_vqvae`` measured it (``labkit.grade``)."""
    return {"test_mse": evaluate(training, data.test_x)["mse"]}


RECIPE = Recipe(
    "vqvae",
    run_vqvae,
    VQVAESettings,
    options=(
        Option("n_codes", "VQ-VAE: codebook size", int),
        Option("code_dim", "VQ-VAE: size of each code vector", int),
        Option("beta", "VQ-VAE: the commitment weight", float),
    ),
    doctor=(DoctorCheck.of("vqvae", VQVAESettings),),
    remeasure=remeasure_vqvae,
    label="VQ-VAE",
)
