"""The training loop of the course, on one screen: ``fit`` runs the epochs, calls the training's
``train_step`` on every batch, averages what the steps report, evaluates on the test images and
hands each epoch's record to callbacks. Notebook 01, "Training", walks through it.

What wraps the loop lives here once too, in ``Harness``, so that ``fit`` reads on one screen: the checks before
training, resuming from a checkpoint, several processes (DistributedDataParallel), the watch for a loss that
became NaN or infinite, progress bars, and saving a checkpoint after every epoch. ``fit`` opens a ``Harness`` and
asks it for the epochs to run, the batches of an epoch, and what to do with each step's output and each epoch's
record. A *training* (``labkit.ae.AutoencoderTraining``, ``labkit.vae.VAETraining``, ``labkit.gan.GANTraining``;
``labkit.engine.training``) holds a model, its optimiser and its steps; the loss it minimises is its objective.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import tqdm.auto
import tqdm.std

from ..data import batches
from . import distributed, settings
from .checkpoint import Checkpoint
from .training import FULL_PRECISION, EpochCallback, History, Precision, Training, set_mode

NAN_CHECK_EVERY = 25  # steps between checks for a non-finite loss (each check waits for the GPU)


def progress_bar(*args, **kwargs):
    """tqdm's progress bar: a widget in Jupyter, text elsewhere, and text too when ``LABKIT_PLAIN_PROGRESS``
    is set (``python -m labkit notebooks`` sets it, and shows the kernel's bar in its terminal)."""
    bar = tqdm.std.tqdm if os.environ.get("LABKIT_PLAIN_PROGRESS") else tqdm.auto.tqdm
    return bar(*args, **kwargs)


class TrainingDiverged(FloatingPointError):
    """A loss became NaN or infinite; the message names the model, epoch and step."""


def with_labels(x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """``(x,)`` or ``(x, y)``: the tensors a step receives; labels must belong to the images."""
    if y is not None and len(y) != len(x):
        raise ValueError(f"{len(x)} images but {len(y)} labels: pass labels that belong to the images")
    return (x,) if y is None else (x, y)


def check_images(x: torch.Tensor, what: str) -> None:
    """Refuse, before any training, images the course's models cannot learn from: integer pixels,
    NaN or infinite pixels (naming the first such image), or values outside [0, 1]."""
    if not x.is_floating_point():
        raise ValueError(
            f"{what} holds integer pixels ({x.dtype}); the models take floating-point images in [0, 1]: "
            f"divide 8-bit images by 255 ({what}.float() / 255)."
        )
    bad = ~torch.isfinite(x.flatten(1)).all(1)
    if bool(bad.any()):
        raise ValueError(
            f"{what} holds {int(bad.sum())} image(s) with NaN or infinite pixels (the first is image "
            f"{int(bad.nonzero()[0])}): clean or drop them before training."
        )
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        advice = (
            f"divide 8-bit images by 255 ({what} / 255)"
            if high > 1.5 and low >= 0
            else f"undo the normalisation that gave them (for [-1, 1]: ({what} + 1) / 2)"
        )
        raise ValueError(f"{what} holds pixels from {low:g} to {high:g}; the models take images in [0, 1]: {advice}.")


class Harness:
    """One call of ``fit``: prepared on entering (checks, precision, compile, resume, this process's
    share of the data), used by the loop through ``epochs``, ``batches``, ``watch`` and ``end_epoch``."""

    def __init__(
        self,
        training,
        train_x: torch.Tensor,
        train_y: torch.Tensor | None,
        test_x: torch.Tensor | None = None,
        *,
        epochs: int,
        batch_size: int,
        history,
        callbacks: Iterable,
        progress: bool,
        checkpoint: str | Path | Checkpoint | None,
        config: dict | None,
        precision: str,
        compile: bool,
    ):
        settings.whole_number("epochs", epochs, low=0)
        self.batch_size = settings.whole_number("batch_size", batch_size)
        if train_x.shape[0] == 0:
            raise ValueError("train_x holds no images: check the data folder or the smoke-mode sizes")
        if getattr(training, "drop_last", False) and train_x.shape[0] < batch_size:
            raise ValueError(
                f"{training.name} trains on whole batches only, and {train_x.shape[0]} training images are fewer "
                f"than one batch of {batch_size}: lower batch_size (--batch-size) or add images"
            )
        check_images(train_x, "train_x")
        if test_x is not None and len(test_x) > 0:
            check_images(test_x, "test_x")
        with_labels(train_x, train_y)
        self.training, self.history = training, history
        self.main = distributed.is_main()
        self.callbacks = list(callbacks) if self.main else []  # rank 0 alone plots and records
        self.progress = progress and self.main
        self.device = train_x.device
        self.all_x = train_x
        self.target = len(history) + epochs
        training.precision = Precision(self.device, precision)
        if compile:
            for module in training.modules.values():
                module.compile()  # in place: checkpoints keep the modules' names
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            checkpoint = Checkpoint(checkpoint, config)
        self.checkpoint = checkpoint
        if checkpoint is not None:
            checkpoint.check_space(training)
            self._resume()
        distributed.seed_per_rank()
        self.train_x, self.train_y = distributed.shard(train_x), distributed.shard(train_y)
        n = self.train_x.shape[0]
        self.n_batches = n // batch_size if training.drop_last else math.ceil(n / batch_size)
        if callable(getattr(training, "plan", None)):
            training.plan(self.target * self.n_batches)  # every epoch's steps, those a checkpoint holds included
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Harness:
        self._stack.enter_context(distributed.wrap(self.training))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _resume(self) -> None:
        """Continue from the checkpoint when it holds more epochs than the history (and say so)."""
        if not self.checkpoint.exists():
            return
        state = self.checkpoint.load()
        if state["epochs_done"] <= len(self.history):
            return
        self.checkpoint.restore(state, self.training, self.history, self.callbacks, self.all_x)
        left = max(self.target - len(self.history), 0)
        if self.main:
            print(
                f"labkit: resuming {self.training.name} from {self.checkpoint.path}: {len(self.history)} "
                "epoch(s) done, "
                + (
                    f"{left} to go"
                    if left
                    else "nothing left to train (delete the "
                    "checkpoint or choose another output folder to train from scratch)"
                )
            )

    def epochs(self) -> Iterator[int]:
        """The epochs still to run, with a progress bar."""
        self.epoch_bar = progress_bar(
            range(len(self.history) + 1, self.target + 1),
            desc=f"{self.training.name} epochs",
            disable=not self.progress,
            unit="epoch",
        )
        yield from self.epoch_bar

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """This epoch's batches of this process's share, shuffled, with a progress bar. When the last one
        is done: the final NaN check, the GPU caught up (so the epoch's time is right), and the
        batch-norm statistics averaged over the processes (see ``labkit.engine.distributed.wrap``)."""
        self._epoch, self._step = epoch, 0
        self._first_bad = torch.zeros((), dtype=torch.long, device=self.device)  # 0: every step finite so far
        steps = batches(
            *with_labels(self.train_x, self.train_y),
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=self.training.drop_last,
        )
        for batch in progress_bar(
            steps, total=self.n_batches, desc=f"epoch {epoch}", leave=False, disable=not self.progress, unit="batch"
        ):
            yield batch if isinstance(batch, tuple) else (batch,)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        distributed.average_buffers(self.training.modules.values())

    def watch(self, out: dict[str, torch.Tensor]) -> None:
        """Note on the device whether a step's outputs are finite; every ``NAN_CHECK_EVERY`` steps (and
        at the last) look, so that the GPU is not made to wait after every step."""
        self._step += 1
        finite = torch.stack([torch.isfinite(v).all() for v in out.values()]).all()
        self._first_bad = torch.where((self._first_bad == 0) & ~finite, self._step, self._first_bad)
        if self._step % NAN_CHECK_EVERY == 0 or self._step == self.n_batches:
            bad_step = int(self._first_bad)
            if bad_step:
                self._diverged(out, bad_step)

    def _diverged(self, out: dict, bad_step: int) -> None:
        names = ", ".join(k for k, v in out.items() if not bool(torch.isfinite(v).all())) or "the loss"
        kept = (
            f"The checkpoint of the last good epoch ({self._epoch - 1}) is kept in {self.checkpoint.path}."
            if self.checkpoint is not None and self.checkpoint.exists()
            else "No checkpoint was written for this run."
        )
        raise TrainingDiverged(
            f"{self.training.name}: the training loss became non-finite (NaN or infinite) in epoch {self._epoch}, "
            f"step {bad_step} of {self.n_batches} (now non-finite: {names}); training stopped. {kept} Lower the "
            "learning rate, or check the input data for NaNs, then train again."
        )

    def end_epoch(self, record: dict) -> None:
        """The record averaged over the processes (one history everywhere), kept, shown, handed to the
        callbacks and the training's ``epoch_end``; then the checkpoint, which every process waits for."""
        record = distributed.average_record(record, self.device)
        self.history.append(record)
        self.epoch_bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k in ("train_loss", "test_loss")})
        for callback in self.callbacks:
            callback(record["epoch"], record, self.history)
        if hasattr(self.training, "epoch_end"):
            self.training.epoch_end(record, self.history)
        if self.checkpoint is not None and self.main:
            self.checkpoint.save(self.training, self.history, self.callbacks, self.all_x)
        distributed.barrier()


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
    fp32, bf16 or fp16 (``labkit.engine.training.Precision``); ``compile=True`` compiles the modules. Under
    ``torchrun`` every process trains on its share of ``train_x`` (``Harness``).
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
