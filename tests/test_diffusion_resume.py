"""A diffusion run that was cut off resumes exactly (notebook 05, "Training"; ``labkit.engine.checkpoint``):
the network, the weights' average (with its count of updates, which sets its warm-up decay), Adam's moments,
the random generators that draw the times, the noise and the dropped labels, the fixed-noise progression and
the samples end bit for bit as in a run that was never interrupted. A checkpoint of the other objective is
refused by name and nothing is written."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labkit import datasets, progression
from labkit.__main__ import main
from labkit.diffusion.recipe import DiffusionSettings
from labkit.engine import checkpoint as ckpt
from labkit.engine.environment import seed_everything
from labkit.engine.loop import fit
from labkit.engine.training import History

ROOT = Path(__file__).resolve().parent.parent
TINY = {"width": 8, "mults": (1, 2), "sample_steps": 2, "batch_size": 32, "warmup_steps": 2}  # then falling: 4 steps
KINDS = {"eps": {"objective": "eps"}, "flow-conditional": {"objective": "flow", "conditional": True}}


def _equal(a, b) -> bool:
    """Bitwise equality of nested checkpoint contents: tensors (dtype included), mappings, sequences, numbers."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_equal, a, b))
    return a == b


def _without_seconds(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def _without_timing(final: dict) -> dict:
    """A run's final numbers but its times (seconds per epoch, of training, per 1,000 samples)."""
    return {k: v for k, v in final.items() if "seconds" not in k}


def _differences(saved_a: dict, saved_b: dict) -> list[str]:
    """The entries of two checkpoints that differ, the training seconds aside (empty: the same run)."""
    differ = [
        key for key in ("modules", "optimizers", "scaler", "callbacks", "rng") if not _equal(saved_a[key], saved_b[key])
    ]
    if _without_seconds(saved_a["history"]) != _without_seconds(saved_b["history"]):
        differ.append("history")
    return differ


def _run(cfg: DiffusionSettings, epochs: int, folder: Path, images, seed: int = 0):
    """``fit`` as the recipe calls it: checkpointed, with the fixed-noise recorder drawing after every epoch."""
    cfg = dataclasses.replace(cfg, epochs=epochs)
    seed_everything(seed)
    training = cfg.training()
    recorder = progression.FixedNoise(training, n=4, seed=cfg.seed)
    labels = {"train_y": images.train_y[:64], "test_y": images.test_y[:32]} if cfg.conditional else {}
    history = fit(
        training,
        images.train_x[:64],
        images.test_x[:32],
        epochs=epochs,
        batch_size=cfg.batch_size,
        progress=False,
        callbacks=[recorder],
        checkpoint=folder,
        config=dataclasses.asdict(cfg),
        **labels,
    )
    return training, history, recorder


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_resumed_diffusion_run_ends_bit_for_bit_like_an_uninterrupted_one(kind, tmp_path, mnist_offline, capsys):
    cfg = DiffusionSettings(**TINY, **KINDS[kind])
    full, full_history, full_frames = _run(cfg, 3, tmp_path / "full", mnist_offline)
    _run(cfg, 1, tmp_path / "cut", mnist_offline)  # cut off after epoch 1
    resumed, history, frames = _run(cfg, 3, tmp_path / "cut", mnist_offline, seed=99)  # a new session
    assert "resuming diffusion from" in capsys.readouterr().out
    assert _without_seconds(history) == _without_seconds(full_history)
    for name in ("net", "ema"):  # the average's n_averaged included
        assert _equal(full.modules[name].state_dict(), resumed.modules[name].state_dict()), name
    assert int(resumed.ema.n_averaged) == 3 * 2  # one update a step: 64 images in batches of 32, 3 epochs
    assert _equal(full.optimizer.state_dict(), resumed.optimizer.state_dict())
    assert frames.epochs == [1, 2, 3] and _equal(frames.state_dict(), full_frames.state_dict())  # 8-bit frames
    assert torch.equal(frames.frames[-1], full_frames.frames[-1])  # the last frame was drawn, not restored
    assert torch.equal(resumed.draw(8, seed=5), full.draw(8, seed=5))
    saved = [ckpt.safe_load(folder / ckpt.FILE_NAME) for folder in (tmp_path / "full", tmp_path / "cut")]
    assert _differences(*saved) == []  # the generators too: the next epoch would draw the same


# A run of the recipe as ``python -m labkit train diffusion`` makes it, on 96 digits, killed with SIGKILL
# by its own callback after epoch KILL_AT has trained and before that epoch's checkpoint is written.
RUN_SCRIPT = """
import dataclasses, os, signal, sys
import torch
from labkit import data
from labkit.diffusion.recipe import DiffusionSettings, run_diffusion

out, kill_at = sys.argv[1], int(sys.argv[2])
mnist = data.load_mnist("cpu", source="offline-subset", smoke=False, verbose=False)
few = dataclasses.replace(
    mnist, train_x=mnist.train_x[:96], train_y=mnist.train_y[:96], test_x=mnist.test_x[:64], test_y=mnist.test_y[:64]
)

def killed(epoch, record, history):
    if epoch == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

cfg = DiffusionSettings(
    width=8, mults=(1, 2), epochs=3, sample_steps=2, batch_size=32, objective="eps", conditional=True
)
trained = run_diffusion(cfg, out=out, device="cpu", progress=False, data=few, callbacks=[killed])
torch.save({"samples": trained.training.draw(16, seed=5)}, os.path.join(out, "drawn.pt"))
"""


@pytest.mark.slow
def test_a_diffusion_run_killed_with_sigkill_resumes_to_the_same_run_samples_and_metrics(tmp_path):
    env = {
        **os.environ,
        "LABKIT_SMOKE": "1",
        "LABKIT_OFFLINE": "1",
        "LABKIT_DATA": str(tmp_path / "data"),  # the digit classifier that judges both runs, trained once
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }

    def run(folder: Path, kill_at: int) -> subprocess.CompletedProcess:
        command = [sys.executable, "-c", RUN_SCRIPT, str(folder), str(kill_at)]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    (tmp_path / "data").mkdir()
    cut, whole = tmp_path / "cut", tmp_path / "whole"
    killed = run(cut, kill_at=2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert ckpt.safe_load(cut / ckpt.FILE_NAME)["epochs_done"] == 1 and not (cut / "metrics.json").exists()
    again = run(cut, kill_at=0)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming diffusion from {cut / ckpt.FILE_NAME}: 1 epoch(s) done, 2 to go" in again.stdout
    uninterrupted = run(whole, kill_at=0)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]

    saved = [ckpt.safe_load(folder / ckpt.FILE_NAME) for folder in (cut, whole)]
    assert saved[0]["epochs_done"] == 3 and _differences(*saved) == []
    assert int(saved[0]["modules"]["ema"]["n_averaged"]) == 3 * 3  # 96 images in batches of 32, 3 epochs
    drawn = [torch.load(folder / "drawn.pt")["samples"] for folder in (cut, whole)]
    assert torch.equal(*drawn)
    resumed, reference = (json.loads((folder / "metrics.json").read_text()) for folder in (cut, whole))
    assert _without_seconds(resumed["history"]) == _without_seconds(reference["history"])
    assert _without_timing(resumed["final"]) == _without_timing(reference["final"])
    assert resumed["figures"] == reference["figures"]


def test_resuming_with_the_other_objective_is_refused_by_the_command_naming_it_and_writes_nothing(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    folder = tmp_path / "run"
    folder.mkdir()
    cfg = DiffusionSettings(objective="eps")  # the command's settings in smoke mode, but DDPM's objective
    images = datasets.load_for(cfg, "cpu")
    training = cfg.training("cpu", images.image_shape)
    record = {"epoch": 1, "seconds": 1.0, "train_loss": 0.5, "test_loss": 0.5}
    ckpt.Checkpoint(folder, dataclasses.asdict(cfg)).save(training, History([record]), [], images.train_x)
    before = {path.name: path.read_bytes() for path in folder.iterdir()}

    assert main(["train", "diffusion", "--objective", "flow", "--out", str(folder), "--no-progress"]) == 2
    error = capsys.readouterr().err
    # the one difference, named as the option is: nothing else about the run differs
    assert "belongs to a different run: it was saved with objective='eps', this run has objective='flow'." in error
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


def test_a_finished_run_is_drawn_from_again_with_other_sampling_settings_without_training_again(
    tmp_path, monkeypatch, capsys
):
    """How samples are drawn is not part of what a model learned: a finished run given another sampler, number
    of steps or guidance resumes (no epoch trains again) and its metrics.json says what it was judged with."""
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    folder = tmp_path / "run"
    common = ["train", "diffusion", "--conditional", "--out", str(folder), "--no-progress", "--epochs", "1"]
    assert main(common) == 0
    first = json.loads((folder / "metrics.json").read_text())
    weights = ckpt.safe_load(folder / ckpt.FILE_NAME)["modules"]
    capsys.readouterr()

    assert main([*common, "--sampler", "euler", "--sample-steps", "3", "--guidance", "0"]) == 0
    assert "1 epoch(s) done, nothing left to train" in capsys.readouterr().out
    again = json.loads((folder / "metrics.json").read_text())
    assert (first["final"]["sampler"], first["final"]["sample_steps"]) == ("heun", 4)
    assert (again["final"]["sampler"], again["final"]["sample_steps"], again["final"]["network_evaluations"]) == (
        "euler",
        3,
        3,  # unguided (w = 0): one call a step
    )
    assert _without_seconds(again["history"]) == _without_seconds(first["history"])  # nothing trained again
    assert _equal(ckpt.safe_load(folder / ckpt.FILE_NAME)["modules"], weights)
