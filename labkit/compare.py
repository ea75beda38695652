"""Notebook 04: the AE, the VAE, the MNIST GAN and the diffusion model (flow matching) on the same
data and seed, compared on measured numbers instead of opinions.

``trained`` (``labkit.experiments``) reuses the run that notebook 01, 02, 03 or ``python -m labkit train`` left in
the runs folder, loading its weights from the checkpoint, and trains what is missing. The measuring functions
are short on purpose: each is one idea of the comparison, explained in the notebook section of the
same name. Samples come from each training's ``draw`` where it has one (the GANs, diffusion).
"""

from __future__ import annotations

import time

import torch

from . import metrics, models
from .data import ImageData
from .engine import environment
from .engine.runs import Trained
from .engine.training import seconds_per_epoch

# Notebook 04 calls these as compare.trained(...), compare.default_settings(...): they live with the registry
# of recipes, which the doctor uses too, and are named here again (``X as X``: a deliberate re-export).
from .experiments import COMPARED as COMPARED
from .experiments import CONDITIONAL as CONDITIONAL
from .experiments import LIKELIHOOD_DEFINED, RECIPES
from .experiments import default_settings as default_settings
from .experiments import trained as trained
from .models import code_of, generate
from .plots import linear_path
from .report.tables import format_value, markdown_table

INTERPOLATION_PAIRS = ((1, 7), (3, 8), (4, 9), (0, 6), (2, 5))  # digits whose codes we walk between
DIGITS = 10


# --------------------------------------------------------------------------- measurements


def has_encoder(model: Trained) -> bool:
    """Whether the model encodes images into codes (the AE, the VAE) and so reconstructs them."""
    return hasattr(getattr(model.training, "model", None), "encode")


@torch.no_grad()
def reconstruction(models: dict[str, Trained], test_x: torch.Tensor) -> dict[str, dict[str, float]]:
    """Test reconstruction error of each model with an encoder (``has_encoder``: the AE, and the VAE decoding
    its posterior mean, no sampling), by name."""
    nets = {name: model.training.model for name, model in models.items() if has_encoder(model)}
    return {
        name: metrics.reconstruction_errors(lambda x, net=net: net.decode(code_of(net, x)), test_x)
        for name, net in nets.items()
    }


def _device(training) -> torch.device:
    return next(next(iter(training.modules.values())).parameters()).device


@torch.no_grad()
def samples(model: Trained, n: int, seed: int, reference: torch.Tensor | None = None) -> torch.Tensor:
    """n generated digits in [0, 1] on the CPU: the training's own ``draw`` where it has one (the GAN from
    its noise, the diffusion model with its sampler), the prior of a model that has one (the VAE's
    ``sample``), or, for a plain autoencoder, random codes drawn from a Gaussian fitted to the codes of
    ``reference`` images (notebook 01's recipe)."""
    if hasattr(model.training, "draw"):
        return model.training.draw(n, seed=seed).cpu()
    net = model.training.model
    device = next(net.parameters()).device
    g = torch.Generator().manual_seed(seed)
    if hasattr(net, "sample"):  # a prior to draw the codes from
        return net.decode(torch.randn(n, net.latent_dim, generator=g).to(device)).cpu()
    codes = net.encode(reference)
    z = torch.randn(n, codes.shape[1], generator=g).to(device) * codes.std(0) + codes.mean(0)
    return net.decode(z).cpu()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the GPU works asynchronously: wait for it before reading the clock


@torch.no_grad()
def timed_samples(
    model: Trained, n: int, seed: int, reference: torch.Tensor | None = None, warm_up: int = 8
) -> tuple[torch.Tensor, float]:
    """``samples(model, n, seed, reference)`` and the seconds it took per 1,000 samples (notebook 04,
    "Samples"). ``warm_up`` samples are drawn first and not counted, so that one-time start-up costs
    (the GPU loading its kernels) do not count as sampling; on a GPU the clock waits for it to finish."""
    if n < 1:
        raise ValueError(f"need at least one sample to time, not n={n}")
    device = _device(model.training)
    if warm_up:
        samples(model, min(warm_up, n), seed, reference)
    _synchronize(device)
    start = time.perf_counter()
    images = samples(model, n, seed, reference)
    _synchronize(device)
    return images, (time.perf_counter() - start) * 1000 / n


def network_evaluations(model: Trained) -> int:
    """Calls of a network per sample: the training's own count where its sampler calls the network many times
    (a diffusion model: ``labkit.diffusion.samplers.network_evaluations``, two per step where classifier-free
    guidance mixes a conditional and an unconditional prediction), one for a decoder or a generator."""
    return getattr(model.training, "network_evaluations", 1)


@torch.no_grad()
def conditional_samples(model: Trained, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n digits in [0, 1] on the CPU from a conditional model, asked for the digits 0-9 in turn, and
    those requested digits (n,): the training's ``draw`` where it has one (the cGAN, conditional
    diffusion with its guidance), the model's prior otherwise (the cVAE's, ``labkit.models.conditional_samples``)."""
    if hasattr(model.training, "draw"):
        digits = torch.arange(n, device=_device(model.training)) % DIGITS
        return model.training.draw(n, digits, seed=seed).cpu(), digits.cpu()
    images, digits = models.conditional_samples(model.training.model, n, seed=seed)
    return images.cpu(), digits.cpu()


def conditional_quality(model: Trained, classifier, real: torch.Tensor, n: int, seed: int = 0) -> dict:
    """``quality_and_diversity`` of a conditional model's samples and its conditional accuracy: how often
    the classifier reads each sample as the digit it was asked for (overall and per digit)."""
    fake, digits = conditional_samples(model, n, seed)
    asked_for = metrics.conditional_accuracy(fake.to(next(classifier.parameters()).device), digits, classifier)
    return {**quality_and_diversity(classifier, real, fake), **asked_for}


def memorised_fractions(
    generated: dict[str, torch.Tensor], train: torch.Tensor, test: torch.Tensor
) -> dict[str, float]:
    """For each entry of ``generated`` (name -> images in [0, 1]), the fraction of its images that
    ``labkit.metrics.memorisation`` calls memorised: closer to their nearest training image than 99 % of
    the held-out ``test`` images are to theirs (notebook 05, "Did it memorise?"). About 0.01 for new
    digits by construction, 1 for copies of training images. One call for all, so that the threshold
    (the test images' distances to the training set, the slow part) is computed once."""
    if not generated:
        raise ValueError("no samples to check for memorisation")
    found = metrics.memorisation(torch.cat([images.cpu() for images in generated.values()]), train, test)
    distances = found["nearest_train_distance"].split([len(images) for images in generated.values()])
    threshold = found["memorisation_threshold"]
    return {name: float((d < threshold).float().mean()) for name, d in zip(generated, distances)}


def quality_and_diversity(classifier, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    """``labkit.metrics.sample_quality`` (classifier Fréchet distance to the real digits, class
    coverage and its KL from uniform) and the diversity ratio of notebook 03."""
    return {
        **metrics.sample_quality(classifier, real, fake),
        "diversity_ratio": metrics.diversity_ratio(fake.cpu(), real.cpu())["diversity_ratio"],
    }


@torch.no_grad()
def path_smoothness(decoded: torch.Tensor, classifier) -> dict[str, float]:
    """Two numbers for one decoded interpolation path (steps, 1, 28, 28) in [0, 1]:

    * ``largest_step_ratio``: the largest pixel distance between neighbouring images divided by the
      mean one: 1 when the image changes evenly along the path, large when it jumps;
    * ``mid_path_confidence``: the classifier's mean top probability on the inner images: near 1
      when the images on the way still look like some digit, low for blends that are no digit.
    """
    flat = decoded.flatten(1).float()
    steps = (flat[1:] - flat[:-1]).norm(dim=1)
    inner = decoded[1:-1].to(next(classifier.parameters()).device)
    confidence = torch.softmax(classifier(inner), dim=1).max(1).values.mean()
    return {
        "largest_step_ratio": float(steps.max() / steps.mean().clamp_min(1e-12)),
        "mid_path_confidence": float(confidence),
    }


@torch.no_grad()
def interpolation(
    model: Trained, data: ImageData, classifier, steps: int = 10, seed: int = 0, measure=None
) -> tuple[dict[str, float], torch.Tensor]:
    """Mean ``measure(path, classifier)`` (default ``path_smoothness``; notebook 04 passes the one it
    defines) over straight latent paths: between the codes of the first test images of each pair in
    ``INTERPOLATION_PAIRS`` (AE, VAE: the posterior means), or between pairs of noise vectors (GAN).
    Also returns the first path's images for a figure. A model with neither an encoder nor a generator
    of its noise (diffusion: its sampler draws the starting noise itself) is refused."""
    measure = measure or path_smoothness
    if not any(hasattr(model.training, part) for part in ("generator", "model")):
        raise ValueError(
            f"{model.name} has no latent code that notebook 04 walks along: neither an encoder (AE, VAE) "
            "nor a generator of its noise (GAN)"
        )
    if hasattr(model.training, "generator"):
        G = model.training.sampling_generator  # the average of G's weights where the training keeps one
        g = torch.Generator().manual_seed(seed)
        ends = torch.randn(len(INTERPOLATION_PAIRS), 2, G.latent_dim, generator=g)
        paths = [(generate(G, linear_path(a, b, steps).to(next(G.parameters()).device)) + 1) / 2 for a, b in ends]
    else:
        net = model.training.model
        paths = []
        for a, b in INTERPOLATION_PAIRS:
            found = [(data.test_y == d).nonzero() for d in (a, b)]
            if any(len(f) == 0 for f in found):
                continue
            za, zb = code_of(net, data.test_x[[int(found[0][0]), int(found[1][0])]])
            paths.append(net.decode(linear_path(za, zb, steps)).cpu())
    if not paths:
        raise ValueError("no interpolation path: the test split lacks the digits of INTERPOLATION_PAIRS")
    scores = [measure(p, classifier) for p in paths]
    return {k: sum(s[k] for s in scores) / len(scores) for k in scores[0]}, paths[0]


def _mean_spread(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


def stability(model: Trained, last: int = 5) -> str:
    """One measured sentence on how steady training was, from the run's per-epoch history: the
    discriminator's loss for a GAN (a game), how often the test loss rose for the others (a minimisation)."""
    h = model.history
    if h and "train_d_loss" in h[-1]:
        tail = h[-last:]
        gap = tail[-1]["train_d_real"] - tail[-1]["train_d_fake"]
        return (
            f"D loss spread {_mean_spread([r['train_d_loss'] for r in tail]):.3f} over the last {len(tail)} "
            f"epochs; D(x) - D(G(z)) = {gap:.2f} at the end"
        )
    test = h.series("test_loss")
    rises = sum(b > a for a, b in zip(test, test[1:]))
    return f"test loss rose in {rises} of {max(len(test) - 1, 0)} epoch-to-epoch steps"


# --------------------------------------------------------------------------- the table


def comparison_rows(results: dict) -> list[tuple[str, ...]]:
    """The rows of the comparison table (aspect, then one column per model of ``COMPARED``: AE, VAE, GAN,
    diffusion) from ``results`` as notebook 04 collects them, each by model name: reconstruction (the models
    with an encoder), elbo and iwae (the likelihood bounds the notebook computed), quality, memorisation,
    smoothness (the models it walked along), stability, cost; and iwae_k."""
    rec, q, s, cost = results["reconstruction"], results["quality"], results["smoothness"], results["cost"]
    memorised, elbo, iwae = results["memorisation"], results["elbo"], results["iwae"]
    row = lambda aspect, f: (aspect, *(f(m) for m in COMPARED))  # noqa: E731

    def on_path(key):
        return lambda m: format_value(s[m][key], 3) if m in s else "n/a (not measured)"

    def reconstructed(key):
        return lambda m: format_value(rec[m][key]) if m in rec else "n/a (no encoder)"

    def bound(m):
        if m in elbo:
            return "{} ({} + {})".format(*(format_value(elbo[m][k]) for k in ("neg_elbo", "recon", "kl")))
        return "n/a (defined, not computed here)" if m in LIKELIHOOD_DEFINED else "n/a (not a likelihood model)"

    return [
        row("Reconstruction: test MSE per pixel", reconstructed("mse_per_pixel")),
        row("Reconstruction: test BCE, nats per image", reconstructed("bce_nats")),
        row("Likelihood bound: test -ELBO (recon + KL), nats", bound),
        row(
            f"Likelihood bound: importance-weighted, k = {results['iwae_k']}, nats",
            lambda m: format_value(iwae[m]) if m in iwae else "n/a",
        ),
        row(
            "Samples: Fréchet distance to test digits (classifier features, lower is better)",
            lambda m: format_value(q[m]["fid_classifier"]),
        ),
        row("Mode coverage: digits found among the samples (of 10)", lambda m: f"{q[m]['class_coverage']}"),
        row(
            "Mode coverage: KL of the class histogram from uniform, nats (0 = even, 2.30 = one digit)",
            lambda m: format_value(q[m]["class_kl_from_uniform"], 3),
        ),
        row("Sample diversity / real diversity", lambda m: format_value(q[m]["diversity_ratio"], 3)),
        row(
            "Memorisation: samples closer to a training digit than 99 % of test digits are (0.01 = new digits, "
            "1 = copies)",
            lambda m: format_value(memorised[m], 3),
        ),
        row(
            "Latent space: largest step / mean step along an interpolation (1 = even)",
            on_path("largest_step_ratio"),
        ),
        row(
            "Latent space: classifier confidence mid-path (digit-like in between)",
            on_path("mid_path_confidence"),
        ),
        row("Training stability", lambda m: results["stability"][m]),
        row(
            "Cost: seconds per epoch (on the device the run trained on)",
            lambda m: format_value(cost[m]["seconds_per_epoch"], 3),
        ),
        row("Cost: epochs trained", lambda m: f"{cost[m]['epochs']}"),
        row(
            "Cost: seconds to train, all epochs (on the device the run trained on)",
            lambda m: format_value(cost[m]["train_seconds"], 3),
        ),
        row(
            "Cost: seconds per 1,000 samples (on this notebook's device)",
            lambda m: format_value(cost[m]["sampling_seconds_per_1000"], 3),
        ),
        row("Cost: network evaluations per sample", lambda m: f"{cost[m]['network_evaluations']}"),
        row("Cost: parameters (trained)", lambda m: format_value(cost[m]["parameters"])),
    ]


def comparison_table(rows: list[tuple[str, ...]], header: tuple[str, ...] | None = None) -> str:
    """The comparison table as Markdown, built like every table of the report; ``header`` by default: the
    aspect, then each model of ``COMPARED`` by its label (AE, VAE, GAN, Diffusion)."""
    header = header or ("Aspect (measured)", *(RECIPES[name].label for name in COMPARED))
    return "\n".join(markdown_table(rows, header))


def trained_parameters(training) -> int:
    """Parameters that the training's optimisers update, each counted once: both networks of a GAN, the
    network of a diffusion model but not the running average of its weights that samples come from."""
    optimizers = getattr(training, "optimizers", {}).values()
    tensors = {id(p): p for o in optimizers for group in o.param_groups for p in group["params"]}
    if not tensors:  # a training without optimisers: every trainable parameter of its modules
        tensors = {id(p): p for m in training.modules.values() for p in m.parameters() if p.requires_grad}
    return sum(p.numel() for p in tensors.values())


def cost(model: Trained, seconds_per_1000: float = float("nan")) -> dict:
    """What a model costs (notebook 04, "Cost and stability"): seconds per epoch and in all (from the run's
    history, as measured on the device it trained on), epochs, ``seconds_per_1000`` samples (measured by
    ``timed_samples``; NaN: not measured), network evaluations per sample and trained parameters."""
    return {
        "seconds_per_epoch": seconds_per_epoch(model.history),
        "epochs": len(model.history),
        "train_seconds": float(sum(model.history.series("seconds"))) if model.history else float("nan"),
        "sampling_seconds_per_1000": seconds_per_1000,
        "network_evaluations": network_evaluations(model),
        "parameters": trained_parameters(model.training),
    }


def n_samples() -> int:
    """Samples per model for the sample-quality numbers (1,000 at full settings, 500 in smoke mode)."""
    return environment.pick(full=1000, smoke=500)
