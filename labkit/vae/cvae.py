"""The conditional VAE: the VAE of notebook 02 told which digit to draw. The one-hot label goes into
the encoder beside the image and into the decoder beside the code, so q(z|x, y) and p(x|z, y) both see
it and z is left with the style (slant, stroke width) rather than the class. Its training, settings,
the conditional-accuracy metric and the recipe, as ``run_cvae`` runs it.

All values are per image: summed over pixels or latent dimensions, averaged over the batch, in nats.
The reparameterisation, the KL term and the ELBO are ``labkit.vae``'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import datasets, metrics, plots
from ..data import ImageData, first_test_index
from ..engine import distributed, environment, optim, settings
from ..engine.family import DoctorCheck, Option, Recipe
from ..engine.loop import evaluate
from ..engine.runs import Trained, fit_in_run, start_run, training_cost
from ..engine.training import History, TrainingBase
from ..models import DEFAULT_HIDDEN, MNIST_SHAPE, FlatImageModel, mlp
from ..models import conditional_samples as conditional_samples  # the cVAE's prior, the digits in turn
from .evaluation import elbo_terms
from .losses import reparameterize, vae_loss

N_CLASSES = 10  # the ten digits
N_SAMPLES = (1000, 250)  # generated digits the classifier scores (full, smoke): the same number of each digit


class ConditionalVAE(FlatImageModel):
    """Conditional VAE with a Gaussian encoder q(z|x, y) and a Bernoulli decoder p(x|z, y), y the digit.

    Inputs as ``labkit.vae.VAE``, plus ``num_classes``; labels are class indices (B,) and enter both
    networks one-hot. The decoder returns logits; ``decode`` applies the sigmoid.
    """

    def __init__(
        self,
        latent_dim: int = 32,
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        image_shape: Sequence[int] = MNIST_SHAPE,
        num_classes: int = N_CLASSES,
    ):
        super().__init__(latent_dim, hidden, image_shape)
        self.num_classes = settings.whole_number("num_classes", num_classes, low=2)
        n_pixels = math.prod(image_shape)
        self.flatten = nn.Flatten()  # (B, 784)
        self.encoder = nn.Sequential(
            mlp([n_pixels + num_classes, *hidden]),  # (B, 784 + 10) -> (B, 512) -> (B, 256)
            nn.ReLU(),
        )
        self.to_mu = nn.Linear(hidden[-1], latent_dim)  # (B, 32)
        self.to_logvar = nn.Linear(hidden[-1], latent_dim)  # (B, 32)
        self.decoder = nn.Sequential(
            mlp([latent_dim + num_classes, *reversed(hidden), n_pixels]),  # (B, 42) -> (B, 256) -> (B, 512) -> (B, 784)
            nn.Unflatten(1, self.image_shape),  # (B, 1, 28, 28)
        )

    def one_hot(self, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Labels (B,) as one-hot rows (B, num_classes) in the dtype and on the device of ``like``."""
        if y.dim() != 1 or y.is_floating_point() or len(y) != len(like):
            raise ValueError(
                f"{type(self).__name__} expects one class index per image, shape ({len(like)},), integer; "
                f"got {tuple(y.shape)} of {y.dtype}"
            )
        return F.one_hot(y.to(like.device).long(), self.num_classes).to(like.dtype)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters of q(z|x, y): mean and log-variance, each (B, latent_dim)."""
        self._check_input(x)
        flat = self.flatten(x)
        h = self.encoder(torch.cat([flat, self.one_hot(y, flat)], dim=1))  # (B, 794) -> (B, 256)
        return self.to_mu(h), self.to_logvar(h)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, self.one_hot(y, z)], dim=1))  # (B, 42) -> (B, 1, 28, 28)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities (B, 1, 28, 28) of digits ``y`` (B,) for latent points z (B, latent_dim)."""
        return torch.sigmoid(self.decode_logits(z, y))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (reconstruction logits, mu, logvar); z is drawn with the reparameterisation trick."""
        mu, logvar = self.encode(x, y)
        z = reparameterize(mu, logvar)
        return self.decode_logits(z, y), mu, logvar

    @torch.no_grad()
    def sample(self, digits: torch.Tensor) -> torch.Tensor:
        """One image of each requested digit (N,), z from the prior N(0, I): (N, 1, 28, 28) probabilities."""
        device = next(self.parameters()).device
        digits = torch.as_tensor(digits, device=device)
        return self.decode(torch.randn(len(digits), self.latent_dim, device=device), digits)


class ConditionalVAETraining(TrainingBase):
    """Negative conditional ELBO per image in nats: -log p(x|z, y) + beta * KL(q(z|x, y) || N(0, I)).

    The CVAE bound of Sohn, Lee & Yan 2015, section 3 (their output is our image, their input our
    label), with the prior p(z|y) taken independent of the label, N(0, I), as they allow; equally the
    bound -L(x, y) for labelled data of Kingma et al. 2014's M2 (section 3.1) without its constant
    log p(y). ``labkit.vae.vae_loss`` computes it: the label only changes which networks produce the
    logits and the posterior. beta > 1 weighs the KL term more (Higgins et al. 2017; see ``CVAE_BETA``).
    """

    name = "cvae"

    def __init__(self, model: ConditionalVAE, lr: float = 1e-3, beta: float = 1.0):
        self.model = model
        self.beta = settings.number("beta", beta, at_least=0, what="a number >= 0 (1 is the plain cVAE)")
        self.modules = {"model": model}
        self.optimizer = optim.adam(model.parameters(), lr=settings.learning_rate("lr", lr))
        self.optimizers = {"optimizer": self.optimizer}

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.precision.autocast():
            x_logits, mu, logvar = self.model(x, y)
            parts = vae_loss(x_logits.float(), x, mu.float(), logvar.float(), beta=self.beta)
        self.precision.minimize(parts["loss"], self.optimizer)
        return {k: v.detach() for k, v in parts.items()}

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        x_logits, mu, logvar = self.model(x, y)
        parts = vae_loss(x_logits.float(), x, mu.float(), logvar.float(), beta=self.beta)
        parts["mse"] = F.mse_loss(torch.sigmoid(x_logits.float()), x)
        return parts


# beta: samples of the plain cVAE (beta = 1) are the requested digit only 3 times in 4 after 20 epochs on
# the 4,000 offline digits: with 32 latent dimensions, draws from the prior land where the posteriors do
# not, and the classifier cannot tell what they show. beta = 3 pushes the class out of z into the label:
# 0.98 of the samples are the digit asked for (three seeds), for 13 nats of test -ELBO (measured:
# beta 1 / 2 / 3 / 4 give 0.74 / 0.94 / 0.98 / 1.00; latent 2 with beta 1 gives 0.98 for 22 nats).
CVAE_BETA = 3.0


@dataclass
class CVAESettings(settings.RunSettings):
    """Defaults of the conditional VAE: the VAE's (notebook 02, "Settings") with the label added and
    ``beta`` = ``CVAE_BETA`` (see there why). ``dataset`` and ``image_size``: what to train on
    (``labkit.datasets``), a dataset with ten classes (mnist, fashion-mnist, kmnist, cifar10); the
    network stays an MLP on the flattened pixels whatever their shape."""

    epochs: int = field(default_factory=lambda: environment.pick(full=20, smoke=environment.SMOKE_EPOCHS))
    batch_size: int = 32
    lr: float = 1e-3
    beta: float = CVAE_BETA
    latent_dim: int = 32

    def __post_init__(self):
        super().__post_init__()
        settings.number("beta", self.beta, at_least=0, what="a number >= 0 (1 is the plain cVAE)")
        settings.whole_number("latent_dim", self.latent_dim)
        datasets.check_dataset(self.dataset, self.image_size)
        if not datasets.has_labels(self.dataset):
            raise ValueError(
                f"the conditional VAE learns p(x | z, y) and needs a class label for every image, and "
                f"{self.dataset} has none: choose one of {', '.join(datasets.LABELLED)}, or train the plain "
                "VAE (train vae), which needs no labels"
            )

    @property
    def run_name(self) -> str:
        """``cvae``, the dataset when it is not MNIST, and ``-beta<beta>`` when beta is not ``CVAE_BETA``."""
        name = "cvae" + datasets.run_suffix(self.dataset, self.image_size)
        return name if self.beta == CVAE_BETA else f"{name}-beta{self.beta:g}"

    def training(
        self, device: torch.device | str = "cpu", image_shape: Sequence[int] | None = None
    ) -> ConditionalVAETraining:
        """A fresh conditional VAE on ``device`` with its training, as these settings describe it, for
        images of ``image_shape`` (default: the dataset's)."""
        shape = image_shape or datasets.image_shape(self.dataset, self.image_size)
        model = ConditionalVAE(latent_dim=self.latent_dim, image_shape=shape).to(device)
        return ConditionalVAETraining(model, lr=self.lr, beta=self.beta)


# --------------------------------------------------------------------------- samples of the digits asked for


def cvae_sample_quality(model: ConditionalVAE, data: ImageData, n: int, seed: int = 0) -> dict:
    """What a cVAE run records about its samples: conditional accuracy by the cached digit classifier of
    ``data``, and the classifier Fréchet distance and class coverage exactly as an MNIST GAN run records them
    (``labkit.metrics.digit_sample_quality``)."""
    samples, digits = conditional_samples(model, n, seed)
    classifier, _ = metrics.digit_classifier(data, seed=seed)
    return {
        **metrics.conditional_accuracy(samples, digits, classifier),
        **metrics.digit_sample_quality(data, samples, seed=seed),
    }


# --------------------------------------------------------------------------- the recipe


def cvae_final(test: dict, quality: dict, history: History, model: nn.Module) -> dict:
    """The ``final`` entry of a cVAE's metrics.json: the VAE's (``evaluate`` on the test split, the cost)
    and the sample quality."""
    return {**elbo_terms(test), **training_cost(history, model), **quality}


def run_cvae(
    cfg: CVAESettings | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    *,
    data: ImageData | None = None,
    callbacks=(),
) -> Trained | None:
    """Train the conditional VAE (on MNIST by default) and write its figures and metrics.json; returns the
    trained run (None under torchrun on ranks other than 0). The run is called ``cfg.run_name``. ``data``:
    the labelled images already loaded (default: ``cfg.dataset``); ``callbacks``: e.g. a live plot. The
    sample quality (digit classifier) is measured on 1 x 28 x 28 images only (the MNIST family)."""
    cfg = cfg or CVAESettings()
    run, device = start_run(cfg.run_name, cfg.seed, out, device)
    data = datasets.load_for(cfg, device, data)
    training = cfg.training(device, data.image_shape)
    model = training.model
    history = fit_in_run(run, training, data, cfg, progress, callbacks, labels=True)
    if not distributed.is_main():
        return None  # under torchrun, rank 0 evaluates and writes the run
    torch.manual_seed(cfg.seed)  # the test ELBO draws z: make the reported number repeatable
    test = evaluate(training, data.test_x, data.test_y)
    title = f"cVAE on {data.label}"
    with torch.no_grad():
        x, y = data.test_x[:10], data.test_y[:10]
        run.save_figure(plots.loss_curves(history, plots.VAE_PANELS, title=title), "loss_curves")
        mu, _ = model.encode(x, y)
        run.save_figure(
            plots.reconstruction_grid(x, model.decode(mu, y), title=f"{title}: reconstructions"), "reconstructions"
        )
        grid, _ = conditional_samples(model, 100, seed=cfg.seed)  # the digits 0-9 in turn, ten times
        grid = grid.view(10, N_CLASSES, *grid.shape[1:]).transpose(0, 1).flatten(0, 1)  # row d: ten draws of d
        kind = "digit" if data.image_shape == MNIST_SHAPE else "class"
        run.save_figure(plots.image_grid(grid, nrow=10, title=f"{title}: one row per {kind} 0-9"), "digit_grid")
        seven = first_test_index(data, 7)
        x7, y7 = data.test_x[seven : seven + 1], data.test_y[seven : seven + 1]
        mu7, _ = model.encode(x7, y7)
        digits = torch.arange(N_CLASSES, device=device)
        styled = model.decode(mu7.expand(N_CLASSES, -1), digits)  # the 7's code, decoded as every digit
        run.save_figure(
            plots.image_grid(torch.cat([x7, styled]), nrow=N_CLASSES + 1, title=f"{title}: a test 7, its style as 0-9"),
            "style_transfer",
        )
    plots.close_all()
    quality = {}  # the digit classifier reads 1 x 28 x 28 images only
    if data.image_shape == MNIST_SHAPE:
        quality = cvae_sample_quality(model, data, environment.pick(*N_SAMPLES), seed=cfg.seed)
    final = cvae_final(test, quality, history, model)
    return run.record(model="cvae", cfg=cfg, training=training, data=data, history=history, final=final, device=device)


def remeasure_cvae(training: ConditionalVAETraining, data: ImageData, cfg: CVAESettings) -> dict[str, float]:
    """The test -ELBO of a student's weights given the test labels, with ``run_cvae``'s seed (``labkit.grade``)."""
    torch.manual_seed(cfg.seed)
    return {"test_neg_elbo_nats": evaluate(training, data.test_x, data.test_y)["neg_elbo"]}


RECIPE = Recipe(
    "cvae",
    run_cvae,
    CVAESettings,
    options=(
        Option("beta", "cVAE: weight of the KL term", float),
        Option("latent_dim", "cVAE: size of the latent code", int),
    ),
    doctor=(DoctorCheck.of("cvae", CVAESettings, "labelled digits"),),
    remeasure=remeasure_cvae,
    label="cVAE",
)
