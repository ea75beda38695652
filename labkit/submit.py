"""The submission archive: ``python -m labkit submit`` packs a student's course work into it, and
the grader reads it back (``open_submission``) without trusting it.

The archive holds REPORT.md with its figures, every run's ``metrics.json`` and the weights of its
final checkpoint (no optimiser state, stored in float16: enough for the grader to re-evaluate the
numbers), the environment, and a manifest with a SHA-256 for every file. ``docs/instructors.md``
says how a course collects and grades them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import torch

from . import __version__
from .engine import environment
from .engine.checkpoint import FILE_NAME as CHECKPOINT_FILE
from .engine.checkpoint import safe_load
from .engine.files import atomic_writer
from .engine.runs import METRICS_FILE, versions_and_hardware
from .report.discussions import read_discussions
from .report.parts import PARTS, PLACEHOLDER, figures_folder
from .report.tables import load_runs as load_runs_folder

FORMAT = "labkit-submission"
VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS_FORMAT = "labkit-submission-weights"
WEIGHTS_FILE = "weights.pt"
GIF_FRAMES = 12  # frames kept of each progression GIF (the PNG beside it shows every epoch's row)
MAX_MEMBERS = 5000  # files in one archive
MAX_MEMBER_BYTES = 200 << 20  # one unpacked file
MAX_TOTAL_BYTES = 500 << 20  # one unpacked archive (a full course is about 35 MB)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def submission_weights(checkpoint_path: Path) -> bytes:
    """The weights of a run's checkpoint, without optimiser state, floating tensors in float16
    (a full course stays well under 50 MB), with the run's description and epoch count."""
    state = safe_load(checkpoint_path)
    half = {
        name: {k: (v.half() if v.is_floating_point() else v) for k, v in module.items()}
        for name, module in state["modules"].items()
    }
    buffer = io.BytesIO()
    torch.save(
        {
            "format": WEIGHTS_FORMAT,
            "version": VERSION,
            "run": state["run"],
            "epochs_done": state["epochs_done"],
            "modules": half,
        },
        buffer,
    )
    return buffer.getvalue()


def trimmed_gif(path: Path, frames: int = GIF_FRAMES) -> bytes:
    """An animated GIF with at most ``frames`` evenly spaced frames (first and last kept)."""
    from PIL import Image, ImageSequence

    with Image.open(path) as gif:
        all_frames = [f.convert("RGB") for f in ImageSequence.Iterator(gif)]
        duration = gif.info.get("duration", 300)
    if len(all_frames) <= frames:
        return path.read_bytes()
    keep = sorted({round(i * (len(all_frames) - 1) / (frames - 1)) for i in range(frames)})
    chosen = [all_frames[i] for i in keep]
    buffer = io.BytesIO()
    chosen[0].save(buffer, format="GIF", save_all=True, append_images=chosen[1:], duration=duration, loop=0)
    return buffer.getvalue()


def _unwritten_discussions(report_path: Path) -> list[str]:
    found = read_discussions(report_path)
    return [part.title for part in PARTS if found.get(part.key, "") in ("", PLACEHOLDER)]


def _is_submission(path: Path) -> bool:
    """Whether ``path`` is an archive ``labkit submit`` wrote (one it may replace with a newer one)."""
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read(MANIFEST))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, zlib.error):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def _archive_problem(out: Path, runs_dir: Path, report_path: Path) -> str | None:
    """Why ``out`` cannot be the submission archive, checked before anything is written; None if it
    can. It must be a ``.zip`` file outside everything it packs, and either new or an earlier
    submission (the one file it replaces)."""
    figures_dir = figures_folder(report_path)
    where = out.resolve()
    for packed, what in (
        (report_path, "the report"),
        (runs_dir, "the runs folder"),
        (figures_dir, "the figures folder"),
    ):
        if where == packed.resolve() or where.is_relative_to(packed.resolve()):
            return (
                f"--out {out} is {what} it packs, or inside it: write the archive beside them, such as "
                f"{runs_dir.parent / 'submission.zip'}"
            )
    if out.is_dir():
        return f"--out {out} is a folder: name the archive's file, such as {out / 'submission.zip'}"
    if out.suffix.lower() != ".zip":
        return f"--out {out}: the archive's name must end in .zip, such as submission.zip"
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"--out {out} cannot be written: {folder} is a file, not a folder"
    if out.exists() and not (out.is_file() and _is_submission(out)):
        return (
            f"--out {out} exists and is not a submission archive; it would be replaced: move it away or choose "
            "another name"
        )
    return None


def build_submission(
    runs_dir: str | Path | None = None, out: str | Path | None = None, allow_smoke: bool = False
) -> tuple[Path, list[str]]:
    """Write the submission archive; return its path and the warnings to show the student.

    ``runs_dir`` (default: the runs folder) must hold the runs and, beside it, the REPORT.md that
    ``python -m labkit report`` (or notebook 04) built from them. Smoke-mode runs are refused unless
    ``allow_smoke`` (a practice submission); unwritten Discussion sections are a warning. ``out``
    must be a new ``.zip`` file or an earlier submission, outside the files it packs; it is
    written atomically (a full disk leaves the earlier archive, or none, and no temporary file).
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else environment.runs_root()
    report_path = runs_dir.parent / "REPORT.md"
    out = Path(out) if out is not None else runs_dir.parent / "submission.zip"
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"no runs folder at {runs_dir}: run the notebooks first, or pass --runs DIR")
    if not report_path.is_file():
        raise FileNotFoundError(
            f"no REPORT.md beside {runs_dir}: build it with `python -m labkit report` "
            "(the last cell of notebook 04 does too), write your discussions, then submit"
        )
    problem = _archive_problem(out, runs_dir, report_path)
    if problem:
        raise ValueError(f"{problem}; nothing was written")
    runs = load_runs_folder(runs_dir)
    if not runs:
        raise FileNotFoundError(f"no runs (*/{METRICS_FILE}) in {runs_dir}: run the notebooks first")
    smoke = sorted(name for name, r in runs.items() if r.get("smoke"))
    if smoke and not allow_smoke:
        raise ValueError(
            f"the runs {', '.join(smoke)} were made in smoke mode (reduced epochs and data), not at the "
            "course's settings: run them again without LABKIT_SMOKE, rebuild the report, then submit; "
            "or pass --allow-smoke for a practice submission (the gradebook will flag it)"
        )
    files: dict[str, bytes] = {"REPORT.md": report_path.read_bytes()}
    figures_dir = figures_folder(report_path)
    for path in sorted(p for p in figures_dir.rglob("*") if p.is_file()) if figures_dir.is_dir() else []:
        name = f"{figures_dir.name}/{path.relative_to(figures_dir).as_posix()}"
        files[name] = trimmed_gif(path) if path.suffix.lower() == ".gif" else path.read_bytes()
    for name in sorted(runs):
        files[f"runs/{name}/{METRICS_FILE}"] = (runs_dir / name / METRICS_FILE).read_bytes()
        if (runs_dir / name / CHECKPOINT_FILE).is_file():
            files[f"runs/{name}/{WEIGHTS_FILE}"] = submission_weights(runs_dir / name / CHECKPOINT_FILE)
    files["environment.json"] = json.dumps(versions_and_hardware(), indent=2).encode()
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "labkit": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "smoke": bool(smoke),
        "runs": sorted(runs),
        "files": {name: sha256(data) for name, data in files.items()},
    }
    made = [folder for folder in (out.parent, *out.parent.parents) if not folder.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(out, "wb") as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
            for name, data in files.items():
                archive.writestr(name, data)
    except OSError as e:
        for folder in made:  # the folders made for it, if still empty
            try:
                folder.rmdir()
            except OSError:
                pass
        raise OSError(
            e.errno,
            f"{out} was not written ({e.strerror or e}): free some space or choose another --out; "
            + ("the earlier archive is unchanged" if out.exists() else "nothing was written"),
        ) from e
    warnings = [f"the Discussion of '{title}' is not written yet" for title in _unwritten_discussions(report_path)]
    missing = [
        f"no checkpoint for run {name}: its numbers cannot be verified"
        for name in sorted(runs)
        if name != "compare" and not (runs_dir / name / CHECKPOINT_FILE).is_file()
    ]
    return out, warnings + missing


# --------------------------------------------------------------------------- reading one, safely


class Refused(Exception):
    """A submission that cannot be graded at all; the message goes into the gradebook."""


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        return f"member {name!r} has an absolute path"
    if ".." in path.parts:
        return f"member {name!r} points outside the archive's folder ('..')"
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return f"member {name!r} is a symbolic link"
    return None


def unpack(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest`` (which must not exist), refusing anything that could write
    elsewhere (absolute paths, ``..``, links) or explode (more than the size limits, whatever the
    archive claims: bytes are counted as they are written). Raises ``Refused`` with the reason."""
    try:
        handle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise Refused(f"not a zip archive, or a damaged one ({e})") from None
    dest.mkdir(parents=True)
    root = dest.resolve()
    total = 0
    with handle:
        members = handle.infolist()
        if len(members) > MAX_MEMBERS:
            raise Refused(f"the archive holds {len(members)} files, more than {MAX_MEMBERS}")
        for info in members:
            problem = _member_problem(info)
            if problem:
                raise Refused(f"refused to unpack: {problem}")
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(root):
                raise Refused(f"refused to unpack: member {info.filename!r} would land outside its folder")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with handle.open(info) as source, open(target, "wb") as sink:
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        total += len(chunk)
                        if written > MAX_MEMBER_BYTES or total > MAX_TOTAL_BYTES:
                            raise Refused(
                                f"refused to unpack: {info.filename!r} expands past the size limit "
                                f"({MAX_MEMBER_BYTES >> 20} MB a file, {MAX_TOTAL_BYTES >> 20} MB in all): "
                                "a zip bomb, or not a labkit submission"
                            )
                        sink.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                raise Refused(f"damaged archive: {info.filename!r} cannot be read ({e})") from None
    return dest


def open_submission(path: Path, work: Path) -> Path:
    """The folder of a submission: an unpacked archive under ``work``, or the folder itself (which
    must hold no links: reading one could read anything on the grader's machine)."""
    if path.is_dir():
        for folder, dirs, files in os.walk(path):
            links = [name for name in dirs + files if os.path.islink(os.path.join(folder, name))]
            if links:
                raise Refused(f"the folder holds a symbolic link ({Path(folder, links[0]).relative_to(path)})")
        return path
    if (work / path.stem).exists():
        raise Refused(f"another submission is already named {path.stem}")
    return unpack(path, work / path.stem)


def check_manifest(folder: Path) -> list[str]:
    """Flags for a folder that is not what ``labkit submit`` made: no manifest, hashes that differ,
    files missing from or added to it."""
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as e:
        return [f"not made by `labkit submit`: {MANIFEST} is missing or unreadable ({type(e).__name__})"]
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return [f"not made by `labkit submit`: {MANIFEST} is not a {FORMAT} manifest"]
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not all(isinstance(digest, str) for digest in listed.values()):
        return [f"not made by `labkit submit`: {MANIFEST} has no table of files and their SHA-256"]
    flags = []
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MANIFEST}
    for name in sorted(set(listed) - present):
        flags.append(f"archive altered: {name} is in the manifest but not in the archive")
    for name in sorted(present - set(listed)):
        flags.append(f"archive altered: {name} is in the archive but not in the manifest")
    for name in sorted(set(listed) & present):
        if sha256((folder / name).read_bytes()) != listed[name]:
            flags.append(f"archive altered: {name} differs from the SHA-256 in the manifest")
    return flags


def load_runs(folder: Path) -> dict[str, dict]:
    """Every ``runs/<name>/metrics.json`` of a submission folder, by run name (as ``labkit.report.load_runs``
    reads and checks a runs folder); an unreadable or misshapen one refuses the submission, with the
    file named inside the submission."""
    try:
        return load_runs_folder(folder / "runs")
    except ValueError as e:
        raise Refused(str(e).replace(f"{folder}{os.sep}", "")) from None
