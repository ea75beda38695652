"""TensorBoard logging (``labkit.engine.tensorboard``): ``python -m labkit train MODEL --tensorboard`` writes,
per epoch, exactly the numbers of the run's metrics.json and the picture of its progress (the AE's
reconstructions, the GAN's fixed noise, read back pixel by pixel); without tensorboard the switch stops
before any training and says how to install it.
"""

import io
import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from labkit import ae, vae
from labkit.__main__ import main
from labkit.data import load_mnist
from labkit.engine import distributed, tensorboard
from labkit.engine.tensorboard import TensorBoardLogger, TensorBoardMissing, progress_images, scalar_name
from labkit.vae import cvae, vqvae

SIZE, PAD = 28, 2  # an MNIST image, and make_grid's padding between images


@pytest.fixture
def smoke(monkeypatch, tmp_path):
    """Smoke mode, with the data root (and the digit classifier's cache) in the test's folder."""
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()


def train(model: str, out, epochs: int = 2) -> int:
    args = ["train", model, "--epochs", str(epochs), "--out", str(out), "--device", "cpu", "--no-progress"]
    return main([*args, "--tensorboard"])


def read_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})  # 0: keep every event
    events.Reload()
    return events


def picture(event) -> np.ndarray:
    """An image event as an (H, W, 3) array of whole numbers 0-255."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB")).astype(int)


def tile(grid: np.ndarray, row: int, col: int) -> np.ndarray:
    """The image in ``row``, ``col`` of a make_grid picture of 28 x 28 images (its first channel)."""
    top, left = PAD + row * (SIZE + PAD), PAD + col * (SIZE + PAD)
    return grid[top : top + SIZE, left : left + SIZE, 0]


def as_bytes(images: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] (N, 1, 28, 28) as 0-255 (N, 28, 28)."""
    return (images[:, 0] * 255).numpy()


def assert_scalars_are_the_history(events, history: list[dict]) -> None:
    """Every number of every epoch's record, under its TensorBoard name, at step = epoch, equal in float32."""
    keys = {k for record in history for k in record if k != "epoch"}
    assert set(events.Tags()["scalars"]) == {scalar_name(k) for k in keys}
    for key in keys:
        logged = [(e.step, e.value) for e in events.Scalars(scalar_name(key))]
        assert logged == [(r["epoch"], float(np.float32(r[key]))) for r in history], key


def test_names_put_train_and_test_of_a_quantity_together():
    assert scalar_name("train_loss") == "loss/train" and scalar_name("test_loss") == "loss/test"
    assert scalar_name("train_d_real") == "d_real/train" and scalar_name("test_bce") == "bce/test"
    assert scalar_name("seconds") == "seconds" and scalar_name("train") == "train"


@pytest.mark.slow
def test_ae_run_logs_its_history_and_reconstructions(smoke, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "ae"
    assert train("ae", out) == 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]
    events = read_events(out / "tensorboard")
    assert_scalars_are_the_history(events, history)
    images = events.Images("progress")
    width, height = PAD + 8 * (SIZE + PAD), PAD + 2 * (SIZE + PAD)  # 8 test digits above their reconstructions
    assert [(e.step, e.width, e.height) for e in images] == [(1, width, height), (2, width, height)]
    x = load_mnist("cpu", source="offline-subset", smoke=True, verbose=False).test_x[:8]
    model = ae.Autoencoder().eval()
    model.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=True)["modules"]["model"])
    with torch.no_grad():
        reconstructions = model(x)
    grid = picture(images[-1])  # after epoch 2: the final weights
    for i, (original, reconstruction) in enumerate(zip(as_bytes(x), as_bytes(reconstructions))):
        np.testing.assert_allclose(tile(grid, 0, i), original, atol=1)
        np.testing.assert_allclose(tile(grid, 1, i), reconstruction, atol=1)


@pytest.mark.slow
def test_gan_run_logs_its_history_and_fixed_noise(smoke, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "gan"
    assert train("gan", out) == 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    events = read_events(out / "tensorboard")
    assert_scalars_are_the_history(events, history)
    images = events.Images("progress")
    side = PAD + 8 * (SIZE + PAD)  # 8 x 8 images
    assert [(e.step, e.width, e.height) for e in images] == [(1, side, side), (2, side, side)]
    recorded = torch.load(out / "checkpoint.pt", weights_only=True)["callbacks"]["FixedNoise"]
    assert recorded["epochs"] == [1, 2]
    for event, frame in zip(images, recorded["frames"]):  # the progression's frames, as 8-bit images
        grid = picture(event)
        for i, image in enumerate(frame[:, 0].numpy().astype(int)):
            np.testing.assert_allclose(tile(grid, i // 8, i % 8), image, atol=1)


def test_without_tensorboard_the_switch_says_how_to_install_it_before_training(smoke, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    out = tmp_path / "ae"
    assert train("ae", out) == 2
    error = capsys.readouterr().err
    assert "pip install tensorboard" in error and 'pip install "labkit[tensorboard]"' in error
    assert not out.exists()  # stopped before the run folder, the data and the first epoch
    with pytest.raises(TensorBoardMissing, match="pip install tensorboard"):
        TensorBoardLogger(tmp_path / "logs")  # a notebook's logger fails when made, before fit


@pytest.mark.slow
def test_under_torchrun_only_rank_0_writes(smoke, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.setattr(distributed, "is_main", lambda: False)  # this process is rank 1
    out = tmp_path / "ae"
    assert train("ae", out, epochs=1) == 0
    assert not (out / tensorboard.FOLDER).exists()


def test_training_a_folder_again_replaces_the_epochs_it_starts_from(tmp_path):
    pytest.importorskip("tensorboard")
    with TensorBoardLogger(tmp_path) as cut_off:
        for epoch in (1, 2, 3):
            cut_off(epoch, {"epoch": epoch, "train_loss": 10.0 + epoch}, [])
    with TensorBoardLogger(tmp_path) as resumed:  # resumed from a checkpoint of epoch 1
        resumed(2, {"epoch": 2, "train_loss": 0.5}, [])
    assert [(e.step, e.value) for e in read_events(tmp_path).Scalars("loss/train")] == [(1, 11.0), (2, 0.5)]


@pytest.mark.parametrize("name", ["ae", "vae", "cvae", "vqvae"])
def test_reconstruction_pictures_draw_no_random_numbers(name):
    training = {
        "ae": lambda: ae.AESettings().training(),
        "vae": lambda: vae.VAESettings().training(),
        "cvae": lambda: cvae.CVAESettings().training(),
        "vqvae": lambda: vqvae.VQVAESettings().training(),
    }[name]()
    data = SimpleNamespace(test_x=torch.rand(10, 1, 28, 28), test_y=torch.arange(10))
    model = training.modules["model"].train()
    images = progress_images(training, data, labels=name == "cvae")
    state = torch.get_rng_state()
    first, second = images(), images()
    assert torch.equal(torch.get_rng_state(), state)  # the training's random numbers are untouched
    assert torch.equal(first, second) and first.shape == (16, 1, 28, 28)
    assert torch.equal(first[:8], data.test_x[:8]) and 0 <= float(first.min()) <= float(first.max()) <= 1
    assert model.training  # left in the mode it was in
