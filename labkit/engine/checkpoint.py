"""Checkpoints: everything a run needs to continue exactly where it stopped, written so that a
kill never leaves a broken file, and read so that a file can never run code.

``fit(..., checkpoint=path)`` saves one after every epoch and resumes from it when it exists
(notebook 01, "Training", explains why: Colab and Kaggle runtimes disconnect). A checkpoint holds
the weights and optimiser states of every module, the gradient scaler, the per-epoch history, the
state of every random number generator (python, NumPy, torch, CUDA) and the state of callbacks
such as the GAN's fixed noise, plus a description of the run (model, module shapes, settings,
data) that is compared before anything is loaded, and a SHA-256 digest of all of it: a file whose bytes
changed on disk after it was written (a failing disk, a copy cut short, an edit) is refused by name
instead of resuming with wrong weights.
"""

from __future__ import annotations

import pickle
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

from . import environment, files
from .optim import load_optimizer_state

FORMAT = "labkit-checkpoint"
VERSION = 1
FILE_NAME = "checkpoint.pt"
DIGEST_KEY = "sha256"  # the entry holding ``labkit.engine.files.content_digest`` of everything else in the checkpoint


class CheckpointError(ValueError):
    """A checkpoint that labkit refuses to load: unsafe, damaged, or from a different run."""


# --------------------------------------------------------------------------- describing a run


# Settings that say how long a model trains or how its samples are drawn, not what it learns: a checkpoint
# resumes under other values of them, so that a run can be extended, or a finished one drawn from again with
# another sampler, number of steps or guidance weight (its metrics.json then says which it was judged with).
NOT_IN_IDENTITY = frozenset({"epochs", "sampler", "sample_steps", "guidance", "compile"})


def describe(training, config: dict | None, train_x: torch.Tensor) -> dict:
    """What must match for a checkpoint to belong to this run: the training, every parameter's
    shape, the settings (``config``, less ``NOT_IN_IDENTITY``) and the data size."""
    shapes = {
        f"{name}.{key}": list(value.shape)
        for name, module in training.modules.items()
        for key, value in module.state_dict().items()
    }
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in (config or {}).items() if k not in NOT_IN_IDENTITY}
    return {
        "objective": training.name,  # the key checkpoints have always used
        "shapes": shapes,
        "config": config,
        "train_images": list(train_x.shape),
    }


# Settings added after checkpoints already existed, with the value that trains as before they were:
# a checkpoint saved without them resumes when the run leaves them at that value.
ADDED_SETTINGS = {"loss": "bce", "n_critic": 5, "gp_weight": 10.0, "spectral_norm": False}
ADDED_SETTINGS.update(dataset="mnist", image_size=None)  # AE, VAE, cVAE, VQ-VAE: MNIST only (the DCGAN saved them)
ADDED_SETTINGS.update(lr_schedule="constant", warmup_steps=0)  # diffusion, before its learning rate fell
ADDED_SETTINGS.update(ema=0.0)  # the GANs, before they sampled from the average of G's weights
ADDED_SETTINGS.update(d_conditioning="concat")  # the cGAN, before its D was told the label by projection
ADDED_SETTINGS.update(upsample="transposed")  # the DCGAN, before its G resized then convolved


def mismatch(saved: dict, current: dict) -> list[str]:
    """Human-readable differences between two ``describe`` results (empty when they match)."""
    problems = []
    if saved["objective"] != current["objective"]:
        problems.append(f"it trains a {saved['objective']!r} model, this run a {current['objective']!r}")
    if saved["train_images"] != current["train_images"]:
        problems.append(
            f"its training images have shape {tuple(saved['train_images'])}, "
            f"this run's {tuple(current['train_images'])}"
        )
    # a checkpoint saved before a setting joined NOT_IN_IDENTITY still holds it: it is not compared either
    for key in sorted((set(saved["config"]) | set(current["config"])) - NOT_IN_IDENTITY):
        old = saved["config"].get(key, ADDED_SETTINGS.get(key, "<unset>"))
        new = current["config"].get(key, "<unset>")
        if old != new:
            problems.append(f"it was saved with {key}={old!r}, this run has {key}={new!r}")
    if saved["objective"] == current["objective"] and saved["shapes"] != current["shapes"]:
        differ = [
            k
            for k in sorted(set(saved["shapes"]) | set(current["shapes"]))
            if saved["shapes"].get(k) != current["shapes"].get(k)
        ]
        shown = ", ".join(f"{k} {saved['shapes'].get(k)} vs {current['shapes'].get(k)}" for k in differ[:3])
        problems.append(f"its layers differ ({len(differ)} tensors: {shown})")
    return problems


# --------------------------------------------------------------------------- writing and reading


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then renamed over it
    (``labkit.engine.files.atomic_writer``): a kill at any moment leaves either the old file or the new
    one, never half of one, and a full disk leaves the old one and no temporary file.

    A labkit checkpoint (a dict of ``FORMAT``) is written with the ``labkit.engine.files.content_digest`` of what it
    holds now, which ``safe_load`` checks."""
    path = Path(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        obj = {**obj, DIGEST_KEY: files.content_digest(obj, leave_out=DIGEST_KEY)}
    try:
        with files.atomic_writer(path, "wb") as f:
            torch.save(obj, f)
    except OSError as e:
        raise OSError(
            e.errno,
            f"could not write the checkpoint {path} ({e.strerror or e}); the previous "
            "checkpoint, if any, is unchanged. Free some disk space or choose another output folder.",
        ) from e
    return path


def refusal_reason(message: str) -> str:
    """The sentence of PyTorch's refusal that names what the file asked for (``GLOBAL posix.system``,
    an unsupported operation), whole: PyTorch's message around it only says how to load the file
    anyway, which is what must not be done with a file of unknown origin."""
    lines = [line.strip().removeprefix("WeightsUnpickler error:").strip() for line in message.splitlines()]
    lines = [line for line in lines if line]
    named = [line for line in lines if re.search(r"global|unsupported|operand|blocked", line, re.IGNORECASE)]
    line = (named or lines or ["the file was refused"])[0]
    sentence = re.match(r"(.+?[.!?])(?:\s|$)", line)
    return sentence.group(1) if sentence else f"{line}."


def safe_load(path: str | Path) -> dict:
    """Load a checkpoint to the CPU with ``torch.load(weights_only=True)``: tensors, numbers, strings
    and containers only. A file that needs anything else (it could run code when unpickled) is
    refused with ``CheckpointError`` and nothing in it is executed.

    The contents must match the SHA-256 digest recorded when the file was written
    (``labkit.engine.files.content_digest``): a file whose bytes changed since is refused, naming it. Checkpoints
    written before labkit recorded digests have none; they load as they always did.

    Everything lands on the CPU whatever device saved it: ``load_state_dict`` then copies weights
    to wherever the model lives, and the random generators can only be restored from CPU tensors.
    So a run saved on a GPU resumes on a CPU and the other way round."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refused to load {path}: it contains Python objects that are not plain weights, and unpickling "
            f"them could run arbitrary code. PyTorch says: {refusal_reason(str(e))} labkit only loads "
            "checkpoints it wrote itself. If you did not make this file, delete it."
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(
            f"{path} is damaged or not a checkpoint ({e}). Delete it to start the run again from scratch."
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a labkit checkpoint. Delete it or choose another output folder.")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path} was written by checkpoint format version {state.get('version')}, this "
            f"labkit reads version {VERSION}. Delete it to train again."
        )
    if DIGEST_KEY in state and state[DIGEST_KEY] != files.content_digest(state, leave_out=DIGEST_KEY):
        raise CheckpointError(
            f"{path} is damaged: its contents no longer match the SHA-256 digest labkit recorded when it wrote "
            "the file, so its bytes changed on disk since (a failing disk, a copy cut short, an edit). Nothing "
            "was loaded from it. Put back a copy of the file you kept, or delete it to train the run again "
            "from scratch."
        )
    return state


# What every checkpoint that ``Checkpoint.save`` wrote holds, and the type of each entry.
CONTENTS = {
    "run": dict,
    "epochs_done": int,
    "history": list,
    "modules": dict,
    "optimizers": dict,
    "scaler": dict,
    "callbacks": dict,
    "rng": dict,
}
RUN_DESCRIPTION = {"objective": str, "shapes": dict, "config": dict, "train_images": list}


def contents_problem(state: dict) -> str | None:
    """What a loaded checkpoint lacks of what ``Checkpoint.save`` writes (or holds in another type),
    or None when it is complete. A file labkit wrote always is: a problem means the file was made
    or changed by something else."""
    for key, kind in CONTENTS.items():
        if key not in state:
            return f'it has no "{key}" entry'
        if not isinstance(state[key], kind) or (kind is int and isinstance(state[key], bool)):
            return f'its "{key}" entry is a {type(state[key]).__name__}, where a {kind.__name__} belongs'
    wrong = [key for key, kind in RUN_DESCRIPTION.items() if not isinstance(state["run"].get(key), kind)]
    if wrong:
        return f"its description of the run lacks {', '.join(wrong)} (or holds them in another form)"
    return None


class Checkpoint:
    """The checkpoint file of one run, as ``fit`` uses it: ``save`` after every epoch,
    ``restore`` at the start when the file exists.

    ``config`` (the run's settings, e.g. ``dataclasses.asdict(cfg)``) is stored and compared on
    restore; a checkpoint from a different model, settings or data is refused with a message that
    names the difference, before any weight is touched.
    """

    def __init__(self, path: str | Path, config: dict | None = None):
        path = Path(path)
        self.path = path / FILE_NAME if path.is_dir() or path.suffix == "" else path
        self.config = config

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r})"

    def exists(self) -> bool:
        return self.path.is_file()

    def check_space(self, training) -> None:
        """Fail before training when the folder cannot hold two checkpoints (the old one stays
        until the new one is complete)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        size = sum(t.numel() * t.element_size() for m in training.modules.values() for t in m.state_dict().values())
        needed = 4 * size + (16 << 20)  # weights, two Adam moments, the file being replaced, slack
        free = shutil.disk_usage(self.path.parent).free
        if free < needed:
            raise OSError(
                f"only {free / 2**20:.0f} MiB free in {self.path.parent}, and checkpoints of this run "
                f"need about {needed / 2**20:.0f} MiB. Free some space or choose another output folder."
            )

    def save(self, training, history, callbacks=(), train_x: torch.Tensor | None = None) -> Path:
        optimizers = getattr(training, "optimizers", {})
        precision = getattr(training, "precision", None)
        state = {
            "format": FORMAT,
            "version": VERSION,
            "run": describe(training, self.config, train_x if train_x is not None else torch.empty(0)),
            "epochs_done": len(history),
            "history": [dict(r) for r in history],
            "modules": {name: m.state_dict() for name, m in training.modules.items()},
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "scaler": precision.scaler.state_dict() if precision is not None else {},
            "callbacks": {key: cb.state_dict() for key, cb in _stateful(callbacks)},
            "rng": environment.rng_state(),
        }
        return atomic_save(state, self.path)  # with the digest of its contents

    def load(self) -> dict:
        """The checkpoint's contents, loaded safely to the CPU (see ``safe_load``) and checked to hold
        everything ``save`` writes."""
        state = safe_load(self.path)
        self._check_contents(state)
        return state

    def _check_contents(self, state: dict) -> None:
        problem = contents_problem(state)
        if problem:
            raise CheckpointError(f"{self.path} is not a complete labkit checkpoint: {problem}. {_REMEDY}")

    def restore(self, state: dict, training, history, callbacks=(), train_x: torch.Tensor | None = None) -> int:
        """Put a loaded checkpoint ``state`` into ``training``, ``history`` (replaced in place) and
        ``callbacks``; return the number of epochs it holds. A checkpoint of another run, or one whose
        tensors do not fit the run it describes, is refused before anything is changed."""
        self._check_contents(state)
        problems = mismatch(
            state["run"], describe(training, self.config, train_x if train_x is not None else torch.empty(0))
        )
        if problems:
            raise CheckpointError(
                f"{self.path} belongs to a different run: "
                + "; ".join(problems)
                + ". Choose another output folder, or delete the checkpoint to train from scratch."
            )
        problem = stored_tensors_problem(state, training)
        if problem:
            raise CheckpointError(
                f"{self.path} does not hold what it describes: {problem}. The file was changed after labkit "
                f"wrote it, and nothing was loaded from it. {_REMEDY}"
            )
        try:
            for name, module in training.modules.items():
                module.load_state_dict(state["modules"][name])
            for name, optimizer in getattr(training, "optimizers", {}).items():
                load_optimizer_state(optimizer, state["optimizers"][name])  # this device's Adam, fused or not
            precision = getattr(training, "precision", None)
            if precision is not None and state["scaler"]:
                precision.scaler.load_state_dict(state["scaler"])
            for key, callback in _stateful(callbacks):
                if key in state["callbacks"]:
                    callback.load_state_dict(state["callbacks"][key])
            environment.set_rng_state(state["rng"])
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:  # what the checks above cannot see
            raise CheckpointError(
                f"{self.path} could not be loaded into this run ({type(e).__name__}: {e}). The file was changed "
                f"after labkit wrote it. {_REMEDY}"
            ) from e
        history[:] = state["history"]
        return state["epochs_done"]


_REMEDY = "Put back a copy of the file you kept, or delete it to train the run again from scratch."


def _shape(value) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def stored_tensors_problem(state: dict, training) -> str | None:
    """What keeps the tensors in ``state`` from loading into ``training`` (a module or an optimiser
    missing, a tensor missing, left over or of another shape), or None when they fit. Checked before
    anything is loaded, so that a refused checkpoint changes nothing; ``load_state_dict`` would
    otherwise stop halfway with PyTorch's error."""
    for name, module in training.modules.items():
        saved = state["modules"].get(name)
        if not isinstance(saved, Mapping):
            return f'it holds no weights of the module "{name}"'
        expected = module.state_dict()
        for key, value in expected.items():
            if key not in saved:
                return f"the tensor {name}.{key} is missing"
            if _shape(saved[key]) != tuple(value.shape):
                return (
                    f"the tensor {name}.{key} has shape {_shape(saved[key])}, where this run's model "
                    f"(and the checkpoint's own description) has {tuple(value.shape)}"
                )
        extra = sorted(set(saved) - set(expected))
        if extra:
            return f"the module {name} holds tensors this model does not have ({', '.join(map(str, extra[:3]))})"
    for name, optimizer in getattr(training, "optimizers", {}).items():
        saved = state["optimizers"].get(name)
        if not (
            isinstance(saved, Mapping)
            and isinstance(saved.get("state"), Mapping)
            and isinstance(saved.get("param_groups"), list)
            and all(isinstance(g, Mapping) and isinstance(g.get("params"), list) for g in saved["param_groups"])
        ):
            return f'it holds no state of the optimiser "{name}"'
        groups = saved["param_groups"]
        sizes = [len(group["params"]) for group in groups]
        if sizes != [len(group["params"]) for group in optimizer.param_groups]:
            return f"the optimiser {name} was saved for parameter groups of sizes {sizes}"
        params = [p for group in optimizer.param_groups for p in group["params"]]
        ids = [i for group in groups for i in group["params"]]
        for param_id, param in zip(ids, params):
            entry = saved["state"].get(param_id, {})
            if not isinstance(entry, Mapping):
                return f"the optimiser {name}'s state of parameter {param_id} is not a set of named values"
            for key, value in entry.items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and tuple(value.shape) != tuple(param.shape):
                    return (
                        f"the optimiser {name}'s {key} of parameter {param_id} has shape {tuple(value.shape)}, "
                        f"where the parameter has {tuple(param.shape)}"
                    )
    return None


def _stateful(callbacks) -> list[tuple[str, object]]:
    """Callbacks that keep state, keyed by class name and order among their class (``FixedNoise``,
    ``FixedNoise-2``): a live plot added or left out does not shift the key of the fixed noise."""
    keyed, seen = [], {}
    for callback in callbacks:
        if hasattr(callback, "state_dict") and hasattr(callback, "load_state_dict"):
            name = type(callback).__name__
            seen[name] = seen.get(name, 0) + 1
            keyed.append((name if seen[name] == 1 else f"{name}-{seen[name]}", callback))
    return keyed
