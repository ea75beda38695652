"""Checkpoints and runs under hostile but realistic conditions: bytes that rotted on disk, a file whose
tensors do not fit the run it describes, a file that would run code, a run that fails before it wrote
anything, ``--epochs 0``, and a full disk while a checkpoint or the progression GIF is written. Each is
refused or survived with a clear message, and nothing the student had is lost or changed."""

import errno
import json
import os
import re
import shutil

import pytest
import torch

from labkit import progression, submit
from labkit.__main__ import main
from labkit.engine import checkpoint as ckpt
from labkit.engine import files

EPOCHS_TRAINED = "1"


def _cli_environment(monkeypatch, folder):
    """What ``python -m labkit train`` sees in these tests: smoke mode, the offline digits, the CPU,
    and data and runs folders of the test's own."""
    data = folder / "data"
    data.mkdir(exist_ok=True)
    for name, value in {
        "LABKIT_SMOKE": "1",
        "LABKIT_OFFLINE": "1",
        "LABKIT_DEVICE": "cpu",
        "LABKIT_DATA": str(data),
        "LABKIT_RUNS": str(folder / "runs"),
    }.items():
        monkeypatch.setenv(name, value)


def _train(out, *args):
    return main(["train", "vqvae", "--epochs", EPOCHS_TRAINED, "--out", str(out), "--no-progress", *args])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One real smoke run of the VQ-VAE (one epoch: metrics.json, figures, checkpoint), trained once."""
    folder = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _cli_environment(monkeypatch, folder)
        assert _train(folder / "run") == 0
    return folder / "run"


@pytest.fixture
def run(trained_run, tmp_path, monkeypatch):
    """A copy of the trained run that the test may damage, and the environment to resume it in."""
    _cli_environment(monkeypatch, tmp_path)
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def _contents(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def _rewrite(path, edit):
    """Load a checkpoint, change it with ``edit``, save it again without a digest (as a checkpoint
    written before labkit recorded digests, so that the check under test is the one that speaks)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state.pop("sha256", None)
    edit(state)
    torch.save(state, path)


# --------------------------------------------------------------------------- bytes that rotted on disk


def _rot_bytes_inside(path, tensor):
    """Zero 512 bytes in the middle of ``tensor``'s storage inside the checkpoint's zip, in place:
    the file keeps its length and its zip structure, so PyTorch still loads it."""
    raw = bytearray(path.read_bytes())
    stored = tensor.contiguous().numpy().tobytes()
    at = raw.find(stored)
    assert at > 0 and raw.find(stored, at + 1) == -1, "the tensor's bytes are not in the file once"
    middle = at + len(stored) // 2
    raw[middle : middle + 512] = bytes(512)
    path.write_bytes(bytes(raw))


def test_a_checkpoint_whose_tensor_bytes_rotted_is_refused_by_name_and_the_run_is_unchanged(run, capsys):
    path = run / ckpt.FILE_NAME
    weights = torch.load(path, map_location="cpu", weights_only=True)["modules"]["model"]
    largest = max(weights, key=lambda key: weights[key].numel())
    _rot_bytes_inside(path, weights[largest])
    rotten = torch.load(path, map_location="cpu", weights_only=True)["modules"]["model"][largest]
    assert not torch.equal(rotten, weights[largest])  # PyTorch itself notices nothing
    before = _contents(run)

    assert _train(run) == 2
    err = capsys.readouterr().err
    assert f"error: {path} is damaged" in err and "SHA-256" in err
    assert "Put back a copy of the file you kept, or delete it to train the run again" in err
    assert "Traceback" not in err
    assert _contents(run) == before  # metrics.json, figures and the checkpoint as they were

    with pytest.raises(ckpt.CheckpointError, match="is damaged: its contents no longer match"):
        submit.submission_weights(path)  # nor do its weights go into a submission


def test_a_checkpoint_written_before_digests_existed_still_loads(run):
    path = run / ckpt.FILE_NAME
    _rewrite(path, lambda state: None)
    assert set(torch.load(path, weights_only=True)).isdisjoint({"sha256"})
    assert ckpt.Checkpoint(path).load()["epochs_done"] == 1
    assert ckpt.safe_load(path)["epochs_done"] == 1


def test_the_digest_covers_every_tensor_and_number_of_the_checkpoint(run):
    state = ckpt.safe_load(run / ckpt.FILE_NAME)
    recorded = state["sha256"]
    assert (
        re.fullmatch(r"[0-9a-f]{64}", recorded) and files.content_digest(state, leave_out=ckpt.DIGEST_KEY) == recorded
    )
    state["optimizers"]["optimizer"]["state"][0]["exp_avg"].view(-1)[0] += 1e-6
    assert files.content_digest(state, leave_out=ckpt.DIGEST_KEY) != recorded
    state = ckpt.safe_load(run / ckpt.FILE_NAME)
    state["history"][0]["train_loss"] = float(state["history"][0]["train_loss"]) + 1e-12
    assert files.content_digest(state, leave_out=ckpt.DIGEST_KEY) != recorded


# --------------------------------------------------------------------------- tensors that do not fit


def _reshaped(state):
    weight = state["modules"]["model"]["encoder.0.weight"]
    state["modules"]["model"]["encoder.0.weight"] = torch.zeros(weight.shape[0] + 1, *weight.shape[1:])


@pytest.mark.parametrize(
    "edit, named",
    [
        (_reshaped, r"the tensor model\.encoder\.0\.weight has shape \(33, 1, 4, 4\), where .* has \(32, 1, 4, 4\)"),
        (
            lambda state: state["modules"]["model"].pop("decoder.4.bias"),
            r"the tensor model\.decoder\.4\.bias is missing",
        ),
        (lambda state: state.pop("modules"), r'not a complete labkit checkpoint: it has no "modules" entry'),
        (lambda state: state["optimizers"].clear(), r'it holds no state of the optimiser "optimizer"'),
        (lambda state: state.pop("optimizers"), r'not a complete labkit checkpoint: it has no "optimizers" entry'),
    ],
    ids=["other-shape", "tensor-missing", "no-modules", "no-optimizer-state", "no-optimizers"],
)
def test_a_checkpoint_whose_tensors_do_not_fit_its_run_is_refused_naming_file_and_tensor(run, capsys, edit, named):
    path = run / ckpt.FILE_NAME
    _rewrite(path, edit)
    before = _contents(run)
    assert _train(run) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} ") and re.search(named, err), err
    assert "Traceback" not in err and "size mismatch" not in err
    assert _contents(run) == before


# --------------------------------------------------------------------------- a file that would run code


class _RunsCode:
    """Unpickling this creates a folder: a stand-in for any code a malicious file could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_the_refusal_of_a_file_that_would_run_code_names_what_it_asked_for_in_whole_sentences(tmp_path):
    marker = tmp_path / "code-was-run"
    path = tmp_path / ckpt.FILE_NAME
    torch.save({"format": "labkit-checkpoint", "version": 1, "payload": _RunsCode(marker)}, path)
    with pytest.raises(ckpt.CheckpointError) as refused:
        ckpt.safe_load(path)
    message = str(refused.value)
    assert f"GLOBAL {os.mkdir.__module__}.mkdir" in message  # what the file asked PyTorch to call
    sentences = re.split(r"(?<=[.!?])\s+", message)
    assert all(s[-1] in ".!?" for s in sentences), message  # nothing cut off mid-sentence
    assert "weights_only` set to `False`" not in message  # no advice to load it unsafely
    assert message.endswith("If you did not make this file, delete it.")
    assert not marker.exists()


# --------------------------------------------------------------------------- runs that fail early


def test_a_run_that_fails_before_writing_anything_leaves_no_folder(tmp_path, monkeypatch, capsys):
    _cli_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path / "no-such-data"))  # fails while loading the data
    out = tmp_path / "new" / "deeper" / "run"
    assert _train(out) == 2
    assert "LABKIT_DATA" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_a_training_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path, monkeypatch, capsys):
    _cli_environment(monkeypatch, tmp_path)
    out = tmp_path / "gan-run"
    # the GAN trains on whole batches only: one batch larger than the 2,000 smoke images fails in fit
    assert main(["train", "gan", "--epochs", "1", "--batch-size", "4096", "--out", str(out), "--no-progress"]) == 2
    assert "trains on whole batches only" in capsys.readouterr().err
    assert not out.exists()


def test_a_failed_run_never_removes_a_folder_that_was_there_before(tmp_path, monkeypatch):
    _cli_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path / "no-such-data"))
    out = tmp_path / "my-folder"
    out.mkdir()
    assert _train(out) == 2
    assert out.is_dir()


# --------------------------------------------------------------------------- zero epochs


def test_epochs_0_is_refused_with_what_to_give_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    _cli_environment(monkeypatch, tmp_path)
    out = tmp_path / "run"
    assert main(["train", "vae", "--epochs", "0", "--out", str(out), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "error: --epochs 0 trains nothing" in captured.err and "--epochs 1 or more" in captured.err
    assert "NaN" not in captured.out + captured.err
    assert not out.exists()


def _strict(text):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_metrics_json_is_strict_json_with_null_for_what_was_not_measured(tmp_path, mnist_offline):
    from labkit import vae

    cfg = vae.VAESettings(epochs=0, variant="narrow")  # the API still evaluates an untrained model
    trained = vae.run_vae(cfg, out=tmp_path / "run", device="cpu", progress=False, data=mnist_offline)
    record = _strict((tmp_path / "run" / "metrics.json").read_text())
    assert record["history"] == [] and record["epochs"] == 0
    assert record["final"]["seconds_per_epoch"] is None
    assert trained.final["seconds_per_epoch"] is None
    assert record["final"]["test_mse"] == pytest.approx(trained.final["test_mse"]) and record["final"]["test_mse"] > 0


# --------------------------------------------------------------------------- a full disk


def _full_disk_after(n_bytes):
    def write(f, data):
        f.write(bytes(data[:n_bytes]))
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


def test_a_full_disk_while_a_checkpoint_is_written_keeps_the_previous_one_and_no_temporary_file(run, monkeypatch):
    path = run / ckpt.FILE_NAME
    before = _contents(run)
    state = ckpt.safe_load(path)
    monkeypatch.setattr(torch, "save", lambda obj, f: _full_disk_after(4096)(f, b"PK" * 10_000))
    with pytest.raises(
        OSError, match=r"could not write the checkpoint .* the previous checkpoint, if any, is unchanged"
    ):
        ckpt.atomic_save(state, path)
    assert _contents(run) == before


def test_a_full_disk_while_the_progression_gif_is_written_keeps_the_previous_gif(tmp_path, monkeypatch):
    from PIL import GifImagePlugin, Image

    frames = [torch.rand(8, 1, 28, 28) * 2 - 1 for _ in range(3)]
    path = progression.progression_gif(frames, [1, 2, 3], tmp_path / "progression.gif")
    before = path.read_bytes()
    with Image.open(path) as gif:
        assert gif.n_frames == 3

    write_frame = GifImagePlugin._write_frame_data
    calls = []

    def disk_fills_on_the_second_frame(fp, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_frame(fp, *args, **kwargs)

    monkeypatch.setattr(GifImagePlugin, "_write_frame_data", disk_fills_on_the_second_frame)
    with pytest.raises(OSError, match="No space left"):
        progression.progression_gif([f * 0 for f in frames], [4, 5, 6], path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["progression.gif"]
