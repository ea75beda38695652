"""Writing REPORT.md and its figures so that nothing is lost: everything is written beside the old files first, then
swapped in; the figures the report wrote are listed in a manifest, and only those are ever removed."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..engine import files
from .discussions import PreviousReport, is_figure_name
from .parts import backup_path, figures_folder

FIGURES_MANIFEST = "report-manifest.json"  # in the figures folder: what the report wrote there, and its own text


FIGURES_FORMAT = "labkit-report-figures"


def sha256_of_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_figures_manifest(figures_dir: Path) -> dict:
    """The figures folder's manifest, or {} where there is none that the report wrote (then no file
    of the folder is taken for the report's own, except those the old report links to)."""
    try:
        manifest = json.loads((figures_dir / FIGURES_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict) or manifest.get("format") != FIGURES_FORMAT:
        return {}
    figures, generated = manifest.get("figures"), manifest.get("generated")
    if not (
        isinstance(figures, dict)
        and all(is_figure_name(rel) and isinstance(digest, str) for rel, digest in figures.items())
        and isinstance(generated, list)
        and all(isinstance(line, str) for line in generated)
        and isinstance(manifest.get("built"), str)
    ):
        return {}
    return manifest


def destination_problem(out: Path, figures_dir: Path) -> str | None:
    """Why the report cannot be written at ``out``, checked before anything is written; None if it can."""
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{out} cannot be written: {folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{out} cannot be written: the folder {folder} is read-only"
    if out.is_dir():
        return f"{out} is a folder: name the report's file, such as {out / 'REPORT.md'}"
    if out.exists() and not out.is_file():
        return f"{out} is not a regular file: choose another --out"
    if out.is_file() and not os.access(out, os.W_OK):
        return f"{out} is read-only: make it writable (chmod u+w {out}) or choose another --out"
    if figures_dir.is_symlink() or (figures_dir.exists() and not figures_dir.is_dir()):
        return f"{figures_dir}, where the report's figures go, is not a folder: move it away or choose another --out"
    backup = backup_path(out)
    if backup.is_symlink() or (backup.exists() and not backup.is_file()):
        return f"{backup}, where the report before a rebuild is kept, is not a file: move it away"
    return None


def figure_problems(figures_dir: Path, planned: set[str], ours: dict[str, str | None]) -> list[str]:
    """The files a rebuild's figures would replace that the report did not write (or that were
    changed since): it never replaces them."""
    problems = {}
    for rel in sorted(planned):
        target = figures_dir / rel
        if target.parent.is_symlink() or (target.parent.exists() and not target.parent.is_dir()):
            problems[str(target.parent)] = f"{target.parent} is not a folder the report made"
        elif target.is_symlink() or (target.exists() and not target.is_file()):
            problems[str(target)] = f"{target} is not a figure the report wrote"
        elif target.exists() and rel not in ours:
            problems[str(target)] = f"{target} is not a figure the report wrote"
        elif target.exists() and ours[rel] is not None and sha256_of_file(target) != ours[rel]:
            problems[str(target)] = f"{target} was changed after the report wrote it"
    return list(problems.values())


class Swap:
    """Renames done one at a time, each undone (last first) if a later one fails, so that a rebuild
    replaces the report's files completely or not at all; and the folders made for them."""

    def __init__(self) -> None:
        self.moves: list[tuple[Path, Path]] = []
        self.folders: list[Path] = []

    def folder(self, path: Path) -> None:
        missing = []
        while not path.exists() and path != path.parent:
            missing.append(path)
            path = path.parent
        for path in reversed(missing):
            path.mkdir()
            self.folders.append(path)

    def move(self, source: Path, target: Path) -> None:
        self.folder(target.parent)
        os.replace(source, target)
        self.moves.append((source, target))

    def undo(self) -> list[str]:
        """Put every moved file back; the ones that could not be, with why."""
        failed = []
        for source, target in reversed(self.moves):
            try:
                os.replace(target, source)
            except OSError as e:
                failed.append(f"{target} ({e.strerror or e})")
        self.moves = []
        return failed

    def remove_folders(self) -> None:
        for path in reversed(self.folders):
            try:
                path.rmdir()  # only if empty
            except OSError:
                pass


def write_report(
    out: Path, text: str, figures: dict[str, Path], manifest: dict, previous: PreviousReport | None, stale: list[str]
) -> None:
    """Write the report, its figures (``<run>/<file>`` -> source), the figures' manifest and the
    backup of ``previous`` in a temporary folder beside ``out``; only then rename them into place,
    each file it replaces moved aside, and the report itself last. A failure at any point puts every
    renamed file back: the report and its figures stay as they were."""
    figures_dir, swap = figures_folder(out), Swap()
    stage = None
    try:
        swap.folder(out.parent)
        stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".new"))
        for rel, source in figures.items():
            (stage / "figures" / rel).parent.mkdir(parents=True, exist_ok=True)
            data = source.read_bytes()
            files.write_bytes(stage / "figures" / rel, data)
            manifest["figures"][rel] = hashlib.sha256(data).hexdigest()
        files.write_text(stage / "manifest", json.dumps(manifest, indent=1, ensure_ascii=False))
        files.write_text(stage / "report", text)
        if previous is not None:
            files.write_bytes(stage / "backup", previous.raw)
        # Everything is on disk; from here on only renames, each undone if a later one fails.
        replaced = stage / "replaced"
        for rel in figures:
            if (figures_dir / rel).exists():
                swap.move(figures_dir / rel, replaced / "figures" / rel)
            swap.move(stage / "figures" / rel, figures_dir / rel)
        for rel in stale:
            swap.move(figures_dir / rel, replaced / "figures" / rel)
        if (figures_dir / FIGURES_MANIFEST).exists():
            swap.move(figures_dir / FIGURES_MANIFEST, replaced / "manifest")
        swap.move(stage / "manifest", figures_dir / FIGURES_MANIFEST)
        if previous is not None:
            if backup_path(out).exists():
                swap.move(backup_path(out), replaced / "backup")
            swap.move(stage / "backup", backup_path(out))
        os.replace(stage / "report", out)
    except BaseException as e:
        failed = swap.undo()
        if failed:  # keep the temporary folder: it holds what could not be put back
            raise OSError(
                f"{out} was not rebuilt ({e}), and these files could not be put back: {'; '.join(failed)}. "
                f"Their previous versions are in {stage / 'replaced'}"
            ) from e
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        swap.remove_folders()
        if isinstance(e, OSError):
            raise OSError(
                e.errno,
                f"{out} was not rebuilt ({e.strerror or e}): the report and its figures are as they were; "
                "free some space (or fix what the error says) and build it again",
            ) from e
        raise
    shutil.rmtree(stage, ignore_errors=True)
    for folder in sorted({(figures_dir / rel).parent for rel in stale}):
        try:
            folder.rmdir()  # a run's folder of figures, once the last of them is gone
        except OSError:
            pass


def remove_abandoned_stages(out: Path) -> None:
    """Remove the temporary folders of rebuilds that were killed before they finished (``write_report``
    stages in ``.<report>.*.new`` beside the report). One that holds ``replaced`` is kept: it has the
    previous versions of files a killed rebuild had already moved aside."""
    for stage in out.parent.glob(f".{glob.escape(out.name)}.*.new"):
        if stage.is_dir() and not stage.is_symlink() and not (stage / "replaced").exists():
            shutil.rmtree(stage, ignore_errors=True)
