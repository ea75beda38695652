"""Devices, datasets and image folders used the wrong way: each is refused with a clear error that says what
happened and what to do (``error: ...``, exit status 2, nothing written), or skipped and said."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from labkit import data, datasets, image_folder
from labkit.__main__ import main
from labkit.engine import environment

CUDA_HERE = torch.cuda.is_available()
MPS_HERE = torch.backends.mps.is_available()


@pytest.fixture
def course(tmp_path, monkeypatch):
    """An empty data root and runs folder of a smoke-mode course, run from an empty working folder; yields
    the ``--out`` a command would write, which no refused command may create."""
    root = tmp_path / "data"
    root.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("LABKIT_DATA", str(root))
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    monkeypatch.delenv("LABKIT_DEVICE", raising=False)
    monkeypatch.chdir(work)
    return tmp_path / "run"


def refused(capsys, *argv) -> str:
    """Run the command line; assert it refused with one ``error:`` line and exit status 2 before training
    anything; return that line."""
    status = main(list(argv))
    captured = capsys.readouterr()
    assert status == 2 and "epoch" not in captured.out + captured.err, captured
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    return captured.err


def nothing_written(course_out, tmp_path):
    assert not course_out.exists()
    assert not (tmp_path / "runs").exists()
    assert list((tmp_path / "work").iterdir()) == []


# --------------------------------------------------------------------------- devices


@pytest.mark.skipif(CUDA_HERE, reason="a CUDA GPU is here: --device cuda is valid")
@pytest.mark.parametrize("asked", ["cuda", "cuda:1", "CUDA"])
def test_train_on_a_cuda_gpu_that_is_not_here_says_which_devices_are_and_how_to_get_one(
    course, tmp_path, capsys, asked
):
    message = refused(capsys, "train", "ae", "--device", asked, "--out", str(course))
    assert f"device {asked!r} was asked for but no CUDA GPU is visible" in message
    assert "devices here: cpu" + (", mps" if MPS_HERE else "") + ")" in message
    assert environment.gpu_advice() in message and "ask for 'cpu'" in message
    nothing_written(course, tmp_path)


@pytest.mark.skipif(MPS_HERE, reason="Apple's MPS is here: --device mps is valid")
def test_train_on_mps_without_an_apple_gpu_is_refused(course, tmp_path, capsys):
    message = refused(capsys, "train", "vae", "--device", "mps", "--out", str(course))
    assert "device 'mps' was asked for but Apple's MPS backend is not available" in message
    assert "Mac with Apple silicon" in message and "devices here: cpu" in message and "ask for 'cpu'" in message
    nothing_written(course, tmp_path)


@pytest.mark.parametrize("asked", ["gpu0", "tpu", "cuda:x", "cpu:1"])
def test_a_device_name_that_is_no_device_lists_the_names(course, tmp_path, capsys, asked):
    message = refused(capsys, "train", "ae", "--device", asked, "--out", str(course))
    assert f"device {asked!r} is not a device name: choose cpu, cuda" in message and "mps" in message
    assert "devices here: cpu" in message
    nothing_written(course, tmp_path)


@pytest.mark.skipif(CUDA_HERE, reason="a CUDA GPU is here")
def test_labkit_device_naming_a_missing_gpu_is_refused_and_named(course, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LABKIT_DEVICE", "cuda")
    message = refused(capsys, "train", "ae", "--out", str(course))
    assert "device 'cuda' (LABKIT_DEVICE) was asked for but no CUDA GPU is visible" in message
    nothing_written(course, tmp_path)


@pytest.mark.skipif(CUDA_HERE, reason="a CUDA GPU is here")
@pytest.mark.parametrize("asked", ["cuda", "gpu0"])
def test_the_doctor_refuses_a_device_that_is_not_here_before_printing_anything(course, capsys, asked):
    assert main(["doctor", "--device", asked]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"error: device {asked!r}")
    assert "devices here: cpu" in captured.err and captured.err.count("\n") == 1


def test_a_gpu_number_beyond_the_gpus_here_is_refused(fake_gpu_model):
    fake_gpu_model("Tesla T4", (7, 5))  # one supported GPU: cuda and cuda:0 are fine, cuda:3 is not
    assert environment.pick_device("cuda:0", verbose=False) == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"'cuda:3' was asked for but this machine has 1 CUDA GPU, numbered from 0"):
        environment.pick_device("cuda:3", verbose=False)
    with pytest.raises(RuntimeError, match="devices here: cpu, cuda:0"):  # still a RuntimeError, as it always was
        environment.pick_device("cuda:3", verbose=False)


# --------------------------------------------------------------------------- MNIST labels


def write_idx(path, array: np.ndarray):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_digits(raw, bad_label_in="train_y", bad_label=11, at=7):
    """The four MNIST files under ``raw``: 60 + 20 random images, labels 0-9 except one ``bad_label``."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_x": rng.integers(0, 256, (60, 28, 28)),
        "train_y": np.arange(60) % 10,
        "test_x": rng.integers(0, 256, (20, 28, 28)),
        "test_y": np.arange(20) % 10,
    }
    arrays[bad_label_in][at] = bad_label
    for key, name in data.MNIST_FILES.items():
        write_idx(raw / name, arrays[key])


def test_an_mnist_label_outside_0_to_9_stops_training_before_it_starts(course, tmp_path, capsys):
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_digits(raw)
    message = refused(capsys, "train", "cvae", "--epochs", "1", "--no-progress", "--out", str(course))
    assert f"{raw / 'train-labels-idx1-ubyte'}: label 11 at position 7 is outside 0-9" in message
    assert "MNIST has 10 classes" in message and "download MNIST again" in message
    nothing_written(course, tmp_path)


@pytest.mark.parametrize("bad_label_in, file", [("test_y", "t10k-labels-idx1-ubyte"), ("train_y", "train-labels")])
def test_every_mnist_source_checks_its_labels(tmp_path, monkeypatch, bad_label_in, file):
    write_digits(tmp_path / "MNIST" / "raw", bad_label_in, bad_label=255, at=0)
    with pytest.raises(ValueError, match=f"{file}.*: label 255 at position 0 is outside 0-9 \\(1 of its"):
        data.load_mnist(source="local", root=tmp_path, smoke=False, verbose=False)
    kaggle = tmp_path / "kaggle-input"  # the same files attached to a Kaggle notebook
    write_digits(kaggle / "mnist" / "nested", bad_label_in, bad_label=255, at=0)
    monkeypatch.setattr(data, "KAGGLE_INPUT", kaggle)
    with pytest.raises(ValueError, match=f"{file}.*: label 255"):
        data.load_mnist(source="kaggle", smoke=False, verbose=False)
    write_digits(tmp_path / "FashionMNIST" / "raw", bad_label_in, bad_label=10, at=3)  # Fashion-MNIST's layout
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    with pytest.raises(ValueError, match=f"{file}.*: label 10 at position 3 .*Fashion-MNIST has 10 classes"):
        datasets.load_dataset("fashion-mnist", verbose=False)


def test_good_labels_still_load(tmp_path):
    write_digits(tmp_path / "MNIST" / "raw", bad_label=9)
    loaded = data.load_mnist(source="local", root=tmp_path, smoke=False, verbose=False)
    assert loaded.train_y.tolist() == [i % 10 if i != 7 else 9 for i in range(60)]


# --------------------------------------------------------------------------- the dataset's name


@pytest.mark.parametrize("name", ["", "   "])
def test_an_empty_dataset_name_is_refused_with_the_choices_not_read_as_the_current_folder(
    course, tmp_path, capsys, name
):
    message = refused(capsys, "train", "ae", "--dataset", name, "--out", str(course))
    assert f"the dataset name is empty ({name!r}): choose mnist, fashion-mnist, kmnist, cifar10" in message
    assert "for the current folder: '.'" in message
    nothing_written(course, tmp_path)
    with pytest.raises(ValueError, match="the dataset name is empty"):
        datasets.check_dataset(name)
    assert not datasets.is_folder(name)


# --------------------------------------------------------------------------- image folders


def picture(path, colour, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return path


def test_a_folder_of_files_that_are_not_images_says_so_and_what_is_read(course, tmp_path, capsys):
    mine = tmp_path / "my-photos"
    mine.mkdir()
    (mine / "a.png").write_text("<html>a page saved under an image's name</html>")
    (mine / "b.jpg").write_bytes(b"")
    (mine / "c.webp").write_bytes(b"RIFF\x00\x00")
    with pytest.warns(UserWarning, match="skipped 3 of 3 image files"):  # as when some decode
        message = refused(capsys, "train", "ae", "--dataset", str(mine), "--out", str(course))
    assert f"none of the 3 image files under {mine} could be decoded as an image" in message
    assert "(a.png: UnidentifiedImageError (cannot identify image file 'a.png'); b.jpg: " in message
    assert "reads the formats Pillow decodes, by suffix: .bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp" in message
    assert "save them again as .png or .jpg" in message and "download" not in message
    nothing_written(course, tmp_path)


def test_a_folder_with_some_broken_files_still_skips_them_and_says_so(tmp_path):
    mine = tmp_path / "mine"
    for i in range(3):
        picture(mine / f"good{i}.png", (10 * i, 0, 0))
    (mine / "broken.png").write_bytes(b"\x89PNG\r\n")
    with pytest.warns(UserWarning, match=r"skipped 1 of 4 image files .* \(empty, truncated or not images: broken.png"):
        images, names, skipped = image_folder.load_image_folder(mine, 8, verbose=False)
    assert names == ["good0.png", "good1.png", "good2.png"] and skipped == 1 and images.shape == (3, 3, 8, 8)


def test_links_to_files_outside_an_image_folder_are_skipped_never_read_and_said(tmp_path, monkeypatch):
    elsewhere = picture(tmp_path / "private" / "secret.png", (0, 255, 0))
    mine = tmp_path / "mine"
    for i in range(3):
        picture(mine / f"img{i}.png", (255, 0, 0))
    (mine / "sub").mkdir()
    (mine / "sub" / "secret.png").symlink_to(elsewhere)
    (mine / "again.png").symlink_to(mine / "img0.png")  # a link that stays inside is an ordinary file
    (mine / "linked-dir").symlink_to(elsewhere.parent, target_is_directory=True)
    opened = []
    decode = image_folder.decode_image
    monkeypatch.setattr(image_folder, "decode_image", lambda path, size: opened.append(path) or decode(path, size))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, names, skipped = image_folder.load_image_folder(mine, 8, verbose=False)
    assert names == ["again.png", "img0.png", "img1.png", "img2.png"] and skipped == 0
    assert (images[:, 1] == 0).all()  # no green pixel from the file outside
    assert all(path.resolve().is_relative_to(mine.resolve()) for path in opened) and len(opened) == 4
    said = [str(w.message) for w in caught]
    assert said == [
        f"labkit: skipped 1 link under {mine} to files outside it (e.g. sub/secret.png -> {elsewhere}); "
        "copy such files into the folder to use them"
    ]
    assert image_folder.links_outside(mine) == [mine / "sub" / "secret.png"]
    assert image_folder.find_images(mine) == [mine / n for n in names]


def test_a_folder_holding_only_links_to_files_outside_is_refused_as_empty(course, tmp_path, capsys):
    elsewhere = picture(tmp_path / "private" / "secret.png", (0, 255, 0))
    mine = tmp_path / "mine"
    mine.mkdir()
    for i in range(3):
        (mine / f"secret{i}.png").symlink_to(elsewhere)
    message = refused(capsys, "train", "ae", "--dataset", str(mine), "--out", str(course))
    assert f"no image files under {mine} (only 3 links to files outside it, which are never read)" in message
    nothing_written(course, tmp_path)
