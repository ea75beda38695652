"""Every dataset of the kit by name, loaded by one function: ``load_dataset(name)`` for ``mnist`` (the
default), ``fashion-mnist``, ``kmnist``, ``cifar10``, ``abstract-art``, or the path of a folder of your
own images, optionally resized to ``image_size`` pixels. Every model's ``--dataset`` and
``--image-size`` end up here; the notebooks explain the data in their "Data" section.

MNIST, CIFAR-10 and the Abstract Art Gallery come from their own loaders (``labkit.data``,
``labkit.art``). Fashion-MNIST and KMNIST have MNIST's file layout: they are read from
``<data root>/FashionMNIST/raw`` and ``<data root>/KMNIST/raw``, downloaded there by torchvision when
there is internet, and otherwise refused with a message that says how to get them. A folder works
offline: its images are decoded as RGB, centre-cropped to squares and have no labels.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F

from . import art, data
from .data import ImageData
from .engine import environment, settings
from .image_folder import find_images, links_outside, load_image_folder

NATIVE_SHAPES = {  # name -> (channels, height, width) of its images
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "kmnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "abstract-art": (3, 64, 64),
}
LABELLED = ("mnist", "fashion-mnist", "kmnist", "cifar10")  # ten classes each
MNIST_LIKE = {  # name -> (torchvision class and folder, title); files as MNIST's (labkit.data.MNIST_FILES)
    "fashion-mnist": ("FashionMNIST", "Fashion-MNIST"),
    "kmnist": ("KMNIST", "KMNIST"),
}
MNIST_LIKE_URLS = {
    "fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist#get-the-data",
    "kmnist": "https://github.com/rois-codh/kmnist#the-dataset",
}
FOLDER_SIZE = 64  # image side of a folder of images when no image_size is given
CHOICES = f"{', '.join(NATIVE_SHAPES)}, or the path of a folder of images"


# --------------------------------------------------------------------------- names, shapes, run names


def is_folder(name: str) -> bool:
    """Whether ``name`` is a folder of images rather than one of the known datasets. An empty or blank
    name is none: ``Path("")`` would be the current folder, which nobody names by leaving the name out."""
    return name not in NATIVE_SHAPES and bool(name.strip()) and Path(name).expanduser().is_dir()


def check_dataset(name, image_size=None) -> tuple[int, int, int]:
    """Check a ``dataset`` and ``image_size`` setting; return the (C, H, W) of the images they give.
    An empty name, or an unknown one that is no existing folder, is an error listing the choices."""
    if isinstance(name, str) and not name.strip():
        raise ValueError(f"the dataset name is empty ({name!r}): choose {CHOICES} (for the current folder: '.')")
    if not isinstance(name, str) or not (name in NATIVE_SHAPES or is_folder(name)):
        raise ValueError(f"unknown dataset {name!r}: choose {CHOICES}")
    if image_size is not None:
        settings.whole_number("image_size", image_size, low=8)
    return image_shape(name, image_size)


def image_shape(name: str, image_size: int | None = None) -> tuple[int, int, int]:
    """(C, H, W) of the images ``load_dataset(name, image_size=...)`` returns."""
    channels, height, _ = NATIVE_SHAPES.get(name, (3, FOLDER_SIZE, FOLDER_SIZE))
    side = image_size or height
    return (channels, side, side)


def has_labels(name: str) -> bool:
    """Whether the dataset has a class label per image (a folder and the abstract art have none)."""
    return name in LABELLED


def run_suffix(name: str, image_size: int | None = None) -> str:
    """What a run name gets for its data, so that runs never overwrite each other: nothing for MNIST,
    ``-<name>`` for the others, ``-folder-<folder name>`` for a folder, then ``-<size>px`` when
    ``image_size`` differs from the dataset's own size (``ae``, ``vae-cifar10``, ``ae-folder-cats-32px``)."""
    if name in NATIVE_SHAPES:
        suffix = "" if name == "mnist" else f"-{name}"
    else:
        slug = re.sub(r"[^a-z0-9]+", "-", Path(name).expanduser().resolve().name.lower()).strip("-")
        suffix = f"-folder-{slug or 'images'}"
    native = NATIVE_SHAPES.get(name, (3, None, None))[1]
    return suffix + (f"-{image_size}px" if image_size is not None and image_size != native else "")


# --------------------------------------------------------------------------- loading


def load_dataset(
    name: str = "mnist",
    device: torch.device | str = "cpu",
    *,
    image_size: int | None = None,
    n_images: int | None = None,
    held_out: int | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> ImageData:
    """The dataset ``name`` as resident images (N, C, H, W) in [0, 1] on ``device``.

    ``name``: mnist, fashion-mnist, kmnist, cifar10, abstract-art or the path of a folder of images.
    ``image_size``: the side in pixels, resized (antialiased) when it differs from the dataset's own
    (a folder's default: 64). ``n_images`` keeps the first n training images. ``held_out``: for data
    without a test split (abstract-art, a folder), how many images to set aside for testing, drawn
    with ``seed`` (default a tenth, at least 2; 0 keeps all for training, as a GAN wants). Smoke mode
    (``LABKIT_SMOKE``) reduces the data as each loader does. Notebook 01, "Data".
    """
    check_dataset(name, image_size)
    if n_images is not None:
        settings.whole_number("n_images", n_images)
    if name == "mnist":
        result = data.load_mnist(device, verbose=verbose)
    elif name == "cifar10":
        result = art.load_cifar10(device, verbose=verbose)
    elif name == "abstract-art":
        size = image_size if image_size in (32, 64) else 64
        result = art.load_abstract_art(device, size=size, n_images=n_images, seed=seed, verbose=verbose)
    elif name in MNIST_LIKE:
        result = load_mnist_like(name, device)
    else:
        result = load_folder(name, image_size or FOLDER_SIZE, device, verbose)
    loaded = result  # the loaders above print what they loaded; this prints what changed after
    if n_images is not None and result.n_train > n_images:
        result = ImageData(
            result.name,
            result.source,
            f"{result.origin}, first {n_images} training images",
            result.train_x[:n_images],
            result.test_x,
            None if result.train_y is None else result.train_y[:n_images],
            result.test_y,
        )
    if result.n_test == 0 and held_out != 0:
        result = hold_out(result, held_out, seed)
    if image_size is not None and result.image_shape[1:] != (image_size, image_size):
        result = resized(result, image_size)
    if verbose and (result is not loaded or name in MNIST_LIKE or is_folder(name)):
        print(f"labkit: {result!r}" + (" [smoke mode: reduced data]" if environment.smoke_mode() else ""))
    return result


def load_mnist_like(name: str, device: torch.device | str = "cpu", *, root=None, download=None) -> ImageData:
    """Fashion-MNIST or KMNIST (60,000 / 10,000 images (1, 28, 28), labels 0-9) from the copy under
    ``<data root>/<FashionMNIST|KMNIST>/raw``, or downloaded there by torchvision (not when
    ``LABKIT_OFFLINE`` is set). Smoke mode keeps a stratified 2,000 / 500, as for MNIST."""
    folder_name, title = MNIST_LIKE[name]
    root = Path(root) if root is not None else environment.data_root()
    download = not environment.offline() if download is None else download
    raw = root / folder_name / "raw"
    files, source = data._find_idx_files(raw), "local"
    if files is None:
        if not download:
            raise FileNotFoundError(_how_to_get(name, raw, None))
        reason = data._try_download(root, folder_name)
        files, source = (data._find_idx_files(raw) if reason is None else None), "download"
        if files is None:
            raise FileNotFoundError(_how_to_get(name, raw, reason or f"no files in {raw} afterwards"))
    arrays = data._mnist_from_files(files, title)
    origin = str(raw) if source == "local" else f"torchvision download into {raw}"
    return data.arrays_to_image_data(title, source, origin, arrays, device, environment.smoke_mode())


def _how_to_get(name: str, raw: Path, failure: str | None) -> str:
    """The error for Fashion-MNIST or KMNIST missing: what happened and exactly how to get it."""
    title = MNIST_LIKE[name][1]
    files = ", ".join(data.MNIST_FILES.values())
    why = f"the download failed ({failure})" if failure else "downloads are switched off (LABKIT_OFFLINE)"
    return (
        f"{title} unavailable offline: no copy under {raw} and {why}. Run once with internet access "
        f"(torchvision downloads it there), or put the four files {files} (each may end in .gz) from "
        f"{MNIST_LIKE_URLS[name]} into {raw}; mnist and a folder of your own images work offline."
    )


def load_folder(
    folder: str | Path, size: int = FOLDER_SIZE, device: torch.device | str = "cpu", verbose=True
) -> ImageData:
    """Every image under ``folder`` (any nesting, any format Pillow reads) as RGB (N, 3, size, size) in
    [0, 1], without labels and without a test split (``load_dataset`` holds one out); links to files
    outside ``folder`` are skipped, never read. Decoded once and cached under ``<data root>/cache``; smoke
    mode keeps the first 128. Notebook 03, "The data"."""
    folder = Path(folder).expanduser()
    if not find_images(folder):
        outside = links_outside(folder)
        raise FileNotFoundError(
            f"no image files under {folder}"
            + (f" (only {len(outside)} links to files outside it, which are never read)" if outside else "")
            + ": put .png or .jpg images there, in any subfolders"
        )
    images, names, skipped = load_image_folder(folder, size, environment.data_root() / art.CACHE_FOLDER, verbose)
    if environment.smoke_mode():
        images = images[: art.SMOKE_IMAGES]
    origin = f"{folder} ({len(names)} images" + (f", {skipped} undecodable skipped)" if skipped else ")")
    floats = images.to(device).float().div_(255)
    return ImageData(folder.resolve().name or str(folder), "folder", origin, floats, floats[:0])


def hold_out(images: ImageData, n_test: int | None = None, seed: int = 0) -> ImageData:
    """``images`` (all in the training split) split into train and test: ``n_test`` images drawn with
    ``seed`` (default a tenth, at least two) become the test split."""
    n = images.n_train
    n_test = max(2, n // 10) if n_test is None else n_test
    if not 0 < n_test < n:
        raise ValueError(
            f"cannot hold out {n_test} of the {n} images of {images.name} for testing and train on the rest: "
            "put more images there (a few hundred at least to learn anything)"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(images.train_x.device)
    test, train = order[:n_test], order[n_test:]
    pick = lambda t, index: None if t is None else t[index]  # noqa: E731
    return ImageData(
        images.name,
        images.source,
        f"{images.origin}, {n_test} held out for testing",
        images.train_x[train],
        images.train_x[test],
        pick(images.train_y, train),
        pick(images.train_y, test),
    )


def resized(images: ImageData, size: int, chunk: int = 4096) -> ImageData:
    """``images`` with every image resized to size x size (bilinear, antialiased when shrinking), kept in
    [0, 1]; labels unchanged."""

    def resize(x: torch.Tensor) -> torch.Tensor:
        out = x.new_empty(len(x), x.shape[1], size, size)
        for start in range(0, len(x), chunk):
            part = F.interpolate(x[start : start + chunk], size=(size, size), mode="bilinear", antialias=True)
            out[start : start + chunk] = part.clamp_(0, 1)
        return out

    c, h, w = images.image_shape
    return ImageData(
        images.name,
        images.source,
        f"{images.origin}, resized from {h}x{w} to {size}x{size}",
        resize(images.train_x),
        resize(images.test_x),
        images.train_y,
        images.test_y,
    )


def load_for(cfg, device: torch.device | str, images: ImageData | None = None) -> ImageData:
    """The data a recipe trains on: ``images`` moved to ``device`` when the caller has them loaded
    already, otherwise ``cfg.dataset`` at ``cfg.image_size`` pixels."""
    if images is not None:
        return images.to(device)
    return load_dataset(cfg.dataset, device, image_size=cfg.image_size, seed=cfg.seed)
