"""What a training of the course is: the ``Training`` protocol that ``labkit.engine.loop.fit`` drives, the shared
defaults of the course's trainings (``TrainingBase``), the precision their steps run in (``Precision``), and the
``History`` of a run.

Mixed precision on whatever device trains: bfloat16 where the GPU has it natively, float16 with a gradient scaler
on older GPUs (the T4 of Colab and Kaggle), float32 on the CPU. ``fit(..., precision="auto")`` gives every training
a ``Precision``; notebook 01, "Training", and notebook 03's adversarial step show what it does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from . import settings
from .settings import PRECISIONS


class Precision:
    """Mixed precision for one device: an autocast context for forward passes and a gradient
    scaler for float16 (bfloat16 needs none). ``Precision("cpu", "fp32")`` changes nothing.

    ``mode``: ``"auto"`` is bfloat16 on a CUDA GPU that supports it natively, float16 with a
    gradient scaler on older GPUs (Colab's and Kaggle's T4), float32 elsewhere.
    Notebook 01, "Training", says what it does to a run.
    """

    def __init__(self, device: torch.device | str = "cpu", mode: str = "auto"):
        settings.one_of("precision", mode, PRECISIONS, "auto: mixed precision on a CUDA GPU, float32 elsewhere")
        self.device_type = torch.device(device).type
        if mode == "auto":
            mode = "fp32"
            if self.device_type == "cuda":
                mode = "bf16" if native_bf16() else "fp16"
        self.mode = mode
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
        # only float16 needs a scaler; a disabled one is made for the CPU, which every torch knows
        self.scaler = torch.amp.GradScaler(self.device_type if mode == "fp16" else "cpu", enabled=mode == "fp16")

    def __repr__(self) -> str:
        return f"Precision({self.device_type!r}, {self.mode!r})"

    def autocast(self):
        """Context for forward passes: matrix products in ``dtype``, losses kept in float32.

        In float32 it is a context that does nothing at all (not a disabled ``torch.autocast``, which
        older torch refuses to create on some devices, Apple's MPS among them)."""
        if self.mode == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def minimize(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """One optimiser step on ``loss``: zero the gradients, backpropagate (under float16 the
        loss is scaled up so that small gradients do not underflow, and a step whose gradients
        overflowed is skipped), step, and adjust the scale."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


FULL_PRECISION = Precision("cpu", "fp32")


def native_bf16() -> bool:
    """True when the CUDA GPU computes in bfloat16 natively (Ampere and newer: L4, A100, H100), so
    ``auto`` picks bfloat16; the T4 emulates it slowly, so ``auto`` picks float16 with a scaler there."""
    if not torch.cuda.is_available():
        return False
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch before 2.4 has no including_emulation and reports native support only
        return torch.cuda.is_bf16_supported()


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
