"""The training loop of the course, on one screen: ``fit`` runs the epochs, calls the training's
``train_step`` on every batch, averages what the steps report, evaluates on the test images and
hands each epoch's record to callbacks. Notebook 01, "Training", walks through it.

``labkit.engine.harness`` holds what wraps the loop (resuming from a checkpoint, several GPUs, the NaN
watch, progress bars). A *training* (``labkit.ae.AutoencoderTraining``, ``labkit.vae.VAETraining``,
``labkit.gan.GANTraining``) holds a model, its optimiser and its steps; the loss it minimises is its objective.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from ..data import batches
from .checkpoint import Checkpoint
from .harness import Harness, with_labels
from .precision import FULL_PRECISION, Precision


class History(list):
    """Per-epoch records (dicts) of a run; ``series('test_loss')`` gives one column."""

    def series(self, key: str) -> list[float]:
        return [r[key] for r in self if key in r]

    @property
    def last(self) -> dict:
        return self[-1] if self else {}


class Training(Protocol):
    """What ``fit`` needs from a model: named modules, one optimisation step, one evaluation step.

    Both steps return per-batch means as 0-d tensors (kept on the device: no host sync per step).
    Optional: ``optimizers`` (name -> optimiser, saved in checkpoints), ``precision`` (set by
    ``fit``), ``plan(steps)`` (called once before training with the number of steps of the whole run,
    resumed epochs included, e.g. to schedule the learning rate) and ``epoch_end(record, history)``
    (called after each epoch, e.g. to warn).
    """

    name: str
    modules: dict[str, nn.Module]
    drop_last: bool

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def eval_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...


class TrainingBase:
    """Shared defaults of the course's trainings: float32 until ``fit`` sets ``precision``."""

    precision: Precision = FULL_PRECISION
    drop_last = False

    def plan(self, steps: int) -> None:
        """Called by ``fit`` before the first step with the steps the whole run takes; nothing by default."""

    def epoch_end(self, record: dict, history: History) -> None:
        """Called by ``fit`` after each epoch; nothing by default."""


EpochCallback = Callable[[int, dict, History], None]


# fmt: off
def fit(training: Training, train_x: torch.Tensor, test_x: torch.Tensor | None = None, *, epochs: int,
        batch_size: int, callbacks: Iterable[EpochCallback] = (), history: History | None = None,
        progress: bool = True, train_y: torch.Tensor | None = None, test_y: torch.Tensor | None = None,
        checkpoint: str | Path | Checkpoint | None = None, config: dict | None = None, precision: str = "auto",
        compile: bool = False) -> History:
    """Train ``training`` for ``epochs`` epochs on resident images; return the per-epoch history.

    A record holds ``epoch``, ``seconds`` (training time), ``train_<k>`` for every quantity the steps
    report (epoch means) and ``test_<k>`` from ``evaluate`` on ``test_x``; ``callbacks`` get
    ``(epoch, record, history)``. With labels the steps are called as ``train_step(x, y)``.
    ``checkpoint`` (a file or run folder) is saved after every epoch and resumed from when it holds
    more epochs than ``history``; ``config`` (the settings) must then match. ``precision``: auto,
    fp32, bf16 or fp16 (``labkit.engine.precision``); ``compile=True`` compiles the modules. Under
    ``torchrun`` every process trains on its share of ``train_x`` (``labkit.engine.harness``).
    """
    history = History() if history is None else history
    with Harness(training, train_x, train_y, test_x, epochs=epochs, batch_size=batch_size, history=history,
                 callbacks=callbacks, progress=progress, checkpoint=checkpoint, config=config,
                 precision=precision, compile=compile) as harness:
        for epoch in harness.epochs():                     # resumes where a checkpoint left off
            set_mode(training, train=True)
            sums, seen, start = {}, 0, time.perf_counter()
            for batch in harness.batches(epoch):           # shuffled; under torchrun this process's share
                out = training.train_step(*batch)          # zero_grad, loss, backward, step
                harness.watch(out)                         # stops the run if a loss became NaN or infinite
                for key, value in out.items():
                    sums[key] = sums.get(key, 0) + value.float() * len(batch[0])
                seen += len(batch[0])
            record = {"epoch": epoch, "seconds": time.perf_counter() - start}
            record.update({f"train_{key}": float(total) / seen for key, total in sums.items()})
            if test_x is not None and len(test_x) > 0:
                record.update({f"test_{key}": value for key, value in evaluate(training, test_x, test_y).items()})
            harness.end_epoch(record)                      # history, callbacks, checkpoint
    set_mode(training, train=False)
    return history
# fmt: on


@torch.no_grad()
def evaluate(
    training: Training, x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 1000
) -> dict[str, float]:
    """Mean of each quantity ``eval_step`` reports over all of ``x`` (weighted by batch size).

    With labels ``y`` the step is called as ``eval_step(x, y)`` (the digit classifier needs them).
    """
    set_mode(training, train=False)
    sums: dict[str, torch.Tensor] = {}
    precision = getattr(training, "precision", FULL_PRECISION)
    for batch in batches(*with_labels(x, y), batch_size=batch_size, shuffle=False):
        batch = batch if isinstance(batch, tuple) else (batch,)
        with precision.autocast():
            step = training.eval_step(*batch)
        for k, v in step.items():
            sums[k] = sums.get(k, 0) + v.float() * len(batch[0])
    return {k: float(v) / len(x) for k, v in sums.items()}


def set_mode(training: Training, train: bool) -> None:
    """Every module of the training in training mode (dropout, batch statistics) or evaluation mode."""
    for module in training.modules.values():
        module.train(train)


def seconds_per_epoch(history: History) -> float:
    """Mean training seconds per epoch, leaving out the first epoch when there are more (warm-up)."""
    seconds = history.series("seconds")
    if not seconds:
        return float("nan")
    return sum(seconds[1:]) / (len(seconds) - 1) if len(seconds) > 1 else seconds[0]
