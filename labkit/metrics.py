"""Measured numbers for comparing models: reconstruction error, a digit classifier,
a classifier-based Fréchet distance and class coverage (notebook 04_compare, "Measuring").

Everything is computed on the test split, per image, with a fixed seed where sampling is involved.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .data import ImageData, batches
from .engine import distributed, environment, files
from .engine.training import TrainingBase
from .losses import bernoulli_nll_of_probabilities
from .models import MNIST_SHAPE, classes_in_turn

CLASSIFIER_VERSION = 1  # bump when DigitClassifier or its training recipe changes: caches retrain


# --------------------------------------------------------------------------- reconstruction and ELBO


@torch.no_grad()
def reconstruction_errors(reconstruct, x: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
    """MSE per pixel and binary cross-entropy per image (nats) of ``reconstruct(x)`` against x.

    ``reconstruct`` maps images to reconstructed pixel values in [0, 1]: the AE itself, or for a VAE
    ``lambda x: vae.decode(vae.encode(x)[0])`` (decoding the posterior mean, no sampling).
    """
    mse = bce = 0.0
    for xb in batches(x, batch_size=batch_size, shuffle=False):
        r = reconstruct(xb).float()
        mse += F.mse_loss(r.clamp(1e-6, 1 - 1e-6), xb, reduction="sum").item()
        bce += bernoulli_nll_of_probabilities(r, xb).sum().item()
    n = len(x)
    return {"mse_per_pixel": mse / x[0].numel() / n, "bce_nats": bce / n}


# --------------------------------------------------------------------------- the digit classifier


class DigitClassifier(nn.Module):
    """A small CNN for MNIST; its 128-d penultimate layer is the feature space of the Fréchet distance.
    ``features(x)`` gives (B, 128); ``forward(x)`` class logits (B, 10); ``num_features`` tells torchmetrics."""

    num_features = 128

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),  # (B, 16, 28, 28)
            nn.MaxPool2d(2),  # (B, 16, 14, 14)
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),  # (B, 32, 14, 14)
            nn.MaxPool2d(2),  # (B, 32, 7, 7)
            nn.Flatten(),  # (B, 1568)
            nn.Dropout(0.25),
            nn.Linear(32 * 7 * 7, self.num_features),
            nn.ReLU(),  # (B, 128)
        )
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(self.num_features, 10))  # (B, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ClassifierTraining(TrainingBase):
    """Cross-entropy on digit labels, for ``labkit.engine.loop.fit`` with ``train_y``/``test_y``; in mixed
    precision on a GPU like every other training."""

    name = "classifier"

    def __init__(self, model: DigitClassifier, lr: float = 1e-3):
        self.model = model
        self.modules = {"model": model}
        # PyTorch's default Adam, not ``engine.optim.adam``: the classifier is the measuring instrument of the
        # Fréchet distances; its training stays as it was when the figures in benchmarks/results were measured.
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.optimizers = {"optimizer": self.optimizer}

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.precision.autocast():
            logits = self.model(x).float()
            loss = F.cross_entropy(logits, y)
        self.precision.minimize(loss, self.optimizer)
        return {"loss": loss.detach(), "accuracy": (logits.argmax(1) == y).float().mean()}

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.model(x).float()
        return {"loss": F.cross_entropy(logits, y), "accuracy": (logits.argmax(1) == y).float().mean()}


def _fingerprint(data: ImageData, epochs: int, seed: int) -> str:
    h = hashlib.sha1(f"v{CLASSIFIER_VERSION}-e{epochs}-s{seed}-{data.source}".encode())
    for t in (data.train_x, data.train_y, data.test_x, data.test_y):
        t = (t * 255).round().to(torch.uint8) if t.is_floating_point() else t  # images as bytes, labels as they are
        h.update(t.cpu().numpy().tobytes())
    return h.hexdigest()[:16]


_KEPT_IN: list[Path] = []  # set by ``classifier_cache``: where ``digit_classifier`` keeps what it trains


@contextlib.contextmanager
def classifier_cache(folder: str | Path) -> Iterator[Path]:
    """Inside the block, ``digit_classifier`` keeps the classifiers it trains in ``folder`` instead of
    under the data root (where it still looks for one trained before, and writes nothing): the grader
    keeps its classifier under its ``--out`` folder, as it promises to write nothing elsewhere."""
    _KEPT_IN.append(Path(folder))
    try:
        yield _KEPT_IN[-1]
    finally:
        _KEPT_IN.pop()


def digit_classifier(
    data: ImageData, epochs: int = 6, seed: int = 0, cache_dir: str | Path | None = None, progress: bool = False
) -> tuple[DigitClassifier, float]:
    """The trained digit classifier for ``data`` and its test accuracy, cached under the data root
    (or in ``cache_dir``, or the folder of an enclosing ``classifier_cache``).

    The cache file is named after a fingerprint of the images and labels, so a change of data
    (another source, smoke mode) trains a new classifier. Weights are loaded with
    ``weights_only=True``: a cache file cannot run code.
    """
    from .engine.loop import evaluate, fit

    device = data.train_x.device
    if cache_dir is not None:
        cache_dir, look_in = Path(cache_dir), [Path(cache_dir)]
    elif _KEPT_IN:
        cache_dir, look_in = _KEPT_IN[-1], [_KEPT_IN[-1], environment.data_root() / "cache"]
    else:
        cache_dir = environment.data_root() / "cache"
        look_in = [cache_dir]
    name = f"mnist-classifier-{_fingerprint(data, epochs, seed)}.pt"
    path = cache_dir / name
    cached = next((folder / name for folder in look_in if (folder / name).is_file()), None)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # leave the caller's RNG alone
        torch.manual_seed(seed)
        model = DigitClassifier().to(device)
        if cached is not None:
            saved = torch.load(cached, map_location="cpu", weights_only=True)
            model.load_state_dict(saved["state_dict"])
            return model.eval(), float(saved["test_accuracy"])
        print(f"labkit: training the digit classifier for this data once ({epochs} epochs); it is cached as {path}")
        training = ClassifierTraining(model)
        # float32 on every device: the judge of sample quality should score alike wherever it was trained;
        # alone: under torchrun rank 0 measures the samples after the other ranks have finished
        with distributed.alone():
            fit(
                training,
                data.train_x,
                epochs=epochs,
                batch_size=64,
                train_y=data.train_y,
                progress=progress,
                precision="fp32",
            )
    accuracy = evaluate(training, data.test_x, data.test_y)["accuracy"]
    model.eval()
    cache_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "test_accuracy": accuracy}, buffer)
    files.write_bytes(path, buffer.getvalue())
    return model, accuracy


# --------------------------------------------------------------------------- sample quality


class _Features(nn.Module):
    """Wraps the classifier's penultimate layer as the feature module torchmetrics expects."""

    def __init__(self, classifier: DigitClassifier):
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x.float())


def _check_images(images: torch.Tensor, what: str) -> None:
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"{what} must be MNIST-shaped images (N, 1, 28, 28) in [0, 1], got {tuple(images.shape)}")
    if len(images) < 2:
        raise ValueError(f"{what} needs at least 2 images to estimate a covariance, got {len(images)}")


@torch.no_grad()
def frechet_distance(
    classifier: DigitClassifier, real: torch.Tensor, fake: torch.Tensor, batch_size: int = 500
) -> float:
    """Fréchet distance between real and generated digits in the classifier's feature space.

    The FID of Heusel et al. 2017 with the MNIST classifier in place of Inception, computed by
    torchmetrics' ``FrechetInceptionDistance(feature=...)``. Images (N, 1, 28, 28) in [0, 1].
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    _check_images(real, "real")
    _check_images(fake, "fake")
    classifier.eval()
    # sync_on_compute=False: under torchrun rank 0 alone measures; the other ranks have no samples to add
    fid = FrechetInceptionDistance(feature=_Features(classifier), normalize=True, sync_on_compute=False).to(real.device)
    for images, is_real in ((real, True), (fake, False)):
        for xb in batches(images, batch_size=batch_size, shuffle=False):
            fid.update(xb, real=is_real)
    return max(float(fid.compute()), 0.0)


@torch.no_grad()
def class_coverage(classifier: DigitClassifier, samples: torch.Tensor) -> dict:
    """Which digits the classifier sees among the samples: how many of the 10, and how unevenly.

    ``kl_from_uniform`` = KL(sample class histogram || uniform) in nats: 0 when every digit is
    equally common, log 10 ≈ 2.303 when all samples are one digit (total mode collapse).
    """
    _check_images(samples, "samples")
    classifier.eval()
    predicted = torch.cat([classifier(xb).argmax(1) for xb in batches(samples, batch_size=500, shuffle=False)])
    counts = torch.bincount(predicted, minlength=10).double()
    p = counts / counts.sum()
    nonzero = p > 0
    kl = float((p[nonzero] * torch.log(p[nonzero] * 10)).sum())
    return {"classes_covered": int(nonzero.sum()), "kl_from_uniform": kl, "histogram": counts.long().tolist()}


def sample_quality(classifier: DigitClassifier, real: torch.Tensor, samples: torch.Tensor) -> dict:
    """Classifier Fréchet distance of generated digits in [0, 1] to ``real`` ones, the number of
    digits found among them and the KL of their class histogram from uniform (notebook 04, "Samples")."""
    samples = samples.to(real.device)
    coverage = class_coverage(classifier, samples)
    return {
        "fid_classifier": frechet_distance(classifier, real, samples),
        "class_coverage": coverage["classes_covered"],
        "class_kl_from_uniform": coverage["kl_from_uniform"],
    }


def digit_sample_quality(data: ImageData, samples: torch.Tensor, seed: int = 0) -> dict:
    """``sample_quality`` against the test digits of ``data`` with its cached classifier, plus that
    classifier's test accuracy: the numbers an MNIST GAN run records in its metrics.json."""
    classifier, accuracy = digit_classifier(data, seed=seed)
    return {**sample_quality(classifier, data.test_x, samples), "classifier_test_accuracy": accuracy}


@torch.no_grad()
def conditional_accuracy(images: torch.Tensor, requested: torch.Tensor, classifier: nn.Module) -> dict:
    """How often ``classifier`` reads each generated image (N, 1, 28, 28) in [0, 1], on the classifier's
    device, as the digit it was generated for (``requested``, (N,)): overall, and per requested digit
    (NaN for a digit never asked for). ``digit_classifier`` gives the classifier. Every conditional model's
    judge: the cVAE and conditional GAN (notebooks 02, 03), the guided diffusion model (notebook 05)."""
    if len(images) != len(requested) or len(images) == 0:
        raise ValueError(f"need one requested digit per image, got {len(images)} images and {len(requested)} digits")
    classifier.eval()
    chunks = batches(images, batch_size=500, shuffle=False)
    predicted = torch.cat([classifier(xb.float()).argmax(1) for xb in chunks])
    requested = requested.to(predicted.device).long()
    hit = (predicted == requested).double()
    asked = torch.bincount(requested, minlength=10).double()
    hits = torch.bincount(requested, weights=hit, minlength=10)
    per_digit = torch.where(asked > 0, hits / asked.clamp(min=1), torch.full_like(asked, float("nan")))
    return {"conditional_accuracy": float(hit.mean()), "conditional_accuracy_per_digit": per_digit.tolist()}


def drawn_class_accuracy(images: torch.Tensor, num_classes: int, data: ImageData, seed: int = 0) -> dict:
    """``conditional_accuracy`` of images (N, 1, 28, 28) in [0, 1], on any device, drawn for the classes 0, 1,
    ..., ``num_classes`` - 1 in turn, as a conditional model's ``draw`` asks for them (``classes_in_turn``),
    judged by the digit classifier of ``data`` trained with ``seed``: what a cGAN's run records, and what
    ``labkit.grade`` measures again on a student's weights."""
    classifier, _ = digit_classifier(data, seed=seed)
    device = next(classifier.parameters()).device
    return conditional_accuracy(images.to(device), classes_in_turn(len(images), num_classes), classifier)


def judged_by_digit_classifier(data: ImageData) -> bool:
    """Whether ``digit_classifier`` can judge samples of ``data``: 28x28 grey images with labels (the MNIST family)."""
    return data.image_shape == MNIST_SHAPE and data.test_y is not None


class ConditionalAccuracyPerEpoch:
    """A ``fit`` callback: after every epoch, the ``conditional_accuracy`` of ``n`` samples of ``training.draw`` (the
    classes in turn), written into the epoch's record, so the history, its checkpoint and metrics.json keep the
    curve. Notebook 03, "Why the label is heard late"."""

    def __init__(self, training: TrainingBase, data: ImageData, num_classes: int = 10, n: int = 500, seed: int = 0):
        if not judged_by_digit_classifier(data):
            raise ValueError(
                f"a digit classifier reads the conditional accuracy: {data.label} are not labelled 28x28 digits"
            )
        self.training, self.data, self.num_classes, self.n, self.seed = training, data, num_classes, n, seed

    def __call__(self, epoch: int, record: dict, history) -> None:
        images = self.training.draw(self.n, seed=self.seed)  # (n, 1, 28, 28) in [0, 1], the classes in turn
        accuracy = drawn_class_accuracy(images, self.num_classes, self.data, seed=self.seed)
        record["conditional_accuracy"] = accuracy["conditional_accuracy"]


INCEPTION_DOWNLOAD_TIMEOUT = 20  # seconds before giving up on the Inception weights


def inception_fid(real: torch.Tensor, fake: torch.Tensor) -> dict:
    """Inception FID (Heusel et al. 2017) of colour images in [0, 1] through torchmetrics, or, when
    the Inception weights cannot be had (offline, no ``torch-fidelity``), why it was not computed.

    Returns ``{"inception_fid": value}`` or ``{"inception_fid_not_computed": reason}``: the report
    shows either. With a few hundred images the number is biased upwards; compare runs of the same size.
    """
    if environment.offline():
        return {"inception_fid_not_computed": "offline (LABKIT_OFFLINE=1): the Inception weights cannot be downloaded"}
    import socket

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(INCEPTION_DOWNLOAD_TIMEOUT)
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        fid = FrechetInceptionDistance(feature=2048, normalize=True, sync_on_compute=False).to(real.device)
        for images, is_real in ((real, True), (fake.to(real.device), False)):
            for xb in batches(images, batch_size=100, shuffle=False):
                fid.update(xb.expand(-1, 3, -1, -1), real=is_real)
        return {"inception_fid": float(fid.compute())}
    except (ImportError, ModuleNotFoundError) as e:
        return {"inception_fid_not_computed": f"torch-fidelity is not installed ({e}); pip install torch-fidelity"}
    except (OSError, RuntimeError, ValueError) as e:
        return {"inception_fid_not_computed": f"the Inception weights could not be loaded ({str(e)[:160]})"}
    finally:
        socket.setdefaulttimeout(previous)


def diversity(images: torch.Tensor, max_images: int = 1000) -> float:
    """Mean Euclidean distance between two different images of the batch (pixels flattened). Equal images
    give 0. Compare generated and real images in the same value range."""
    flat = images[:max_images].detach().float().flatten(1).cpu()
    n = flat.shape[0]
    if n < 2:
        raise ValueError(f"diversity needs at least 2 images, got {n}")
    distances = torch.cdist(flat, flat)
    return float(distances.sum() / (n * (n - 1)))  # the diagonal is zero


def diversity_ratio(fake: torch.Tensor, real: torch.Tensor, max_images: int = 1000) -> dict[str, float]:
    """A classifier-free mode-collapse signal: diversity of generated samples / diversity of real ones, both in
    [0, 1] pixels. About 1: samples differ from each other as much as real images do. Well below 1 (say < 0.7):
    samples resemble each other, the generator covers few modes. Notebook 03, "Mode collapse"."""
    d_fake, d_real = diversity(fake, max_images), diversity(real, max_images)
    return {"diversity_ratio": d_fake / d_real, "sample_diversity": d_fake, "real_diversity": d_real}


# --------------------------------------------------------------------------- memorisation


def nearest_neighbours(
    queries: torch.Tensor, references: torch.Tensor, chunk: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image of ``queries`` (N, C, H, W), the Euclidean distance in pixel space to its nearest image
    of ``references`` (M, C, H, W) and that image's index: ((N,), (N,)), on the CPU."""
    flat_refs = references.flatten(1).float()
    distances, indices = [], []
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start : start + chunk].flatten(1).float().to(flat_refs.device), flat_refs)
        nearest = d.min(dim=1)
        distances.append(nearest.values.cpu())
        indices.append(nearest.indices.cpu())
    return torch.cat(distances), torch.cat(indices)


def memorisation(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor, percentile: float = 1.0) -> dict:
    """Does a generator copy its training images? (Notebook 05, "Did it memorise?") A sample counts as
    memorised when it is closer to its nearest training image than ``percentile`` per cent of held-out test
    images are to theirs: held-out digits score about percentile / 100 by construction, copies of training
    images score 1. A low Fréchet distance alone cannot tell (Theis et al. 2016, section 3.3: a model that
    stores its training set scores perfectly). Images in [0, 1]. Returns ``memorised_fraction``, the
    ``memorisation_threshold`` distance, and per sample the distances and indices of the nearest training
    image (for the figure of the closest pairs)."""
    test_distances, _ = nearest_neighbours(test, train)
    threshold = float(torch.quantile(test_distances, percentile / 100))
    distances, indices = nearest_neighbours(samples, train)
    return {
        "memorised_fraction": float((distances < threshold).float().mean()),
        "memorisation_threshold": threshold,
        "nearest_train_distance": distances,
        "nearest_train_index": indices,
    }
