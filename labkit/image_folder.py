"""Folders of image files decoded once into one uint8 tensor: any format Pillow reads, any size or
colour mode, broken files skipped and counted, the result cached while the files are unchanged.
``labkit.art`` loads the Abstract Art Gallery through it (notebook 03, "The data").
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CACHE_PREFIX = "abstract-art"  # cache files are named <prefix>-<size>px-<key>.pt


def find_images(folder: str | Path) -> list[Path]:
    """Image files (by suffix, any case) anywhere under ``folder``, sorted; hidden files left out, and links
    that lead to files outside ``folder`` too (``links_outside`` lists those)."""
    return _scan(folder)[0]


def links_outside(folder: str | Path) -> list[Path]:
    """The image files under ``folder`` that are symbolic links to files outside it: never read, so that a
    folder of images cannot pull in files from elsewhere on the disk."""
    return _scan(folder)[1]


def _scan(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """(image files inside ``folder``, links among them that resolve outside it), both sorted."""
    folder = Path(folder)
    inside = folder.resolve()
    images, outside = [], []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or any(
            part.startswith(".") for part in path.relative_to(folder).parts
        ):
            continue
        if not path.is_file():
            continue
        (images if path.resolve().is_relative_to(inside) else outside).append(path)
    return images, outside


def _outside_note(folder: Path, outside: list[Path]) -> str:
    """What the loader says about links it did not follow: how many, and one of them."""
    example = outside[0]
    return (
        f"skipped {len(outside)} link{'s' if len(outside) != 1 else ''} under {folder} to files outside it "
        f"(e.g. {example.relative_to(folder)} -> {example.resolve()}); copy such files into the folder to use them"
    )


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """One file as (size, size, 3) uint8 RGB: converted to RGB (grayscale, 16-bit grayscale, palette, CMYK;
    transparency over white), scaled so the shorter side is ``size`` and centre-cropped. Raises on broken files."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.draft("RGB", (2 * size, 2 * size))  # JPEG: decode at reduced scale, much faster
        # 16-bit grayscale (PNG, TIFF; older Pillow opens such PNGs as "I"): Pillow's convert() clips 0..65535
        # at 255, which turns almost every such image white, so scale it to 0..255 here
        sixteen_bit = img.mode.startswith("I;16") or (img.mode == "I" and img.format == "PNG")
        img = ImageOps.exif_transpose(img)
        if sixteen_bit:
            img = Image.fromarray(np.rint(np.asarray(img) / 257).astype(np.uint8))
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            img = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img.alpha_composite(rgba)
        img = ImageOps.fit(img.convert("RGB"), (size, size), method=Image.Resampling.BICUBIC)
        return np.asarray(img, dtype=np.uint8)


def _try_decode(path: Path, size: int) -> np.ndarray | str:
    """The decoded image, or why not: the file's name, the error's type and the first line of its
    message (the file's full path in it shortened to its name)."""
    try:
        return decode_image(path, size)
    except Exception as e:  # noqa: BLE001 - any undecodable file is skipped and counted
        detail = str(e).splitlines()[0].replace(str(path), path.name)[:120] if str(e).strip() else ""
        return f"{path.name}: {type(e).__name__}" + (f" ({detail})" if detail else "")


def _cache_file(files: list[Path], folder: Path, size: int, cache_dir: Path) -> Path:
    """The cache is keyed by the image size and the file list (names, sizes, modification times)."""
    listing = [(str(p.relative_to(folder)), st.st_size, st.st_mtime_ns) for p in files for st in [p.stat()]]
    key = hashlib.sha1(json.dumps([size, listing]).encode()).hexdigest()[:16]
    return cache_dir / f"{CACHE_PREFIX}-{size}px-{key}.pt"


def load_image_folder(
    folder: str | Path,
    size: int = 64,
    cache_dir: str | Path | None = None,
    verbose: bool = True,
    *,
    if_none_decode: str = "",
) -> tuple[torch.Tensor, list[str], int]:
    """Decode every image under ``folder`` once into a uint8 tensor (N, 3, size, size).

    Returns ``(images, names, n_skipped)``; ``names`` are the decoded files relative to ``folder``.
    Undecodable files (empty, truncated, an HTML page saved as .jpg) are skipped and counted in one
    warning; links to files outside ``folder`` are never read, and counted in another. When no file
    decodes at all the error names a few with the reason and the formats read, and says
    ``if_none_decode`` (what to do; by default, for a folder of one's own images: save them again in
    one of those formats). With ``cache_dir`` the tensor is saved there and reused while the files are
    unchanged. Notebook 03, "The data".
    """
    folder = Path(folder)
    files, outside = _scan(folder)
    if outside:
        warnings.warn(f"labkit: {_outside_note(folder, outside)}", stacklevel=2)
    if not files:
        raise FileNotFoundError(
            f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}"
            + (f" other than links to files outside it ({_outside_note(folder, outside)})" if outside else "")
        )
    cache = _cache_file(files, folder, size, Path(cache_dir)) if cache_dir is not None else None
    if cache is not None and cache.is_file():
        try:
            saved = torch.load(cache, weights_only=True)
            if verbose:
                print(f"labkit: {len(saved['names'])} images of {folder} read from the cache {cache.name}")
            return saved["images"], saved["names"], int(saved["skipped"])
        except Exception as e:  # noqa: BLE001 - a broken cache is rebuilt
            warnings.warn(
                f"labkit: the image cache {cache} is unreadable ({type(e).__name__}); decoding again", stacklevel=2
            )
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # Pillow decodes without the GIL
        results = list(pool.map(lambda p: _try_decode(p, size), files))
    good = [(p, r) for p, r in zip(files, results) if not isinstance(r, str)]
    problems = [r for r in results if isinstance(r, str)]
    if problems:
        examples = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
        warnings.warn(
            f"labkit: skipped {len(problems)} of {len(files)} image files under {folder} that could not be "
            f"decoded (empty, truncated or not images: {examples})",
            stacklevel=2,
        )
    if not good:
        raise ValueError(
            f"none of the {len(files)} image files under {folder} could be decoded as an image ("
            + "; ".join(problems[:2])
            + ("; ..." if len(problems) > 2 else "")
            + f"). labkit reads the formats Pillow decodes, by suffix: {', '.join(sorted(IMAGE_SUFFIXES))}. "
            + (
                if_none_decode
                or "Check that the files open in an image viewer and save them again as .png or .jpg "
                "(a file renamed to .jpg is not converted)."
            )
        )
    images = torch.from_numpy(np.stack([r for _, r in good])).permute(0, 3, 1, 2).contiguous()
    names = [str(p.relative_to(folder)) for p, _ in good]
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            torch.save({"images": images, "names": names, "skipped": len(problems)}, tmp)
            os.replace(tmp, cache)
        except OSError as e:
            warnings.warn(
                f"labkit: could not write the image cache {cache} ({e}); the next run decodes again", stacklevel=2
            )
    return images, names, len(problems)
