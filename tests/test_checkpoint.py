"""Checkpoints: a resumed run equals an uninterrupted one, a kill never breaks the file, a file
that would run code is refused, another run's checkpoint is refused by name, NaNs stop training."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from labkit import gan, progression
from labkit.ae import Autoencoder, AutoencoderTraining
from labkit.engine import checkpoint as ckpt
from labkit.engine import environment
from labkit.engine.environment import seed_everything
from labkit.engine.loop import TrainingDiverged, fit
from labkit.engine.training import Precision
from labkit.gan import nets as gan_nets
from labkit.vae import VAETraining, make_vae

ROOT = Path(__file__).resolve().parent.parent


def _ae_run(x, epochs, folder, seed=0, **config):
    seed_everything(seed)
    training = AutoencoderTraining(Autoencoder(latent_dim=config.get("latent_dim", 8)), lr=config.get("lr", 1e-3))
    history = fit(
        training,
        x,
        x[:64],
        epochs=epochs,
        batch_size=32,
        progress=False,
        checkpoint=folder,
        config={"lr": config.get("lr", 1e-3), "latent_dim": config.get("latent_dim", 8), "epochs": epochs},
    )
    return training, history


def _without_seconds(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_resuming_in_a_new_model_ends_exactly_like_an_uninterrupted_run(tmp_path, mnist_offline, capsys):
    x = mnist_offline.train_x[:512]
    full, full_history = _ae_run(x, 3, tmp_path / "full")
    _ae_run(x, 2, tmp_path / "cut")  # "disconnected" after epoch 2
    torch.manual_seed(1234)  # a new session: other random state, other init
    resumed, resumed_history = _ae_run(x, 3, tmp_path / "cut", seed=99)
    assert "resuming ae" in capsys.readouterr().out
    assert _without_seconds(resumed_history) == _without_seconds(full_history)
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert ckpt.safe_load(tmp_path / "cut" / ckpt.FILE_NAME)["epochs_done"] == 3


def test_a_finished_run_is_not_trained_again(tmp_path, mnist_offline, capsys):
    x = mnist_offline.train_x[:256]
    first, _ = _ae_run(x, 2, tmp_path)
    second, history = _ae_run(x, 2, tmp_path, seed=5)
    assert "nothing left to train" in capsys.readouterr().out
    assert len(history) == 2
    assert all(torch.equal(a, b) for a, b in zip(first.model.parameters(), second.model.parameters()))


def test_gan_resume_restores_both_optimisers_and_the_fixed_noise_frames(tmp_path, mnist_offline):
    x = mnist_offline.train_x[:256]

    def run(epochs, folder, seed):
        seed_everything(seed)
        G, D = gan_nets.mlp_gan(16)
        training = gan.GANTraining(G, D, latent_dim=16)
        recorder = progression.FixedNoise(G, n=8, seed=seed)
        fit(
            training,
            x,
            None,
            epochs=epochs,
            batch_size=64,
            progress=False,
            callbacks=[recorder],
            checkpoint=folder,
            config={"seed": 0},
        )
        return training, recorder

    full, full_frames = run(3, tmp_path / "full", 0)
    run(1, tmp_path / "cut", 0)
    resumed, frames = run(3, tmp_path / "cut", 7)
    assert frames.epochs == [1, 2, 3]
    assert torch.equal(frames.z, full_frames.z)
    for a, b in zip(frames.frames, full_frames.frames):
        assert (a - b).abs().max() <= 1 / 127.5 + 1e-6  # frames are stored as 8-bit images
    for a, b in zip(full.generator.parameters(), resumed.generator.parameters()):
        assert torch.equal(a, b)
    assert resumed.opt_d.state_dict()["state"][0]["step"] == full.opt_d.state_dict()["state"][0]["step"]


def test_a_checkpoint_of_other_settings_is_refused_naming_the_difference(tmp_path, mnist_offline):
    x = mnist_offline.train_x[:128]
    _ae_run(x, 1, tmp_path, lr=1e-3)
    with pytest.raises(ckpt.CheckpointError, match=r"saved with lr=0\.001, this run has lr=0\.002"):
        _ae_run(x, 2, tmp_path, lr=2e-3)


def test_settings_added_later_match_a_checkpoint_saved_without_them_only_at_their_old_behaviour():
    def run(**config):
        return {"objective": "gan", "shapes": {}, "config": config, "train_images": [8, 1, 28, 28]}

    before = run(lr=2e-4)  # saved before the GANs had loss, n_critic, gp_weight and spectral_norm
    now = dict(ckpt.ADDED_SETTINGS, lr=2e-4)
    assert ckpt.mismatch(before, run(**now)) == []
    assert ckpt.mismatch(before, run(**{**now, "spectral_norm": True})) == [
        "it was saved with spectral_norm=False, this run has spectral_norm=True"
    ]
    assert ckpt.mismatch(before, run(**{**now, "lr_schedule": "linear"})) == [  # a diffusion run's falling rate
        "it was saved with lr_schedule='constant', this run has lr_schedule='linear'"
    ]
    assert ckpt.mismatch(before, run(**{**now, "upsample": "resize"})) == [  # a DCGAN's G from before resized
        "it was saved with upsample='transposed', this run has upsample='resize'"
    ]
    assert ckpt.mismatch(run(lr=2e-4), run(lr=2e-4, width=8)) == [
        "it was saved with width='<unset>', this run has width=8"
    ]


def test_how_samples_are_drawn_is_not_compared_even_in_a_checkpoint_saved_when_it_was():
    """Sampler, steps, guidance and compile are left out of a run's description; a checkpoint saved when they
    were still in it (every diffusion run before) resumes all the same, and what it learned is still compared."""

    def run(**config):
        return {"objective": "diffusion", "shapes": {}, "config": config, "train_images": [8, 1, 28, 28]}

    class Training:
        name, modules = "diffusion", {}

    drawn = {"sampler": "heun", "sample_steps": 16, "guidance": 2.0, "compile": False, "epochs": 65}
    now = ckpt.describe(Training(), {"lr": 1e-3, **drawn}, torch.zeros(8, 1, 28, 28))
    assert now == run(lr=1e-3)
    saved_before = run(lr=1e-3, sampler=None, sample_steps=None, guidance=2.0, compile=False)
    assert ckpt.mismatch(saved_before, now) == []
    assert ckpt.mismatch(run(lr=1e-3, sampler="euler"), run(lr=2e-3)) == [
        "it was saved with lr=0.001, this run has lr=0.002"
    ]


def test_a_checkpoint_of_another_architecture_is_refused_before_torch_sees_the_shapes(tmp_path, mnist_offline):
    x = mnist_offline.train_x[:128]
    _ae_run(x, 1, tmp_path, latent_dim=8)
    seed_everything(0)
    training = AutoencoderTraining(Autoencoder(latent_dim=4))
    with pytest.raises(ckpt.CheckpointError, match=r"its layers differ .*encoder"):
        fit(training, x, epochs=2, batch_size=32, progress=False, checkpoint=tmp_path)
    seed_everything(0)
    with pytest.raises(ckpt.CheckpointError, match="it trains a 'ae' model, this run a 'vae'"):
        fit(VAETraining(make_vae("latent2")), x, epochs=2, batch_size=32, progress=False, checkpoint=tmp_path)


class _RunsCode:
    """Unpickling this creates a folder: a stand-in for any code a malicious file could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_and_the_code_never_runs(tmp_path, mnist_offline):
    marker = tmp_path / "code-was-run"
    path = tmp_path / ckpt.FILE_NAME
    torch.save({"format": ckpt.FORMAT, "version": ckpt.VERSION, "epochs_done": 5, "payload": _RunsCode(marker)}, path)
    with pytest.raises(ckpt.CheckpointError, match="refused to load .* could run arbitrary code"):
        ckpt.safe_load(path)
    with pytest.raises(ckpt.CheckpointError, match="refused to load"):
        fit(
            AutoencoderTraining(Autoencoder()),
            mnist_offline.train_x[:64],
            epochs=1,
            batch_size=32,
            progress=False,
            checkpoint=tmp_path,
        )
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "damaged or not a checkpoint"),
        (b"PK\x03\x04 truncated zip", "damaged or not a checkpoint"),
    ],
)
def test_damaged_files_get_a_clear_error(tmp_path, content, message):
    path = tmp_path / ckpt.FILE_NAME
    path.write_bytes(content)
    with pytest.raises(ckpt.CheckpointError, match=message):
        ckpt.safe_load(path)


def test_a_file_of_plain_weights_is_not_taken_for_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(Autoencoder().state_dict(), path)
    with pytest.raises(ckpt.CheckpointError, match="not a labkit checkpoint"):
        ckpt.safe_load(path)


def test_random_generators_are_restored_exactly():
    import random

    import numpy as np

    seed_everything(3)
    state = environment.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(4)
    environment.set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / ckpt.FILE_NAME
    script = (
        "import sys, torch\n"
        "from labkit.engine import checkpoint as c\n"
        "blob = torch.arange(4_000_000, dtype=torch.float32)\n"
        "i = 0\n"
        "while True:\n"
        "    i += 1\n"
        "    state = {'format': c.FORMAT, 'version': c.VERSION, 'epochs_done': i, 'blob': blob + i}\n"
        "    c.atomic_save(state, sys.argv[1])\n"
    )
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while not path.exists():
                assert time.monotonic() < deadline, "the writer never produced a checkpoint"
                time.sleep(0.01)
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        state = ckpt.safe_load(path)  # complete and consistent: the data of one save, not of two
        assert torch.equal(state["blob"], torch.arange(4_000_000, dtype=torch.float32) + state["epochs_done"])


class _PoisonedBatch(AutoencoderTraining):
    """Puts a NaN into one batch of one epoch, as a corrupted image or an overflow would."""

    def __init__(self, model, at_epoch, at_step):
        super().__init__(model)
        self.at, self.epoch, self.step = (at_epoch, at_step), 1, 0

    def train_step(self, x):
        self.step += 1
        if (self.epoch, self.step) == self.at:
            x = x.clone()
            x[0, 0, 0, 0] = float("nan")
        return super().train_step(x)

    def epoch_end(self, record, history):
        self.epoch, self.step = self.epoch + 1, 0


def test_a_nan_in_a_batch_stops_training_naming_model_epoch_and_step_and_keeps_the_good_checkpoint(tmp_path):
    x = torch.rand(128, 1, 28, 28)
    training = _PoisonedBatch(Autoencoder(latent_dim=4), at_epoch=2, at_step=3)
    with pytest.raises(TrainingDiverged, match=r"ae: .*non-finite .* in epoch 2, step 3 of 4 .*last good epoch \(1\)"):
        fit(training, x, epochs=3, batch_size=32, progress=False, checkpoint=tmp_path)
    state = ckpt.safe_load(tmp_path / ckpt.FILE_NAME)
    assert state["epochs_done"] == 1
    assert all(torch.isfinite(t).all() for t in state["modules"]["model"].values())


def test_a_full_disk_is_reported_before_training(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 20, 10 << 20, 1 << 20))
    training = AutoencoderTraining(Autoencoder())
    before = [p.clone() for p in training.model.parameters()]
    with pytest.raises(OSError, match="MiB free in .* Free some space or choose another output folder"):
        fit(training, torch.rand(32, 1, 28, 28), epochs=1, batch_size=32, progress=False, checkpoint=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(before, training.model.parameters()))


def test_the_gradient_scaler_of_float16_training_is_saved_and_restored(tmp_path):
    x = torch.rand(64, 1, 28, 28)
    seed_everything(0)
    training = AutoencoderTraining(Autoencoder(latent_dim=4))
    fit(training, x, epochs=1, batch_size=32, progress=False, checkpoint=tmp_path, precision="fp16")
    saved = ckpt.safe_load(tmp_path / ckpt.FILE_NAME)["scaler"]
    assert saved["scale"] == training.precision.scaler.get_scale()
    fresh = AutoencoderTraining(Autoencoder(latent_dim=4))
    fresh.precision = Precision("cpu", "fp16")
    state = ckpt.Checkpoint(tmp_path).load()
    ckpt.Checkpoint(tmp_path).restore(state, fresh, [], [], x)
    assert fresh.precision.scaler.state_dict() == training.precision.scaler.state_dict()


def _train_command(out):
    return [sys.executable, "-m", "labkit", "train", "vae", "--epochs", "6", "--out", str(out), "--no-progress"]


@pytest.mark.slow
def test_sigkill_mid_run_then_the_same_command_ends_like_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "LABKIT_SMOKE": "1", "LABKIT_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cut, whole = tmp_path / "cut", tmp_path / "whole"
    proc = subprocess.Popen(_train_command(cut), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    path, deadline = cut / ckpt.FILE_NAME, time.monotonic() + 240
    try:
        while not (path.exists() and ckpt.safe_load(path)["epochs_done"] >= 2):
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "no checkpoint of epoch 2 appeared"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    killed_at = ckpt.safe_load(path)["epochs_done"]
    assert 2 <= killed_at < 6 and not (cut / "metrics.json").exists()

    again = subprocess.run(_train_command(cut), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming vae from {path}: {killed_at} epoch(s) done" in again.stdout
    uninterrupted = subprocess.run(
        _train_command(whole), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]

    resumed, reference = (json.loads((d / "metrics.json").read_text()) for d in (cut, whole))
    assert _without_seconds(resumed["history"]) == _without_seconds(reference["history"])
    timing = {"seconds_per_epoch"}
    assert {k: v for k, v in resumed["final"].items() if k not in timing} == {
        k: v for k, v in reference["final"].items() if k not in timing
    }
    a, b = (ckpt.safe_load(d / ckpt.FILE_NAME)["modules"]["model"] for d in (cut, whole))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_callback_state_follows_its_class_not_its_position(tmp_path, mnist_offline):
    x = mnist_offline.train_x[:128]
    seed_everything(0)
    G, D = gan_nets.mlp_gan(16)
    recorder = progression.FixedNoise(G, n=4, seed=0)
    fit(
        gan.GANTraining(G, D, latent_dim=16),
        x,
        epochs=1,
        batch_size=64,
        progress=False,
        callbacks=[recorder],
        checkpoint=tmp_path,
    )  # as a headless recipe: the recorder alone
    G2, D2 = gan_nets.mlp_gan(16)
    recorder2 = progression.FixedNoise(G2, n=4, seed=0)
    live = lambda epoch, record, history: None  # noqa: E731 - a stateless callback in front, as a live plot
    fit(
        gan.GANTraining(G2, D2, latent_dim=16),
        x,
        epochs=2,
        batch_size=64,
        progress=False,
        callbacks=[live, recorder2],
        checkpoint=tmp_path,
    )  # as the notebook: live plot first
    assert recorder2.epochs == [1, 2]
