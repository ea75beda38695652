"""Abstract-art data: the folder loader on folders written here (every kind of file the real gallery
and the internet produce), the cache, the synthetic stand-in, the source order, Kaggle without
network, and CIFAR-10's clear refusal offline."""

import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from labkit import art, image_folder

VALID = ["a/b/UPPER.JPG", "a/b/gray.png", "a/blue.png", "a/clear.png", "cyan.jpg", "palette.png", "red.jpg"]
BROKEN = ["a/b/truncated.jpg", "empty.jpg", "error.jpg", "notes.jpg"]


def write_gallery(root):
    """Seven decodable images and four broken ones, nested, in the formats the real gallery mixes."""
    (root / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (70, 50), (255, 0, 0)).save(root / "red.jpg", quality=95)  # odd size JPEG
    Image.new("RGB", (64, 64), (0, 0, 255)).save(root / "a" / "blue.png")  # PNG, nested
    Image.new("L", (33, 47), 128).save(root / "a" / "b" / "gray.png")  # grayscale, odd size
    Image.new("RGBA", (40, 40), (0, 255, 0, 0)).save(root / "a" / "clear.png")  # fully transparent
    Image.new("CMYK", (64, 80), (255, 0, 0, 0)).save(root / "cyan.jpg")  # CMYK JPEG: pure cyan
    Image.new("P", (30, 30), 3).save(root / "palette.png")  # palette image
    Image.new("RGB", (100, 100), (0, 128, 0)).save(root / "a" / "b" / "UPPER.JPG")  # upper-case suffix
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", quality=90)
    (root / "a" / "b" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "error.jpg").write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    (root / "notes.jpg").write_text("this is not a picture")
    (root / "readme.txt").write_text("not an image suffix: neither loaded nor counted")


@pytest.fixture
def gallery(tmp_path):
    root = tmp_path / "gallery"
    write_gallery(root)
    return root


@pytest.fixture
def no_kaggle(tmp_path, monkeypatch):
    """No Kaggle input folder, no credentials and no network: importing the kaggle package would fail
    the test (the real one ends the process without credentials); kagglehub imports, as the real one
    does, and its download fails as it does offline."""
    monkeypatch.setattr(art, "KAGGLE_INPUT", tmp_path / "no-kaggle-input")
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    fake = tmp_path / "fake-packages"
    (fake / "kaggle").mkdir(parents=True)
    (fake / "kaggle" / "__init__.py").write_text("raise SystemExit('imported without credentials')\n")
    (fake / "kagglehub").mkdir(parents=True)
    (fake / "kagglehub" / "__init__.py").write_text(
        "def dataset_download(handle):\n    raise ConnectionError('Failed to resolve www.kaggle.com (offline)')\n"
    )
    monkeypatch.syspath_prepend(str(fake))
    for package in ("kaggle", "kagglehub"):
        monkeypatch.delitem(sys.modules, package, raising=False)
    return tmp_path


# --------------------------------------------------------------------------- the folder loader


def test_folder_loader_decodes_exactly_the_valid_files_and_counts_the_rest_in_one_warning(gallery):
    with pytest.warns(UserWarning) as caught:
        images, names, skipped = image_folder.load_image_folder(gallery, size=64, verbose=False)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "skipped 4 of 11" in message and "\n" not in message
    assert names == VALID and skipped == len(BROKEN)
    assert images.shape == (7, 3, 64, 64) and images.dtype == torch.uint8
    centre = {name: images[i, :, 32, 32].tolist() for i, name in enumerate(names)}
    assert centre["a/b/gray.png"] == [128, 128, 128]  # grayscale becomes three equal channels
    assert centre["a/blue.png"] == [0, 0, 255]
    assert centre["a/clear.png"] == [255, 255, 255]  # transparency lands on white
    assert np.allclose(centre["red.jpg"], [255, 0, 0], atol=12)  # JPEG is lossy
    assert np.allclose(centre["cyan.jpg"], [0, 255, 255], atol=12)  # CMYK (255, 0, 0, 0) is cyan
    assert np.allclose(centre["a/b/UPPER.JPG"], [0, 128, 0], atol=12)


def test_resize_keeps_the_centre_of_a_wide_image():
    # 100 x 50: blue side bands of 25 columns and a green square of 50 x 50 in the middle
    array = np.zeros((50, 100, 3), dtype=np.uint8)
    array[:, :25] = array[:, 75:] = (0, 0, 255)
    array[:, 25:75] = (0, 255, 0)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    buffer.seek(0)
    out = image_folder.decode_image(buffer, 32)
    assert out.shape == (32, 32, 3)
    assert (out[:, 2:-2] == (0, 255, 0)).all()  # only the green centre survives (edges may blend a little)


def test_second_load_reads_the_cache_and_a_changed_file_invalidates_it(gallery, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning):
        first = image_folder.load_image_folder(gallery, 64, cache_dir=cache, verbose=False)
    assert len(list(cache.glob("abstract-art-64px-*.pt"))) == 1
    calls = []
    decode = image_folder.decode_image
    monkeypatch.setattr(image_folder, "decode_image", lambda path, size: calls.append(path) or decode(path, size))
    second = image_folder.load_image_folder(gallery, 64, cache_dir=cache, verbose=False)
    assert calls == []  # nothing decoded
    assert torch.equal(first[0], second[0]) and first[1:] == second[1:]
    Image.new("RGB", (64, 64), (255, 255, 0)).save(gallery / "a" / "blue.png")  # now yellow
    with pytest.warns(UserWarning):
        third = image_folder.load_image_folder(gallery, 64, cache_dir=cache, verbose=False)
    assert len(calls) == 11
    assert third[0][VALID.index("a/blue.png"), :, 32, 32].tolist() == [255, 255, 0]
    assert len(list(cache.glob("abstract-art-64px-*.pt"))) == 2
    with pytest.warns(UserWarning):
        image_folder.load_image_folder(gallery, 32, cache_dir=cache, verbose=False)  # another size is another cache
    assert len(list(cache.glob("abstract-art-32px-*.pt"))) == 1


def test_a_folder_without_decodable_images_is_an_error(tmp_path):
    (tmp_path / "only-broken").mkdir()
    (tmp_path / "only-broken" / "x.jpg").write_text("<html>")
    with pytest.raises(ValueError, match="none of the 1 image files"), pytest.warns(UserWarning):
        image_folder.load_image_folder(tmp_path / "only-broken")
    with pytest.raises(FileNotFoundError, match="no image files"):
        image_folder.load_image_folder(tmp_path / "no-such-folder")


# --------------------------------------------------------------------------- the synthetic stand-in


def test_synthetic_stand_in_is_deterministic_per_seed_and_differs_across_seeds():
    a, b, c = art.synthetic_art(12, seed=0), art.synthetic_art(12, seed=0), art.synthetic_art(12, seed=1)
    assert a.shape == (12, 3, 64, 64) and a.dtype == torch.uint8
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and (a.float() - c.float()).abs().mean() > 20
    assert torch.equal(art.synthetic_art(5, seed=0), a[:5])  # image i depends on (seed, i) only
    flat = a.flatten(1).float()
    assert (flat.std(1) > 10).all()  # no blank images
    assert torch.cdist(flat, flat).fill_diagonal_(1e9).min() > 100  # no two images alike


# --------------------------------------------------------------------------- sources, Kaggle, CIFAR-10


def test_offline_default_is_the_labelled_stand_in_and_says_how_to_get_the_real_data(no_kaggle, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_DATA", str(no_kaggle))
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    monkeypatch.delenv("LABKIT_OFFLINE", raising=False)  # the download path runs, and must not import kaggle
    data = art.load_abstract_art()
    out = capsys.readouterr().out
    assert data.source == "synthetic-stand-in" and "synthetic stand-in" in data.label
    assert data.n_train == art.SMOKE_IMAGES and data.n_test == 0
    assert data.train_x.dtype == torch.float32 and 0 <= data.train_x.min() and data.train_x.max() <= 1
    assert "KAGGLE_USERNAME" in out and "kaggle.json" in out and "SYNTHETIC STAND-IN" in out
    assert torch.equal(data.train_x, art.synthetic_art(art.SMOKE_IMAGES).float() / 255)


def test_images_under_the_data_root_win_in_any_nesting(no_kaggle, monkeypatch):
    write_gallery(no_kaggle / "abstract-art" / "Abstract_gallery" / "Abstract_gallery")
    monkeypatch.setenv("LABKIT_DATA", str(no_kaggle))
    with pytest.warns(UserWarning, match="skipped 4"):
        data = art.load_abstract_art(verbose=False)
    assert data.source == "local-folder" and data.n_train == len(VALID)
    assert list((no_kaggle / "cache").glob("abstract-art-64px-*.pt"))  # cached under the data root


def test_a_kaggle_input_folder_is_found(no_kaggle, monkeypatch):
    kaggle_input = no_kaggle / "kaggle-input"
    write_gallery(kaggle_input / "abstract-art-gallery" / "Abstract_gallery")
    monkeypatch.setattr(art, "KAGGLE_INPUT", kaggle_input)
    monkeypatch.setenv("LABKIT_DATA", str(no_kaggle))
    with pytest.warns(UserWarning):
        data = art.load_abstract_art(verbose=False)
    assert data.source == "kaggle-input" and data.n_train == len(VALID)


def test_download_with_credentials_uses_the_kaggle_package_lazily(no_kaggle, monkeypatch):
    calls = []

    class FakeApi:
        def dataset_download_files(self, slug, path, unzip, quiet):
            calls.append(slug)
            for i in range(3):
                Image.new("RGB", (80, 80), (i * 80, 0, 0)).save(f"{path}/art_{i}.png")

    fake_kaggle = type(sys)("kaggle")
    fake_kaggle.api = FakeApi()
    monkeypatch.setitem(sys.modules, "kaggle", fake_kaggle)
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # not installed
    monkeypatch.setenv("KAGGLE_USERNAME", "student")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")
    monkeypatch.setenv("LABKIT_DATA", str(no_kaggle))
    monkeypatch.delenv("LABKIT_OFFLINE", raising=False)
    data = art.load_abstract_art(source="download", verbose=False)
    assert calls == ["bryanb/abstract-art-gallery"]
    assert data.source == "kaggle-download" and data.n_train == 3


def test_kagglehub_downloads_the_public_gallery_without_credentials(no_kaggle, monkeypatch, capsys):
    calls = []

    def dataset_download(handle):
        calls.append(handle)
        folder = no_kaggle / "kagglehub-cache" / "Abstract_gallery" / "Abstract_gallery"
        folder.mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (90, 70), (0, i * 60, 0)).save(folder / f"art_{i}.jpg")
        return str(no_kaggle / "kagglehub-cache")

    fake_hub = type(sys)("kagglehub")
    fake_hub.dataset_download = dataset_download
    monkeypatch.setitem(sys.modules, "kagglehub", fake_hub)
    monkeypatch.setenv("LABKIT_DATA", str(no_kaggle))
    monkeypatch.delenv("LABKIT_OFFLINE", raising=False)
    assert art.kaggle_credentials() is None
    data = art.load_abstract_art()
    assert calls == ["bryanb/abstract-art-gallery"]
    assert data.source == "kaggle-download" and data.n_train == 4 and "kagglehub-cache" in data.origin
    assert "SYNTHETIC STAND-IN" not in capsys.readouterr().out


def test_without_kagglehub_the_stand_in_message_says_how_to_install_it(no_kaggle, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # not installed
    monkeypatch.setenv("LABKIT_DATA", str(no_kaggle))
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    monkeypatch.delenv("LABKIT_OFFLINE", raising=False)
    data = art.load_abstract_art()
    out = capsys.readouterr().out
    assert data.source == "synthetic-stand-in"
    assert "kagglehub is not installed (pip install 'labkit[kaggle]')" in out
    assert "no Kaggle credentials for the kaggle package" in out  # and the kaggle package was not imported


def test_kaggle_credentials_are_found_in_kaggle_json(no_kaggle, monkeypatch):
    assert art.kaggle_credentials() is None
    (no_kaggle / "home" / ".kaggle").mkdir(parents=True)
    (no_kaggle / "home" / ".kaggle" / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    assert art.kaggle_credentials().endswith("kaggle.json")


def test_cifar10_without_network_says_it_is_unavailable_offline(tmp_path, monkeypatch):
    def no_network(root, train, download):
        raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")

    monkeypatch.setattr(art, "_torchvision_cifar10", no_network)
    with pytest.raises(FileNotFoundError, match="CIFAR-10 unavailable offline"):
        art.load_cifar10(root=tmp_path)


def test_cifar10_arrives_as_resident_rgb_images_in_0_1_with_labels(tmp_path, monkeypatch):
    class FakeSplit:  # what torchvision's CIFAR10 holds: uint8 (N, 32, 32, 3) and a list of labels
        def __init__(self, n):
            self.data = np.full((n, 32, 32, 3), 255, dtype=np.uint8)
            self.data[:, :, :, 1] = 0
            self.targets = [i % 10 for i in range(n)]

    monkeypatch.setattr(art, "_torchvision_cifar10", lambda root, train, download: FakeSplit(3000 if train else 600))
    data = art.load_cifar10(root=tmp_path, smoke=True, verbose=False)
    assert data.n_train == 2000 and data.n_test == 500 and data.image_shape == (3, 32, 32)
    assert data.train_x[0, :, 5, 5].tolist() == [1.0, 0.0, 1.0]  # channels first, magenta stays magenta
    assert data.train_y[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert data.label == "CIFAR-10 (torchvision)"


def test_unknown_source_and_size_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown abstract-art source"):
        art.load_abstract_art(source="flickr", root=tmp_path)
    with pytest.raises(ValueError, match="size must be 64"):
        art.load_abstract_art(size=128, root=tmp_path)
