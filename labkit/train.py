"""One generic training loop for every model of the course, and the objectives it optimises.

``fit`` knows nothing about autoencoders or GANs: it slices batches from resident data, calls the
objective's ``train_step``, averages what the step reports over the epoch, evaluates on the test
split and hands each epoch's record to callbacks (live plot, per-epoch images).
The notebooks introduce it in their "Training" section.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import distributed, settings
from .checkpoint import Checkpoint
from .data import batches
from .losses import bernoulli_nll_of_probabilities, vae_loss


class Objective(Protocol):
    """What ``fit`` needs from a model: named modules, one optimisation step, one evaluation step.

    Both steps return per-batch means as 0-d tensors (kept on the device: no host sync per step).
    Optional: ``optimizers`` (name -> optimiser, saved in checkpoints), ``precision`` (set by
    ``fit``) and ``epoch_end(record, history)`` (called after each epoch, e.g. to warn).
    """

    name: str
    modules: dict[str, nn.Module]
    drop_last: bool

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def eval_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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


class ObjectiveBase:
    """Shared defaults of the course's objectives: float32 until ``fit`` sets ``precision``."""

    precision: Precision = FULL_PRECISION
    drop_last = False

    def epoch_end(self, record: dict, history: History) -> None:
        """Called by ``fit`` after each epoch; nothing by default."""


class History(list):
    """Per-epoch records (dicts) of a run; ``series('test_loss')`` gives one column."""

    def series(self, key: str) -> list[float]:
        return [r[key] for r in self if key in r]

    @property
    def last(self) -> dict:
        return self[-1] if self else {}


class AutoencoderObjective(ObjectiveBase):
    """Mean squared error between images and reconstructions (notebook 01, "Training")."""

    name = "ae"

    def __init__(self, model: nn.Module, lr: float = 1e-3):
        self.model = model
        self.modules = {"model": model}
        self.optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate("lr", lr))
        self.optimizers = {"optimizer": self.optimizer}

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.precision.autocast():
            loss = F.mse_loss(self.model(x), x)  # per pixel
        self.precision.minimize(loss, self.optimizer)
        return {"loss": loss.detach()}

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        recon = self.model(x).float()
        return {"loss": F.mse_loss(recon, x), "bce": bernoulli_nll_of_probabilities(recon, x).mean()}


class VAEObjective(ObjectiveBase):
    """Negative ELBO (reconstruction + beta * KL) per image in nats (notebook 02, "The loss")."""

    name = "vae"

    def __init__(self, model: nn.Module, lr: float = 1e-3, beta: float = 1.0, loss=vae_loss):
        self.model = model
        self.loss = loss  # (x_logits, x, mu, logvar, beta) -> parts; notebook 02 passes the one it defines
        self.beta = settings.number("beta", beta, at_least=0, what="a number >= 0 (1 is the plain VAE)")
        self.modules = {"model": model}
        self.optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate("lr", lr))
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


def _set_mode(objective: Objective, training: bool) -> None:
    for module in objective.modules.values():
        module.train(training)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(
    objective: Objective, x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 1000
) -> dict[str, float]:
    """Mean of each quantity ``eval_step`` reports over all of ``x`` (weighted by batch size).

    With labels ``y`` the step is called as ``eval_step(x, y)`` (the digit classifier needs them).
    """
    _set_mode(objective, training=False)
    sums: dict[str, torch.Tensor] = {}
    precision = getattr(objective, "precision", FULL_PRECISION)
    for batch in batches(*_with_labels(x, y), batch_size=batch_size, shuffle=False):
        batch = batch if isinstance(batch, tuple) else (batch,)
        with precision.autocast():
            step = objective.eval_step(*batch)
        for k, v in step.items():
            sums[k] = sums.get(k, 0) + v.float() * len(batch[0])
    return {k: float(v) / len(x) for k, v in sums.items()}


def _with_labels(x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    if y is not None and len(y) != len(x):
        raise ValueError(f"{len(x)} images but {len(y)} labels: pass labels that belong to the images")
    return (x,) if y is None else (x, y)


EpochCallback = Callable[[int, dict, "History"], None]

NAN_CHECK_EVERY = 25  # steps between checks for a non-finite loss (each check waits for the GPU)


class TrainingDiverged(FloatingPointError):
    """A loss became NaN or infinite; the message names the model, epoch and step."""


def _check_finite_data(x: torch.Tensor, what: str) -> None:
    if x.is_floating_point():
        bad = ~torch.isfinite(x.flatten(1)).all(1)
        if bool(bad.any()):
            raise ValueError(
                f"{what} holds {int(bad.sum())} image(s) with NaN or infinite pixels (the first is image "
                f"{int(bad.nonzero()[0])}): clean or drop them before training."
            )


def fit(
    objective: Objective,
    train_x: torch.Tensor,
    test_x: torch.Tensor | None = None,
    *,
    epochs: int,
    batch_size: int,
    callbacks: Iterable[EpochCallback] = (),
    history: History | None = None,
    progress: bool = True,
    train_y: torch.Tensor | None = None,
    test_y: torch.Tensor | None = None,
    checkpoint: str | Path | Checkpoint | None = None,
    config: dict | None = None,
    precision: str = "auto",
    compile: bool = False,
) -> History:
    """Train ``objective`` for ``epochs`` epochs on resident images; return the per-epoch history.

    Each record holds ``epoch``, ``seconds`` (training time of the epoch), ``train_<k>`` for every
    quantity the train step reports (epoch means, not the last batch) and ``test_<k>`` for the
    evaluation on ``test_x``. ``callbacks`` are called as ``cb(epoch, record, history)``.
    Passing the ``history`` of an earlier call continues its epoch count. With labels
    (``train_y``, ``test_y``) the steps are called as ``train_step(x, y)``.

    ``checkpoint`` (a file or a run folder) is written after every epoch; when it already holds
    more epochs than ``history``, training resumes from it (and says so) up to the same final
    epoch, with the random generators restored so that the result equals an uninterrupted run.
    ``config`` (the run's settings) is stored in it and must match on resume.
    ``precision``: ``"auto"`` (mixed precision on CUDA GPUs, float32 elsewhere), ``"fp32"``,
    ``"bf16"`` or ``"fp16"`` (see ``Precision``). Notebook 01, "Training", walks through it.
    ``compile=True`` compiles each module with ``torch.compile`` (in place, so checkpoints keep
    their names): the first epoch pays the compilation, later ones may run faster on a GPU.

    Under ``torchrun`` (``labkit.distributed``) each process trains on its own shard of ``train_x``
    with its modules wrapped in DistributedDataParallel; ``batch_size`` is per process (the
    effective batch is the number of processes times it). Every process loads the checkpoint and
    keeps the same history (epoch means over all processes); only rank 0 shows progress, runs the
    callbacks and writes the checkpoint.
    """
    settings.whole_number("epochs", epochs, low=0)
    settings.whole_number("batch_size", batch_size)
    if train_x.shape[0] == 0:
        raise ValueError("train_x holds no images: check the data folder or the smoke-mode sizes")
    _check_finite_data(train_x, "train_x")
    history = History() if history is None else history
    main = distributed.is_main()
    callbacks = list(callbacks) if main else []
    progress = progress and main
    device = train_x.device
    objective.precision = Precision(device, precision)
    if compile:
        for module in objective.modules.values():
            module.compile()
    target = len(history) + epochs
    if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
        checkpoint = Checkpoint(checkpoint, config)
    if checkpoint is not None:
        checkpoint.check_space(objective)
        if checkpoint.exists():
            state = checkpoint.load()
            if state["epochs_done"] > len(history):
                checkpoint.restore(state, objective, history, callbacks, train_x)
                left = max(target - len(history), 0)
                if main:
                    print(
                        f"labkit: resuming {objective.name} from {checkpoint.path}: {len(history)} epoch(s) done, "
                        + (
                            f"{left} to go"
                            if left
                            else "nothing left to train (delete the checkpoint "
                            "or choose another output folder to train from scratch)"
                        )
                    )
    distributed.seed_per_rank()
    all_x, train_x, train_y = train_x, distributed.shard(train_x), distributed.shard(train_y)
    n_batches = train_x.shape[0] // batch_size if objective.drop_last else math.ceil(train_x.shape[0] / batch_size)
    epoch_bar = tqdm(
        range(len(history) + 1, target + 1), desc=f"{objective.name} epochs", disable=not progress, unit="epoch"
    )
    with distributed.wrap(objective):
        for epoch in epoch_bar:
            record = _train_epoch(objective, train_x, train_y, batch_size, epoch, n_batches, progress, checkpoint)
            distributed.average_buffers(objective.modules.values())
            if test_x is not None and test_x.shape[0] > 0:
                record.update({f"test_{k}": v for k, v in evaluate(objective, test_x, test_y).items()})
            record = distributed.average_record(record, device)  # the same history on every process
            history.append(record)
            epoch_bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k in ("train_loss", "test_loss")})
            for callback in callbacks:
                callback(epoch, record, history)
            if hasattr(objective, "epoch_end"):
                objective.epoch_end(record, history)
            if checkpoint is not None and main:
                checkpoint.save(objective, history, callbacks, all_x)
            distributed.barrier()  # no process goes on before the checkpoint is whole
    _set_mode(objective, training=False)
    return history


def _train_epoch(
    objective: Objective,
    train_x: torch.Tensor,
    train_y: torch.Tensor | None,
    batch_size: int,
    epoch: int,
    n_batches: int,
    progress: bool,
    checkpoint,
) -> dict:
    """One pass over the shuffled training data; returns the epoch's record (means per image).

    Whether any step's outputs became non-finite is tracked on the device and checked every
    ``NAN_CHECK_EVERY`` steps, so the GPU is not made to wait after every step."""
    _set_mode(objective, training=True)
    device = train_x.device
    sums: dict[str, torch.Tensor] = {}
    first_bad = torch.zeros((), dtype=torch.long, device=device)  # 0: every step finite so far
    seen = 0
    t0 = time.perf_counter()
    steps = batches(*_with_labels(train_x, train_y), batch_size=batch_size, shuffle=True, drop_last=objective.drop_last)
    for step, batch in enumerate(
        tqdm(steps, total=n_batches, desc=f"epoch {epoch}", leave=False, disable=not progress, unit="batch"), start=1
    ):
        batch = batch if isinstance(batch, tuple) else (batch,)
        out = objective.train_step(*batch)
        finite = torch.stack([torch.isfinite(v).all() for v in out.values()]).all()
        first_bad = torch.where((first_bad == 0) & ~finite, step, first_bad)
        for k, v in out.items():
            sums[k] = sums.get(k, 0) + v.float() * len(batch[0])
        seen += len(batch[0])
        if step % NAN_CHECK_EVERY == 0 or step == n_batches:
            _stop_if_diverged(objective, out, int(first_bad), epoch, n_batches, checkpoint)
    _sync(device)
    record: dict = {"epoch": epoch, "seconds": time.perf_counter() - t0}
    record.update({f"train_{k}": float(v) / max(seen, 1) for k, v in sums.items()})
    return record


def _stop_if_diverged(objective, out: dict, bad_step: int, epoch: int, n_batches: int, checkpoint) -> None:
    if bad_step == 0:
        return
    names = ", ".join(k for k, v in out.items() if not bool(torch.isfinite(v).all())) or "the loss"
    kept = (
        f"The checkpoint of the last good epoch ({epoch - 1}) is kept in {checkpoint.path}."
        if checkpoint is not None and checkpoint.exists()
        else "No checkpoint was written for this run."
    )
    raise TrainingDiverged(
        f"{objective.name}: the training loss became non-finite (NaN or infinite) in epoch {epoch}, step "
        f"{bad_step} of {n_batches} (now non-finite: {names}); training stopped. {kept} Lower the learning "
        "rate, or check the input data for NaNs, then train again."
    )


def seconds_per_epoch(history: History) -> float:
    """Mean training seconds per epoch, leaving out the first epoch when there are more (warm-up)."""
    seconds = history.series("seconds")
    if not seconds:
        return float("nan")
    return sum(seconds[1:]) / (len(seconds) - 1) if len(seconds) > 1 else seconds[0]
