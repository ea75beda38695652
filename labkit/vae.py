"""The variational autoencoder of notebook 02: the reparameterisation, the KL term and the ELBO
(each next to its paper), the network and its variants, its training (optimiser and step), its settings and
its recipe, as ``python -m labkit train vae`` runs it. Notebook 02 writes the network and the loss
out in cells with the same names. Colour images and other sizes than MNIST's 28 x 28 (``--dataset``,
``--image-size``) get ``ConvVAE`` instead.

All values are per image: summed over pixels or latent dimensions, averaged over the batch, in nats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import datasets, plots
from .conv_nets import conv_decoder, conv_encoder, conv_plan, network_for
from .data import ImageData
from .engine import distributed, optim, settings
from .engine.loop import History, TrainingBase, evaluate
from .engine.precision import PRECISIONS
from .engine.runs import Trained, cost, fit_in_run, start_run
from .losses import bernoulli_nll
from .models import DEFAULT_HIDDEN, MNIST_SHAPE, NARROW_HIDDEN, FlatImageModel, mlp, start_at_mean_image


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Sample z ~ N(mu, sigma^2) as z = mu + sigma * eps with eps ~ N(0, I).

    The randomness sits in eps, so gradients flow to mu and logvar (Kingma & Welling 2014,
    "Auto-Encoding Variational Bayes", section 2.4). Shapes: (B, latent) in, (B, latent) out.
    """
    std = torch.exp(0.5 * logvar)
    eps = torch.randn_like(std)
    return mu + std * eps


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, sigma^2) || N(0, I) ) per sample, summed over latent dimensions: shape (B,).

    Closed form from Kingma & Welling 2014, appendix B:
    -1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2).
    """
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def vae_loss(
    x_logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0
) -> dict[str, torch.Tensor]:
    """The VAE objective: reconstruction + beta * KL, per image in nats (averaged over the batch).

    With beta = 1 the loss is the negative ELBO (Kingma & Welling 2014, eq. 10); beta > 1 is the
    beta-VAE of Higgins et al. 2017. Returns ``loss`` (what is minimised), ``recon``, ``kl`` and
    ``neg_elbo`` (= recon + kl whatever beta is).
    """
    recon = bernoulli_nll(x_logits, x).mean()
    kl = kl_divergence(mu, logvar).mean()
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl, "neg_elbo": recon + kl}


class VAE(FlatImageModel):
    """Variational autoencoder with a Gaussian encoder q(z|x) and a Bernoulli decoder p(x|z).

    Inputs: ``latent_dim``; ``hidden`` encoder widths (the decoder mirrors them); ``image_shape``.
    The decoder returns logits; ``decode`` applies the sigmoid to give pixel probabilities.
    Use ``make_vae`` for the course's named variants. Explained in notebook 02, "The model".
    """

    def __init__(
        self, latent_dim: int = 32, hidden: Sequence[int] = DEFAULT_HIDDEN, image_shape: Sequence[int] = MNIST_SHAPE
    ):
        super().__init__(latent_dim, hidden, image_shape)
        n_pixels = math.prod(image_shape)
        self.encoder = nn.Sequential(
            nn.Flatten(),  # (B, 784)
            mlp([n_pixels, *hidden]),  # (B, 512) -> (B, 256)
            nn.ReLU(),
        )
        self.to_mu = nn.Linear(hidden[-1], latent_dim)  # (B, 32)
        self.to_logvar = nn.Linear(hidden[-1], latent_dim)  # (B, 32)
        self.decoder = nn.Sequential(
            mlp([latent_dim, *reversed(hidden), n_pixels]),  # (B, 256) -> (B, 512) -> (B, 784) logits
            nn.Unflatten(1, self.image_shape),  # (B, 1, 28, 28)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters of q(z|x): mean and log-variance, each (B, latent_dim)."""
        self._check_input(x)
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities (B, 1, 28, 28) for latent points z (B, latent_dim)."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (reconstruction logits, mu, logvar); z is drawn with the reparameterisation trick."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        return self.decode_logits(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Decode n draws from the prior N(0, I): (n, 1, 28, 28) pixel probabilities."""
        device = device or next(self.parameters()).device
        return self.decode(torch.randn(n, self.latent_dim, device=device))


class ConvVAE(VAE):
    """The VAE for colour images and sizes other than 28 x 28: the encoder's stride-2 convolutions end in
    the two linear heads of q(z|x), the decoder mirrors them (``labkit.conv_nets``) and returns logits of
    a Bernoulli p(x|z) per pixel and channel. Methods as ``VAE``'s. For 3 x 32 x 32 and ``latent_dim`` 32:
    (B, 3, 32, 32) -> (B, 128, 4, 4) -> mu, logvar (B, 32); z (B, 32) -> (B, 128, 4, 4) -> (B, 3, 32, 32).
    """

    def __init__(self, latent_dim: int = 32, image_shape: Sequence[int] = (3, 32, 32)):
        widths, _ = conv_plan(image_shape)
        FlatImageModel.__init__(self, latent_dim, widths, image_shape)  # other layers, ``VAE``'s methods
        self.encoder, n_features = conv_encoder(self.image_shape)  # (B, C, H, W) -> (B, n_features)
        self.to_mu = nn.Linear(n_features, latent_dim)  # (B, 32)
        self.to_logvar = nn.Linear(n_features, latent_dim)  # (B, 32)
        self.decoder = conv_decoder(self.image_shape, latent_dim)  # (B, 32) -> (B, C, H, W) logits


# The VAE variants of the course (notebook 02, "Three VAEs"):
VAE_VARIANTS = {
    "default": dict(hidden=DEFAULT_HIDDEN, latent_dim=32),  # the kit's default
    "narrow": dict(hidden=NARROW_HIDDEN, latent_dim=32),  # the course handout's 784-128-64-32
    "classic": dict(hidden=(400,), latent_dim=20),  # pytorch/examples vae/main.py
    "latent2": dict(hidden=DEFAULT_HIDDEN, latent_dim=2),  # a 2-D code you can look at directly
}


def make_vae(variant: str = "default", **overrides) -> VAE:
    """Build one of ``VAE_VARIANTS`` (default, narrow, classic, latent2); keyword overrides win."""
    settings.one_of("variant", variant, VAE_VARIANTS)
    return VAE(**{**VAE_VARIANTS[variant], **overrides})


class VAETraining(TrainingBase):
    """Negative ELBO (reconstruction + beta * KL) per image in nats (notebook 02, "The loss")."""

    name = "vae"

    def __init__(self, model: nn.Module, lr: float = 1e-3, beta: float = 1.0, loss=vae_loss):
        self.model = model
        self.loss = loss  # (x_logits, x, mu, logvar, beta) -> parts; notebook 02 passes the one it defines
        self.beta = settings.number("beta", beta, at_least=0, what="a number >= 0 (1 is the plain VAE)")
        self.modules = {"model": model}
        self.optimizer = optim.adam(model.parameters(), lr=settings.learning_rate("lr", lr))
        self.optimizers = {"optimizer": self.optimizer}

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.precision.autocast():
            x_logits, mu, logvar = self.model(x)
            parts = self.loss(x_logits.float(), x, mu.float(), logvar.float(), beta=self.beta)
        self.precision.minimize(parts["loss"], self.optimizer)
        return {k: v.detach() for k, v in parts.items()}

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x_logits, mu, logvar = self.model(x)
        parts = self.loss(x_logits.float(), x, mu.float(), logvar.float(), beta=self.beta)
        parts["mse"] = F.mse_loss(torch.sigmoid(x_logits), x)
        return parts


@dataclass
class VAESettings:
    """Defaults of notebook 02 (see its "Settings" cell for why these values). ``dataset`` and
    ``image_size``: what to train on (``labkit.datasets``); 1 x 28 x 28 images train the MLP of
    ``variant``, any other shape ``ConvVAE`` with the variant's ``latent_dim``."""

    variant: str = "default"
    epochs: int = field(default_factory=lambda: settings.pick(full=20, smoke=settings.SMOKE_EPOCHS))
    batch_size: int = 32
    lr: float = 1e-3
    beta: float = 1.0
    seed: int = 0
    precision: str = "auto"
    compile: bool = False
    dataset: str = "mnist"
    image_size: int | None = None

    def __post_init__(self):
        settings.one_of("variant", self.variant, VAE_VARIANTS)
        settings.whole_number("epochs", self.epochs, low=0)
        settings.whole_number("batch_size", self.batch_size)
        settings.learning_rate("lr", self.lr)
        settings.number("beta", self.beta, at_least=0, what="a number >= 0 (1 is the plain VAE)")
        settings.one_of("precision", self.precision, PRECISIONS)
        shape = datasets.check_dataset(self.dataset, self.image_size)
        if shape != MNIST_SHAPE:
            conv_plan(shape)  # an image size the convolutions cannot halve is refused now, not after loading

    def training(
        self,
        device: torch.device | str = "cpu",
        model_class: type = VAE,
        loss=vae_loss,
        image_shape: Sequence[int] | None = None,
    ) -> VAETraining:
        """A fresh VAE of ``variant`` on ``device`` with its training, as these settings describe it;
        ``model_class`` and ``loss`` are the network for 1 x 28 x 28 images and the ELBO (notebook 02
        passes its own); ``image_shape`` (default: the dataset's) picks ``ConvVAE`` for other shapes."""
        shape = image_shape or datasets.image_shape(self.dataset, self.image_size)
        model = network_for(shape, model_class, VAE, ConvVAE, **VAE_VARIANTS[self.variant])
        return VAETraining(model.to(device), lr=self.lr, beta=self.beta, loss=loss)


def vae_final(test: dict, history: History, model: torch.nn.Module) -> dict:
    """The ``final`` entry of a VAE's metrics.json from ``evaluate`` on the test split."""
    return {
        "test_neg_elbo_nats": test["neg_elbo"],
        "test_recon_nats": test["recon"],
        "test_kl_nats": test["kl"],
        "test_mse": test["mse"],
        **cost(history, model),
    }


def run_vae(
    cfg: VAESettings | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    *,
    model_class: type = VAE,
    loss=vae_loss,
    data: ImageData | None = None,
    callbacks=(),
) -> Trained | None:
    """Train a VAE variant of notebook 02 and write its figures and metrics.json; returns the trained
    run (None under torchrun on ranks other than 0). The run is called ``vae``, ``vae-<variant>``, and
    ``-beta<beta>`` is added when beta is not 1, the dataset after ``vae`` when it is not MNIST
    (``vae_run_name``). ``model_class`` and ``loss``: the network for 1 x 28 x 28 images and the ELBO
    (notebook 02 passes its own); ``data``: the images already loaded (default: ``cfg.dataset``);
    ``callbacks``: e.g. a live plot."""
    cfg = cfg or VAESettings()
    run, device = start_run(vae_run_name(cfg), cfg.seed, out, device)
    data = datasets.load_for(cfg, device, data)
    training = cfg.training(device, model_class, loss, data.image_shape)
    model = training.model
    start_at_mean_image(model.decoder, data.train_x)  # the untrained decoder draws the average image
    history = fit_in_run(run, training, data, cfg, progress, callbacks)
    if not distributed.is_main():
        return None  # under torchrun, rank 0 evaluates and writes the run
    torch.manual_seed(cfg.seed)  # the test ELBO draws z: make the reported number repeatable
    test = evaluate(training, data.test_x)
    title = f"VAE ({cfg.variant}) on {data.label}"
    with torch.no_grad():
        x = data.test_x[:10]
        run.save_figure(plots.loss_curves(history, plots.VAE_PANELS, title=title), "loss_curves")
        mu, _ = model.encode(x)
        run.save_figure(
            plots.reconstruction_grid(x, model.decode(mu), title=f"{title}: reconstructions"), "reconstructions"
        )
        run.save_figure(plots.image_grid(model.sample(32), title=f"{title}: samples from the prior"), "prior_samples")
        mu_all, _ = model.encode(data.test_x)
        if model.latent_dim == 2:
            if data.test_y is not None:  # the scatter colours the means by class
                scatter = plots.latent_scatter(mu_all, data.test_y, title=f"{title}: latent means")
                run.save_figure(scatter, "latent_scatter")
            run.save_figure(
                plots.manifold_grid(model.decode, title=f"{title}: decoded manifold", device=device), "manifold"
            )
        # A t-SNE of the latent means takes longer than ten epochs of training here; notebook 02
        # draws it, and notebook 04 draws it beside the AE's for the report.
        labelled = data.test_y is not None  # from a 1 to a 7; without labels between the first and last image
        a, b = (first_test_index(data, 1), first_test_index(data, 7)) if labelled else (0, data.n_test - 1)
        path = plots.linear_path(mu_all[a], mu_all[b], steps=10)
        run.save_figure(plots.interpolation_strip(model.decode(path), title=f"{title}: interpolation"), "interpolation")
    plots.close_all()
    final = vae_final(test, history, model)
    return run.record(model="vae", cfg=cfg, training=training, data=data, history=history, final=final, device=device)


def vae_run_name(cfg: VAESettings) -> str:
    """``vae``, then the dataset when it is not MNIST (``labkit.datasets.run_suffix``), ``-<variant>`` for
    variants other than the default and ``-beta<beta>`` when beta is not 1: ``vae-cifar10-latent2-beta4``."""
    name = "vae" + datasets.run_suffix(cfg.dataset, cfg.image_size)
    name = name if cfg.variant == "default" else f"{name}-{cfg.variant}"
    return name if cfg.beta == 1 else f"{name}-beta{cfg.beta:g}"


def first_test_index(data: ImageData, digit: int) -> int:
    """Index of the first test image of ``digit`` (for interpolation pictures)."""
    found = (data.test_y == digit).nonzero()
    if len(found) == 0:
        raise ValueError(f"the test split holds no image of digit {digit}")
    return int(found[0])
