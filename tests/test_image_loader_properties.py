"""Property-based tests of the image-folder loader of notebook 03 (``labkit.art``): hypothesis writes
folders of good images (every Pillow mode and format the loader meets, odd and thin sizes, animated
GIFs, mislabelled suffixes), broken files (empty, truncated, HTML, random bytes, corrupted headers),
directories and hidden files with image names, and checks what ``load_image_folder`` and
``decode_image`` promise: no exception while one image decodes, exactly the decodable files kept,
a (N, 3, S, S) uint8 tensor of the right colours, and one warning that counts the rest.

Each example writes into its own temporary folder (hypothesis runs many examples per test call, so
pytest's ``tmp_path`` would be shared between them), with the cache in that folder too."""

import io
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from labkit import art, image_folder
from labkit.engine import environment

# small example counts: the whole file runs in seconds; no example database (a failure prints its blob);
# no explain phase and one bug per test, so that a failure is shrunk and reported in seconds, not minutes
FAST = settings(
    max_examples=30,
    deadline=None,
    database=None,
    print_blob=True,
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SUFFIXES = [
    ".jpg",
    ".jpeg",
    ".png",
    ".gif",
    ".bmp",
    ".webp",
    ".tif",
    ".tiff",
    ".JPG",
    ".JPEG",
    ".PNG",
    ".GIF",
    ".BMP",
    ".WEBP",
    ".TIFF",
    ".Jpg",
    ".pNg",
]
FOLDERS = ["", "a/", "a/b/", "B/", "shelf.png/"]  # shelf.png/ is a directory with an image name

# (format, mode) pairs Pillow writes and reads back with a known colour; tolerance for lossy formats
LOSSY = {"JPEG": 8, "WEBP-lossy": 8}
COMBOS = (
    [("PNG", m) for m in ("1", "L", "P", "P+transparency", "RGB", "RGBA", "LA", "I;16")]
    + [("JPEG", m) for m in ("1", "L", "RGB", "CMYK")]
    + [("GIF", m) for m in ("1", "L", "P", "P+transparency", "RGB", "animated")]
    + [("BMP", m) for m in ("1", "L", "P", "RGB")]
    + [("WEBP", m) for m in ("L", "RGB", "RGBA")]
    + [("WEBP-lossy", "RGB")]
    + [("TIFF", m) for m in ("1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "I", "F", "I;16")]
)

channel = st.integers(0, 255)
# 1x1 up to 300 x 20 and 20 x 300: very thin and very wide images as well as tiny squares
image_sizes = st.one_of(
    st.tuples(st.integers(1, 300), st.integers(1, 20)),
    st.tuples(st.integers(1, 20), st.integers(1, 300)),
    st.tuples(st.integers(1, 40), st.integers(1, 40)),
)


@contextmanager
def scratch():
    """A fresh folder per hypothesis example, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="labkit-loader-") as name:
        yield Path(name)


def over_white(colour, alpha):
    """What compositing a colour with this alpha over white gives (the loader's rule for transparency)."""
    return [255 - (255 - c) * alpha / 255 for c in colour]


def encode(fmt: str, image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    if fmt == "WEBP":
        options["lossless"] = True
    image.save(buffer, fmt.replace("-lossy", ""), **options)
    return buffer.getvalue()


@st.composite
def good_images(draw):
    """(file bytes, expected RGB of every decoded pixel, tolerance): a uniform image in one mode and format."""
    fmt, mode = draw(st.sampled_from(COMBOS))
    size = draw(image_sizes)
    options = {}
    if mode == "1":
        bit = draw(st.integers(0, 1))
        image, expected = Image.new("1", size, bit), [255 * bit] * 3
    elif mode in ("L", "I", "F"):  # I and F: values already in 0..255 pass through unchanged
        v = draw(channel)
        image, expected = Image.new(mode, size, float(v) if mode == "F" else v), [v] * 3
    elif mode == "I;16":  # 16-bit grayscale: 0..65535 maps to 0..255
        v = draw(st.integers(0, 65535))
        image, expected = Image.new("I;16", size, v), [round(v / 257)] * 3
    elif mode in ("P", "P+transparency"):  # pixels use palette entry 0; entry 0 or 1 is transparent
        first, second = draw(st.tuples(channel, channel, channel)), draw(st.tuples(channel, channel, channel))
        image = Image.new("P", size, 0)
        image.putpalette([*first, *second] + [0] * (3 * 254))
        expected = list(first)
        if mode == "P+transparency":
            options["transparency"] = draw(st.integers(0, 1))
            expected = [255] * 3 if options["transparency"] == 0 else expected
    elif mode == "RGB":
        colour = draw(st.tuples(channel, channel, channel))
        image, expected = Image.new("RGB", size, colour), list(colour)
    elif mode == "RGBA":
        colour, alpha = draw(st.tuples(channel, channel, channel)), draw(channel)
        image, expected = Image.new("RGBA", size, (*colour, alpha)), over_white(colour, alpha)
    elif mode == "LA":
        v, alpha = draw(channel), draw(channel)
        image, expected = Image.new("LA", size, (v, alpha)), over_white([v] * 3, alpha)
    elif mode == "CMYK":  # Pillow's rule: R = (255 - C) (255 - K) / 255
        c, m, y, k = draw(st.tuples(channel, channel, channel, channel))
        image = Image.new("CMYK", size, (c, m, y, k))
        expected = [(255 - x) * (255 - k) / 255 for x in (c, m, y)]
    else:  # animated GIF: 2 to 4 frames of different colours; the loader takes the first
        colours = draw(st.lists(st.tuples(channel, channel, channel), min_size=2, max_size=4, unique=True))
        frames = [Image.new("RGB", size, c) for c in colours]
        image, expected = frames[0], list(colours[0])
        options = {"save_all": True, "append_images": frames[1:], "duration": 50, "loop": 0}
    tolerance = LOSSY.get(fmt, 1 if mode in ("RGBA", "LA", "CMYK") else 0)
    return encode(fmt, image, **options), expected, tolerance


def noise_image(seed: int, fmt: str, size: tuple[int, int]) -> bytes:
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return encode(fmt, Image.fromarray(array))


# Pillow's own warnings about the corrupt files written here on purpose (the loader's warning is asserted on)
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:PIL"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]

FORMATS = ["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"]
HTML = b"<!DOCTYPE html><html><body>403 Forbidden</body></html>"


@st.composite
def broken_files(draw):
    """Bytes no decoder accepts: empty, HTML or text saved under an image name, a real image cut to half or less."""
    kind = draw(st.sampled_from(["empty", "html", "text", "truncated"]))
    if kind == "empty":
        return b""
    if kind == "html":
        return HTML + draw(st.binary(max_size=50))
    if kind == "text":
        return ("this is not a picture: " + draw(st.text(max_size=50))).encode()
    data = noise_image(draw(st.integers(0, 2**16)), draw(st.sampled_from(FORMATS)), draw(image_sizes))
    return data[: draw(st.integers(0, len(data) // 2))]


MAGIC = [
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"GIF89a",
    b"GIF87a",
    b"BM",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"II*\x00",
    b"MM\x00*",
    b"P6\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
]


@st.composite
def fuzzed_files(draw):
    """Bytes that may or may not decode: random bytes, an image signature followed by random bytes, a real
    image with a stretch overwritten, a real image cut anywhere."""
    kind = draw(st.sampled_from(["random", "magic", "overwritten", "cut"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "magic":
        return draw(st.sampled_from(MAGIC)) + draw(st.binary(max_size=300))
    data = bytearray(
        noise_image(
            draw(st.integers(0, 2**16)),
            draw(st.sampled_from(FORMATS)),
            draw(st.tuples(st.integers(1, 24), st.integers(1, 24))),
        )
    )
    start = draw(st.integers(0, len(data) - 1))
    if kind == "cut":
        return bytes(data[:start])
    patch = draw(st.binary(min_size=1, max_size=16))
    data[start : start + len(patch)] = patch
    return bytes(data)


def decodes(path: Path, size: int) -> bool:
    try:
        image_folder.decode_image(path, size)
        return True
    except Exception:  # noqa: BLE001 - the loader's own rule: any exception means undecodable
        return False


def labkit_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if str(w.message).startswith("labkit:")]


def load(folder: Path, size: int, cache_dir: Path | None = None):
    """The loader with every warning recorded (also those from its decoding threads)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = image_folder.load_image_folder(folder, size, cache_dir=cache_dir, verbose=False)
    return result, labkit_warnings(caught)


# --------------------------------------------------------------------------- the folder loader


@FAST
@given(
    good=st.lists(st.tuples(good_images(), st.sampled_from(FOLDERS), st.sampled_from(SUFFIXES)), max_size=4),
    broken=st.lists(st.tuples(broken_files(), st.sampled_from(SUFFIXES)), max_size=3),
    fuzzed=st.lists(st.tuples(fuzzed_files(), st.sampled_from(SUFFIXES)), max_size=3),
    decoys=st.booleans(),
    size=st.integers(1, 40),
)
def test_loader_keeps_exactly_the_decodable_files_and_counts_the_rest(good, broken, fuzzed, decoys, size):
    with scratch() as tmp:
        folder, cache = tmp / "gallery", tmp / "cache"
        folder.mkdir()
        expected_colour, bad, unknown = {}, [], []
        for i, ((data, colour, tolerance), sub, suffix) in enumerate(good):
            path = folder / f"{sub}good{i}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            expected_colour[str(path.relative_to(folder))] = (colour, tolerance)
        for i, (data, suffix) in enumerate(broken):
            (folder / f"broken{i}{suffix}").write_bytes(data)
            bad.append(f"broken{i}{suffix}")
        for i, (data, suffix) in enumerate(fuzzed):
            (folder / f"fuzzed{i}{suffix}").write_bytes(data)
            unknown.append(f"fuzzed{i}{suffix}")
        if decoys:  # neither loaded nor counted: directories, hidden files and other suffixes
            picture = encode("PNG", Image.new("RGB", (5, 5), (1, 2, 3)))
            (folder / "empty-dir.jpg").mkdir()
            (folder / "nested.PNG" / "deeper.gif").mkdir(parents=True)
            (folder / ".hidden.png").write_bytes(picture)
            (folder / ".thumbnails").mkdir()
            (folder / ".thumbnails" / "t.png").write_bytes(picture)
            (folder / "picture.png.part").write_bytes(picture)
            (folder / "readme.txt").write_text("not an image suffix")
        before = sorted(p.relative_to(folder) for p in folder.rglob("*"))

        decodable = [name for name in unknown if decodes(folder / name, size)]
        assert not any(decodes(folder / name, size) for name in bad)  # known broken really are broken
        kept = sorted(folder / name for name in [*expected_colour, *decodable])  # find_images sorts paths
        names_expected = [str(p.relative_to(folder)) for p in kept]
        n_files = len(expected_colour) + len(bad) + len(unknown)
        n_skipped = n_files - len(kept)

        if n_files == 0:
            with pytest.raises(FileNotFoundError, match="no image files"):
                image_folder.load_image_folder(folder, size, cache_dir=cache, verbose=False)
            return
        if not kept:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with pytest.raises(ValueError) as error:
                    image_folder.load_image_folder(folder, size, cache_dir=cache, verbose=False)
            message = str(error.value)
            assert str(folder) in message and f"none of the {n_files} image files" in message
            assert "could be decoded as an image" in message and ".png, .tif" in message  # the formats read
            assert "save them again as .png or .jpg" in message  # says what to do with one's own files
            assert sorted([*bad, *unknown])[0] in message  # names a file
            messages = labkit_warnings(caught)
            assert len(messages) == 1 and f"skipped {n_files} of {n_files} image files" in messages[0]
            assert not cache.exists()  # nothing cached for a folder without images
            return

        (images, names, skipped), messages = load(folder, size, cache)
        assert names == names_expected
        assert skipped == n_skipped
        assert images.shape == (len(kept), 3, size, size) and images.dtype == torch.uint8
        assert images.is_contiguous()
        if n_skipped:
            assert len(messages) == 1, messages
            assert f"skipped {n_skipped} of {n_files} image files under {folder}" in messages[0]
            assert "\n" not in messages[0]
        else:
            assert messages == []
        for i, name in enumerate(names):
            pixels = images[i].permute(1, 2, 0).numpy().astype(float)  # (S, S, 3)
            if name in expected_colour:
                colour, tolerance = expected_colour[name]
                assert np.abs(pixels - np.array(colour)).max() <= tolerance, (name, colour, pixels[0, 0])
            else:  # a fuzzed file that happens to decode: exactly what decode_image gives
                assert np.array_equal(pixels, image_folder.decode_image(folder / name, size).astype(float))

        # the cache: one file in the cache folder, nothing added to the image folder, and a second load
        # that decodes nothing and gives the same answer
        assert [p.name for p in cache.iterdir()] == [p.name for p in cache.glob(f"abstract-art-{size}px-*.pt")]
        assert len(list(cache.iterdir())) == 1
        assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before

        def no_decoding(path, size):
            raise AssertionError(f"decoded {path} although the cache is fresh")

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(image_folder, "decode_image", no_decoding)
            (again, names_again, skipped_again), _ = load(folder, size, cache)
        assert torch.equal(again, images) and names_again == names and skipped_again == skipped


@FAST
@given(
    good=st.lists(good_images(), min_size=1, max_size=3),
    broken=st.lists(broken_files(), max_size=2),
    size=st.sampled_from([32, 64]),
)
def test_abstract_art_from_a_local_folder_is_floats_in_0_1_cached_under_the_data_root(good, broken, size):
    with scratch() as root, pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABKIT_DATA", str(root))  # the cache goes under this data root, never into the checkout
        gallery = root / art.ART_FOLDER / "Abstract_gallery"
        gallery.mkdir(parents=True)
        for i, (data, _, _) in enumerate(good):
            (gallery / f"art_{i}.png").write_bytes(data)
        for i, data in enumerate(broken):
            (gallery / f"zz_broken_{i}.jpg").write_bytes(data)
        assert environment.data_root() == root
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = art.load_abstract_art(source="local", size=size, verbose=False)
        assert len(labkit_warnings(caught)) == (1 if broken else 0)
        assert data.source == "local-folder" and data.n_train == len(good) and data.n_test == 0
        assert data.train_x.shape == (len(good), 3, size, size) and data.train_x.dtype == torch.float32
        assert 0 <= data.train_x.min() and data.train_x.max() <= 1
        (images, _, skipped), _ = load(gallery.parent, size)  # no cache_dir: nothing written
        assert skipped == len(broken)
        assert torch.equal(data.train_x, images.float() / 255)
        written = [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
        written = [p for p in written if p.parts[0] != art.ART_FOLDER]  # all but the gallery: the one cache file
        assert len(written) == 1 and written[0].parent == Path(art.CACHE_FOLDER)
        assert written[0].name.startswith(f"abstract-art-{size}px-")


# --------------------------------------------------------------------------- one file


@FAST
@given(blob=st.one_of(fuzzed_files(), broken_files()), size=st.integers(1, 48), suffix=st.sampled_from(SUFFIXES))
def test_decode_image_gives_an_rgb_square_or_raises_an_ordinary_exception(blob, size, suffix):
    with scratch() as tmp:
        path = tmp / f"file{suffix}"
        path.write_bytes(blob)
        try:
            out = image_folder.decode_image(path, size)
        except Exception as e:  # noqa: BLE001 - the documented failure; anything else (SystemExit...) fails the test
            reason = image_folder._try_decode(path, size)  # skipped and named, with the reason on one line
            assert reason.startswith(f"{path.name}: {type(e).__name__}") and "\n" not in reason
        else:
            assert isinstance(out, np.ndarray) and out.shape == (size, size, 3) and out.dtype == np.uint8
            assert np.array_equal(image_folder._try_decode(path, size), out)


@FAST
@given(blob=broken_files(), size=st.integers(1, 48))
def test_decode_image_raises_on_every_broken_file(blob, size):
    with pytest.raises(Exception):  # noqa: B017 - which exception depends on the format; the loader takes any
        image_folder.decode_image(io.BytesIO(blob), size)


@FAST
@given(image=good_images(), size=st.integers(1, 48))
def test_decode_image_gives_the_colour_of_every_mode_and_format(image, size):
    data, colour, tolerance = image
    out = image_folder.decode_image(io.BytesIO(data), size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(float) - np.array(colour)).max() <= tolerance


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grayscale_is_scaled_not_clipped(fmt, tmp_path):
    """Regression: Pillow's convert() clipped 16-bit grayscale at 255, so mid-grey 32768 came out white."""
    for value, grey in [(0, 0), (257, 1), (32768, 128), (65535, 255)]:
        out = image_folder.decode_image(io.BytesIO(encode(fmt, Image.new("I;16", (9, 7), value))), 4)
        assert out[2, 2].tolist() == [grey] * 3
    ramp = Image.fromarray((np.arange(64, dtype=np.uint16)[None, :] * 1040).repeat(16, axis=0))  # 0 .. 65520
    (tmp_path / f"ramp.{fmt.lower()}").write_bytes(encode(fmt, ramp))
    (images, names, skipped), _ = load(tmp_path, 16)
    assert names == [f"ramp.{fmt.lower()}"] and skipped == 0
    centre_columns = np.arange(24, 40) * 1040 / 257  # the middle 16 of 64 columns, 0..65535 scaled to 0..255
    assert np.abs(images[0, 0, 8].numpy() - centre_columns).max() <= 1  # a grey ramp, not white
