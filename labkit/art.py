"""Image data for the GAN lab (notebook 03): the Kaggle Abstract Art Gallery, its offline synthetic
stand-in, and CIFAR-10. Every loader returns a ``labkit.data.ImageData`` with images in [0, 1].

Abstract art comes from the first source that works: image files anywhere under
``$LABKIT_DATA/abstract-art/``, a Kaggle input folder, a Kaggle download (kagglehub, which needs no
account for this public dataset, then the kaggle package with credentials), or a procedural generator
labelled "synthetic stand-in" everywhere.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import torch

from . import data as _data
from .data import ImageData
from .engine import environment, settings
from .image_folder import find_images, load_image_folder

KAGGLE_SLUG = "bryanb/abstract-art-gallery"
KAGGLE_INPUT = Path("/kaggle/input")  # tests point this elsewhere
ART_FOLDER = "abstract-art"  # under the data root
CACHE_FOLDER = "cache"  # under the data root
STANDIN_IMAGES = 2872  # as many as the real gallery holds
STANDIN_VERSION = 1  # bump when synthetic_art_image changes (invalidates caches)
SMOKE_IMAGES = 128
CIFAR_SMOKE_SIZES = (2000, 500)
DOWNLOAD_TIMEOUT_S = 5.0

STANDIN_LABEL = _data.SOURCE_LABELS["synthetic-stand-in"]

HOW_TO_GET_THE_GALLERY = (
    f"with internet access labkit downloads {KAGGLE_SLUG} through kagglehub, no account needed (Colab and Kaggle "
    "ship kagglehub; elsewhere pip install 'labkit[kaggle]'); if Kaggle asks for an account, put kaggle.json "
    "(Kaggle > Settings > API > Create New Token) in ~/.kaggle/ or set KAGGLE_USERNAME and KAGGLE_KEY; or unpack "
    f"https://www.kaggle.com/datasets/{KAGGLE_SLUG} anywhere under $LABKIT_DATA/abstract-art/; or attach the "
    "dataset to your Kaggle notebook"
)


# --------------------------------------------------------------------------- the synthetic stand-in


def _palette(rng: np.random.Generator, k: int) -> list[tuple[int, int, int]]:
    """k colours around one base hue (some complementary), random saturation and brightness."""
    import colorsys

    base = rng.random()
    hues = (base + rng.choice([0.0, 0.08, -0.08, 0.5, 0.33], size=k)) % 1.0
    return [
        tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, rng.uniform(0.3, 1.0), rng.uniform(0.25, 1.0))) for h in hues
    ]


def synthetic_art_image(seed: int, index: int, size: int = 64) -> np.ndarray:
    """Image ``index`` of the stand-in for ``seed``: (size, size, 3) uint8. Colour fields or a
    gradient, then shapes (ellipses, rectangles, polygons) and brush strokes, drawn at twice the
    size and scaled down. The same (seed, index) always gives the same image."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng([seed, index])
    big = 2 * size
    colours = _palette(rng, int(rng.integers(3, 6)))
    pick = lambda: colours[int(rng.integers(len(colours)))]  # noqa: E731
    # background: a linear gradient at a random angle, or two or three vertical/horizontal colour fields
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:big, 0:big] / big
        t = np.clip((np.cos(angle) * xx + np.sin(angle) * yy + 1) / 2, 0, 1)[..., None]
        array = (1 - t) * np.array(pick()) + t * np.array(pick())
        canvas = Image.fromarray(array.astype(np.uint8)).convert("RGBA")
    else:
        canvas = Image.new("RGBA", (big, big), pick())
        cuts = np.sort(rng.integers(big // 5, 4 * big // 5, size=int(rng.integers(1, 3))))
        draw = ImageDraw.Draw(canvas)
        vertical = rng.random() < 0.5
        for start in cuts:
            box = (start, 0, big, big) if vertical else (0, start, big, big)
            draw.rectangle(box, fill=pick())
    # shapes, half-transparent, on their own layer
    layer = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(2, 7))):
        fill = (*pick(), int(rng.integers(120, 256)))
        x0, y0 = rng.integers(-big // 4, big, size=2)
        w, h = rng.integers(big // 8, big // 2, size=2)
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=fill)
        elif kind == 1:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=fill)
        else:
            draw.polygon(
                [
                    tuple(int(v) for v in rng.integers(-big // 8, big + big // 8, size=2))
                    for _ in range(int(rng.integers(3, 6)))
                ],
                fill=fill,
            )
    # brush strokes: thick polylines wandering across the canvas
    for _ in range(int(rng.integers(1, 5))):
        point = rng.uniform(0, big, size=2)
        path = [tuple(point)]
        for _ in range(int(rng.integers(3, 8))):
            point = np.clip(point + rng.normal(0, big / 5, size=2), -10, big + 10)
            path.append(tuple(point))
        draw.line(
            path, fill=(*pick(), int(rng.integers(160, 256))), width=int(rng.integers(2, big // 10)), joint="curve"
        )
    canvas = Image.alpha_composite(canvas, layer.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5))))
    image = np.asarray(canvas.convert("RGB").resize((size, size), Image.Resampling.LANCZOS), dtype=np.int16)
    grain = rng.normal(0, 4, size=image.shape)  # a little canvas texture
    return np.clip(image + grain, 0, 255).astype(np.uint8)


def synthetic_art(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """n stand-in images as a uint8 tensor (n, 3, size, size); image i depends only on (seed, i)."""
    settings.whole_number("n", n)
    images = np.stack([synthetic_art_image(seed, i, size) for i in range(n)])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _cached_synthetic_art(n: int, size: int, seed: int, cache_dir: Path) -> torch.Tensor:
    """``synthetic_art`` kept in the cache folder (2,872 images take ~10 s to draw, ~0.1 s to read)."""
    cache = cache_dir / f"{ART_FOLDER}-standin-v{STANDIN_VERSION}-{size}px-seed{seed}-n{n}.pt"
    if cache.is_file():
        try:
            return torch.load(cache, weights_only=True)
        except Exception:  # noqa: BLE001 - a broken cache is redrawn
            pass
    images = synthetic_art(n, size, seed)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        torch.save(images, cache.with_suffix(".tmp"))
        os.replace(cache.with_suffix(".tmp"), cache)
    except OSError:
        pass  # a read-only data root only costs the drawing time
    return images


# --------------------------------------------------------------------------- Kaggle


def kaggle_credentials() -> str | None:
    """Where Kaggle credentials are (environment or kaggle.json), or None when there are none."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME / KAGGLE_KEY"
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    config = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle")) / "kaggle.json"
    return str(config) if config.is_file() else None


def kaggle_input_folder() -> Path | None:
    """A folder of an attached Kaggle dataset whose name mentions abstract art, if any."""
    if not KAGGLE_INPUT.is_dir():
        return None
    for depth in ("*", "*/*", "*/*/*"):
        for path in sorted(KAGGLE_INPUT.glob(depth)):
            if path.is_dir() and "abstract" in path.name.lower() and find_images(path):
                return path
    return None


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}"


def download_abstract_art(dest: Path, verbose: bool = True) -> Path | str:
    """Download the gallery; return its folder, or why it could not be downloaded.

    First kagglehub, without credentials: the gallery is a public dataset, and kagglehub uses a
    key when one is there (on Colab it also reads a key stored in Colab's secrets). Then, only with
    credentials, the ``kaggle`` package into ``dest``: ``import kaggle`` ends the Python process
    when there are none. Both are imported here, lazily (the extra ``labkit[kaggle]`` installs them).
    """
    reasons = []
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # no network must cost seconds, not minutes
    try:
        try:
            import kagglehub
        except ImportError:
            reasons.append("kagglehub is not installed (pip install 'labkit[kaggle]')")
        else:
            try:
                return Path(kagglehub.dataset_download(KAGGLE_SLUG))
            except Exception as e:  # noqa: BLE001 - offline, Kaggle unreachable, refused: try the next way
                reasons.append(f"kagglehub: {_why(e)}")
        if kaggle_credentials() is None:
            reasons.append(
                "no Kaggle credentials for the kaggle package (kaggle.json in ~/.kaggle/, or "
                "KAGGLE_USERNAME and KAGGLE_KEY)"
            )
        else:
            try:
                from kaggle import api

                dest.mkdir(parents=True, exist_ok=True)
                api.dataset_download_files(KAGGLE_SLUG, path=str(dest), unzip=True, quiet=not verbose)
                return dest
            except (Exception, SystemExit) as e:  # noqa: BLE001 - the kaggle package exits on bad credentials
                reasons.append(f"kaggle: {_why(e)}")
    finally:
        socket.setdefaulttimeout(previous)
    return "download failed (" + "; ".join(reasons) + ")"


# --------------------------------------------------------------------------- the loaders


def _split(images: torch.Tensor, n_test: int, device, name: str, source: str, origin: str) -> ImageData:
    floats = images.to(device).float().div_(255)
    n_test = min(n_test, len(floats) // 10)
    return ImageData(name, source, origin, floats[n_test:], floats[:n_test])


def load_abstract_art(
    device: torch.device | str = "cpu",
    *,
    source: str = "auto",
    size: int = 64,
    root: str | Path | None = None,
    smoke: bool | None = None,
    n_images: int | None = None,
    n_test: int = 0,
    download: bool | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> ImageData:
    """The Abstract Art Gallery as resident images (N, 3, size, size) in [0, 1].

    ``source``: ``auto`` tries local (``<data root>/abstract-art/``, any nesting), kaggle (an input
    folder), download (kagglehub, then the kaggle package) and then the synthetic stand-in; or name one of
    them. ``n_images`` keeps the first n (smoke mode: 128). ``n_test`` held-out images (at most a
    tenth; default none: a GAN needs no test split). ``download`` (default: unless ``LABKIT_OFFLINE``
    is set) allows the Kaggle download. Notebook 03, "The data".
    """
    order = ["local", "kaggle", "download", "synthetic"]
    if source != "auto" and source not in order:
        raise ValueError(f"unknown abstract-art source {source!r}; choose one of auto, {', '.join(order)}")
    if size not in (32, 64):
        raise ValueError(f"size must be 64 (the DCGAN of notebook 03) or 32, got {size!r}")
    root = Path(root) if root is not None else environment.data_root()
    smoke = environment.smoke_mode() if smoke is None else smoke
    download = not environment.offline() if download is None else download
    limit = n_images if n_images is not None else (SMOKE_IMAGES if smoke else None)
    if limit is not None:
        settings.whole_number("n_images", limit)
    tried: list[str] = []
    images = None
    for name in order if source == "auto" else [source]:
        folder: Path | None = None
        if name == "local":
            folder = root / ART_FOLDER
            if not (folder.is_dir() and find_images(folder)):
                tried.append(f"no images under {folder}")
                folder = None
            kind = "local-folder"
        elif name == "kaggle":
            folder = kaggle_input_folder()
            if folder is None:
                tried.append(f"no abstract-art folder under {KAGGLE_INPUT}")
            kind = "kaggle-input"
        elif name == "download":
            got = download_abstract_art(root / ART_FOLDER, verbose) if download else "downloads switched off"
            folder = got if isinstance(got, Path) else None
            if folder is None:
                tried.append(f"Kaggle download: {got}")
            kind = "kaggle-download"
        else:
            n = limit or STANDIN_IMAGES
            images, kind = _cached_synthetic_art(n, size, seed, root / CACHE_FOLDER), "synthetic-stand-in"
            origin = f"labkit.art.synthetic_art(n={n}, size={size}, seed={seed}): procedural images, not the gallery"
        if folder is not None:
            images, names, skipped = load_image_folder(
                folder,
                size,
                root / CACHE_FOLDER,
                verbose,
                if_none_decode=f"Delete {folder} and download the data again.",
            )
            origin = f"{folder} ({len(names)} images" + (f", {skipped} undecodable skipped)" if skipped else ")")
        if images is not None:
            break
    if images is None:
        raise FileNotFoundError(f"abstract art could not be loaded from source {source!r}: " + "; ".join(tried))
    if limit is not None:
        images = images[:limit]
    data = _split(images, n_test, device, "Abstract Art Gallery", kind, origin)
    if verbose:
        if tried:
            print("labkit: " + "; ".join(tried))
        if kind == "synthetic-stand-in":
            print(
                "labkit: the Abstract Art Gallery is not available here, so the lab uses a SYNTHETIC STAND-IN: "
                "procedural abstract images (colour fields, gradients, shapes, strokes), named as such in every "
                f"title and in metrics.json. To train on the real paintings: {HOW_TO_GET_THE_GALLERY}."
            )
        print(f"labkit: {data!r}" + (" [smoke mode: reduced data]" if smoke else ""))
    return data


def _torchvision_cifar10(root: Path, train: bool, download: bool):
    from torchvision import datasets

    return datasets.CIFAR10(str(root), train=train, download=download)


def load_cifar10(
    device: torch.device | str = "cpu",
    *,
    root: str | Path | None = None,
    smoke: bool | None = None,
    download: bool | None = None,
    verbose: bool = True,
) -> ImageData:
    """CIFAR-10 (50,000 / 10,000 images (3, 32, 32) in [0, 1], labels 0-9) through torchvision.

    Uses ``<data root>/cifar-10-batches-py`` when present, otherwise downloads (a few seconds'
    timeout; not when ``LABKIT_OFFLINE`` is set). Smoke mode keeps the first 2,000 / 500.
    Notebook 03's CIFAR-10 option, with the max-pool discriminator.
    """
    root = Path(root) if root is not None else environment.data_root()
    download = not environment.offline() if download is None else download
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        train, test = _torchvision_cifar10(root, True, download), _torchvision_cifar10(root, False, download)
    except Exception as e:  # noqa: BLE001
        raise FileNotFoundError(
            f"CIFAR-10 unavailable offline: no usable copy under {root / 'cifar-10-batches-py'} and "
            + ("the download failed" if download else "downloads are switched off (LABKIT_OFFLINE)")
            + f" ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}). Run once with "
            "internet access or copy cifar-10-batches-py into the data root; the abstract-art dataset works offline."
        ) from e
    finally:
        socket.setdefaulttimeout(previous)
    smoke = environment.smoke_mode() if smoke is None else smoke
    sizes = CIFAR_SMOKE_SIZES if smoke else (None, None)
    to_x = lambda a, n: (
        torch.from_numpy(np.ascontiguousarray(a[:n]))
        .permute(0, 3, 1, 2)  # noqa: E731
        .to(device)
        .float()
        .div_(255)
    )  # (N, 3, 32, 32)
    to_y = lambda a, n: torch.tensor(a[:n], dtype=torch.int64, device=device)  # noqa: E731
    data = ImageData(
        "CIFAR-10",
        "torchvision",
        str(root / "cifar-10-batches-py"),
        to_x(train.data, sizes[0]),
        to_x(test.data, sizes[1]),
        to_y(train.targets, sizes[0]),
        to_y(test.targets, sizes[1]),
    )
    if verbose:
        print(f"labkit: {data!r}" + (" [smoke mode: reduced data]" if smoke else ""))
    return data
