"""One generic training loop for every model of the course, and the objectives it optimises.

``fit`` knows nothing about autoencoders or GANs: it slices batches from resident data, calls the
objective's ``train_step``, averages what the step reports over the epoch, evaluates on the test
split and hands each epoch's record to callbacks (live plot, per-epoch images).
The notebooks introduce it in their "Training" section.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import batches
from .losses import vae_loss


class Objective(Protocol):
    """What ``fit`` needs from a model: named modules, one optimisation step, one evaluation step.

    Both steps return per-batch means as 0-d tensors (kept on the device: no host sync per step).
    """

    name: str
    modules: dict[str, nn.Module]
    drop_last: bool

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def eval_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...


class History(list):
    """Per-epoch records (dicts) of a run; ``series('test_loss')`` gives one column."""

    def series(self, key: str) -> list[float]:
        return [r[key] for r in self if key in r]

    @property
    def last(self) -> dict:
        return self[-1] if self else {}


def check_lr(lr: float, what: str = "lr") -> float:
    """A learning rate must be a finite number > 0; returns it as a float."""
    if not isinstance(lr, (int, float)) or not lr > 0 or not math.isfinite(lr):
        raise ValueError(f"{what} must be a positive number such as 1e-3, got {lr!r}")
    return float(lr)


def check_beta(beta: float) -> float:
    """The KL weight of a (beta-)VAE must be a finite number >= 0; returns it as a float."""
    if not isinstance(beta, (int, float)) or not beta >= 0 or not math.isfinite(beta):
        raise ValueError(f"beta must be a number >= 0 (1 is the plain VAE), got {beta!r}")
    return float(beta)


class AutoencoderObjective:
    """Mean squared error between images and reconstructions (notebook 01, "Training")."""

    name = "ae"
    drop_last = False

    def __init__(self, model: nn.Module, lr: float = 1e-3):
        self.model = model
        self.modules = {"model": model}
        self.optimizer = torch.optim.Adam(model.parameters(), lr=check_lr(lr))

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = F.mse_loss(self.model(x), x)  # per pixel
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach()}

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        recon = self.model(x)
        return {"loss": F.mse_loss(recon, x),
                "bce": F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), x, reduction="sum") / len(x)}


class VAEObjective:
    """Negative ELBO (reconstruction + beta * KL) per image in nats (notebook 02, "The loss")."""

    name = "vae"
    drop_last = False

    def __init__(self, model: nn.Module, lr: float = 1e-3, beta: float = 1.0):
        self.model = model
        self.beta = check_beta(beta)
        self.modules = {"model": model}
        self.optimizer = torch.optim.Adam(model.parameters(), lr=check_lr(lr))

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x_logits, mu, logvar = self.model(x)
        parts = vae_loss(x_logits, x, mu, logvar, beta=self.beta)
        self.optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self.optimizer.step()
        return {k: v.detach() for k, v in parts.items()}

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x_logits, mu, logvar = self.model(x)
        parts = vae_loss(x_logits, x, mu, logvar, beta=self.beta)
        parts["mse"] = F.mse_loss(torch.sigmoid(x_logits), x)
        return parts


def _set_mode(objective: Objective, training: bool) -> None:
    for module in objective.modules.values():
        module.train(training)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(objective: Objective, x: torch.Tensor, y: torch.Tensor | None = None,
             batch_size: int = 1000) -> dict[str, float]:
    """Mean of each quantity ``eval_step`` reports over all of ``x`` (weighted by batch size).

    With labels ``y`` the step is called as ``eval_step(x, y)`` (the digit classifier needs them).
    """
    _set_mode(objective, training=False)
    sums: dict[str, torch.Tensor] = {}
    for batch in batches(*_with_labels(x, y), batch_size=batch_size, shuffle=False):
        batch = batch if isinstance(batch, tuple) else (batch,)
        for k, v in objective.eval_step(*batch).items():
            sums[k] = sums.get(k, 0) + v.float() * len(batch[0])
    return {k: float(v) / len(x) for k, v in sums.items()}


def _with_labels(x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    if y is not None and len(y) != len(x):
        raise ValueError(f"{len(x)} images but {len(y)} labels: pass labels that belong to the images")
    return (x,) if y is None else (x, y)


EpochCallback = Callable[[int, dict, "History"], None]


def fit(objective: Objective, train_x: torch.Tensor, test_x: torch.Tensor | None = None, *,
        epochs: int, batch_size: int, callbacks: Iterable[EpochCallback] = (),
        history: History | None = None, progress: bool = True,
        train_y: torch.Tensor | None = None, test_y: torch.Tensor | None = None) -> History:
    """Train ``objective`` for ``epochs`` epochs on resident images; return the per-epoch history.

    Each record holds ``epoch``, ``seconds`` (training time of the epoch), ``train_<k>`` for every
    quantity the train step reports (epoch means, not the last batch) and ``test_<k>`` for the
    evaluation on ``test_x``. ``callbacks`` are called as ``cb(epoch, record, history)``.
    Passing the ``history`` of an earlier call continues its epoch count. With labels
    (``train_y``, ``test_y``) the steps are called as ``train_step(x, y)``.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a whole number >= 0, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if train_x.shape[0] == 0:
        raise ValueError("train_x holds no images: check the data folder or the smoke-mode sizes")
    history = History() if history is None else history
    device = train_x.device
    start = len(history) + 1
    n_batches = (train_x.shape[0] // batch_size if objective.drop_last
                 else math.ceil(train_x.shape[0] / batch_size))
    epoch_bar = tqdm(range(start, start + epochs), desc=f"{objective.name} epochs", disable=not progress,
                     unit="epoch")
    for epoch in epoch_bar:
        _set_mode(objective, training=True)
        sums: dict[str, torch.Tensor] = {}
        seen = 0
        t0 = time.perf_counter()
        for batch in tqdm(batches(*_with_labels(train_x, train_y), batch_size=batch_size, shuffle=True,
                                  drop_last=objective.drop_last),
                          total=n_batches, desc=f"epoch {epoch}", leave=False, disable=not progress, unit="batch"):
            batch = batch if isinstance(batch, tuple) else (batch,)
            for k, v in objective.train_step(*batch).items():
                sums[k] = sums.get(k, 0) + v.float() * len(batch[0])
            seen += len(batch[0])
        _sync(device)
        record: dict = {"epoch": epoch, "seconds": time.perf_counter() - t0}
        record.update({f"train_{k}": float(v) / max(seen, 1) for k, v in sums.items()})
        bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise FloatingPointError(
                f"{objective.name}: {', '.join(bad)} became non-finite in epoch {epoch}. "
                "Lower the learning rate or check the input data for NaNs.")
        if test_x is not None and test_x.shape[0] > 0:
            record.update({f"test_{k}": v for k, v in evaluate(objective, test_x, test_y).items()})
        history.append(record)
        epoch_bar.set_postfix({k: f"{v:.4g}" for k, v in record.items()
                               if k in ("train_loss", "test_loss")})
        for callback in callbacks:
            callback(epoch, record, history)
    _set_mode(objective, training=False)
    return history


def seconds_per_epoch(history: History) -> float:
    """Mean training seconds per epoch, leaving out the first epoch when there are more (warm-up)."""
    seconds = history.series("seconds")
    if not seconds:
        return float("nan")
    return sum(seconds[1:]) / (len(seconds) - 1) if len(seconds) > 1 else seconds[0]
