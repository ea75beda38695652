"""Watching training in TensorBoard: after every epoch, the numbers of its record and one picture of
the model's progress, written as TensorBoard event files while training runs (notebook 01,
"Training", "Watching training in TensorBoard").

``python -m labkit train MODEL --tensorboard`` writes them into ``<run folder>/tensorboard/`` for every
model (``log_every_run``, read by ``labkit.engine.runs.fit_in_run``); a notebook with
``TENSORBOARD = True`` passes ``TensorBoardLogger.for_run(run, training, data)`` to ``fit``.
``tensorboard --logdir runs`` (in a notebook ``%tensorboard --logdir runs``) then shows every run.

tensorboard is optional: without it, switching the logging on fails at once, before any training,
with the command that installs it. ``torch.utils.tensorboard`` is imported only then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

FOLDER = "tensorboard"  # the event files' folder inside a run folder
N_IMAGES = 8  # test images (AE family: above their reconstructions); GANs show 8 x 8 fixed-noise images
INSTALL = 'pip install tensorboard (in a notebook: %pip install tensorboard) or pip install "labkit[tensorboard]"'


class TensorBoardMissing(ImportError):
    """TensorBoard logging was asked for and the tensorboard package cannot be imported."""


def require_tensorboard() -> type:
    """``torch.utils.tensorboard.SummaryWriter`` when tensorboard is installed, else ``TensorBoardMissing``
    saying how to install it (the notebooks call it before ``%load_ext tensorboard``)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise TensorBoardMissing(
            f"TensorBoard logging needs the tensorboard package, which cannot be imported ({e}). Install it with "
            f"{INSTALL} (Colab and Kaggle have it preinstalled), or train without TensorBoard (no --tensorboard; "
            "TENSORBOARD = False in a notebook)."
        ) from e
    return SummaryWriter


def scalar_name(key: str) -> str:
    """The TensorBoard name of a record entry: ``train_loss`` -> ``loss/train``, ``test_loss`` ->
    ``loss/test`` (one section per quantity, train and test side by side); others (``seconds``) as they are."""
    split, _, quantity = key.partition("_")
    return f"{quantity}/{split}" if split in ("train", "test") and quantity else key


class TensorBoardLogger:
    """A ``fit`` callback that writes each epoch to TensorBoard event files in ``log_dir``.

    Every number of the epoch's record (``epoch`` aside) becomes a scalar at step = epoch, named by
    ``scalar_name``. ``images``: a function of no arguments returning images (N, C, H, W) in [0, 1]
    (``progress_images``); their grid (``nrow`` per row) is written as the image ``progress``. The
    file is flushed after every epoch, so TensorBoard shows the run as it trains. The writer opens at
    the first epoch logged, with it as ``purge_step``: a run resumed at epoch e (or trained again from
    epoch 1 in the same folder) makes TensorBoard drop what the folder held from epoch e on.
    Checks at construction, before any training, that tensorboard is installed.
    """

    def __init__(self, log_dir: str | Path, images: Callable[[], torch.Tensor] | None = None, nrow: int = N_IMAGES):
        self._writer_class = require_tensorboard()
        self.log_dir = Path(log_dir)
        self.images = images
        self.nrow = nrow
        self.writer = None

    @classmethod
    def for_run(cls, run, training, data=None, *, labels: bool = False, seed: int = 0) -> TensorBoardLogger:
        """The logger of a run (``labkit.engine.runs.Run``): event files in ``run.dir / "tensorboard"``
        and the picture ``progress_images`` chooses for ``training`` (``data``: the images, not needed
        for a GAN; ``labels``: a conditional model; ``seed``: the GAN's fixed noise)."""
        return cls(Path(run.dir) / FOLDER, progress_images(training, data, labels=labels, seed=seed))

    def __call__(self, epoch: int, record: dict, history) -> None:
        if self.writer is None:
            self.writer = self._writer_class(str(self.log_dir), purge_step=epoch)
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(scalar_name(key), value, epoch)
        if self.images is not None:
            from torchvision.utils import make_grid

            with torch.no_grad():
                images = self.images().detach().float().cpu().clamp(0, 1)
            self.writer.add_image("progress", make_grid(images, nrow=self.nrow), epoch)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file (again harmless)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_images(training, data=None, *, labels: bool = False, seed: int = 0) -> Callable[[], torch.Tensor]:
    """What picture shows a training's progress, as a function giving images in [0, 1]:

    * a training that draws samples (``draw(n, seed=...)``: the GANs, the diffusion models): 64 images from
      one batch of noise drawn once with ``seed``, as ``labkit.progression.FixedNoise`` records them (a
      conditional model draws the classes in turn);
    * the AE, VAE, cVAE and VQ-VAE (a ``model``): ``N_IMAGES`` fixed test images of ``data`` above their
      reconstructions (``labels``: a conditional model, given the images' labels).

    Neither draws from the training's random generators, so logging leaves a run's numbers unchanged."""
    if callable(getattr(training, "draw", None)):
        return lambda: training.draw(N_IMAGES**2, seed=seed).float().cpu()
    model = training.modules["model"]
    x = data.test_x[:N_IMAGES]
    y = (data.test_y[:N_IMAGES],) if labels else ()
    return lambda: torch.cat([x, reconstruct(model, x, *y)])


@torch.no_grad()
def reconstruct(model: nn.Module, x: torch.Tensor, *y: torch.Tensor) -> torch.Tensor:
    """Reconstructions in [0, 1] in evaluation mode, with no random draw: the decoded mean of a VAE or
    cVAE (``encode`` gives (mu, logvar)), the AE's output, the sigmoid of the VQ-VAE's logits."""
    was_training = model.training
    model.eval()
    try:
        codes = model.encode(x, *y)
        if isinstance(codes, tuple):  # VAE, cVAE: decode the mean
            return model.decode(codes[0], *y).float()
        out = model(x, *y)  # AE: pixels in [0, 1]; VQ-VAE: (logits, its codes)
        return (torch.sigmoid(out[0]) if isinstance(out, tuple) else out).float()
    finally:
        model.train(was_training)


_log_every_run = False


@contextmanager
def log_every_run(on: bool = True) -> Iterator[None]:
    """Within the block every headless recipe (``fit_in_run``) also logs to TensorBoard, in its run
    folder: what ``python -m labkit train MODEL --tensorboard`` switches on. Fails at once, before any
    data is loaded, when tensorboard is not installed."""
    global _log_every_run
    if on:
        require_tensorboard()
    before, _log_every_run = _log_every_run, on
    try:
        yield
    finally:
        _log_every_run = before


def logging_every_run() -> bool:
    """True inside ``log_every_run()``."""
    return _log_every_run
