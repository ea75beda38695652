"""The grader's ``--out`` folder: refused where it is, holds or lies inside one of the grader's inputs,
and the record of what a grade unpacked into it (``WORK_RECORD``), so that the next grade removes
exactly that and never a file it did not write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..engine import files

UNPACKED = "submissions"  # the folder of --out the archives are unpacked into, one folder per student
WORK_RECORD = ".labkit-grade-unpacked.json"  # in UNPACKED: every file and folder the grader unpacked there
CACHE = ".cache"  # the folder of --out that keeps the digit classifier the grader trains


def check_out(out: Path, inputs: dict[str, Path]) -> None:
    """Refuse (``ValueError``) an ``out`` folder that is, holds or lies inside one of ``inputs``
    (what -> path), or that is a file: the grader writes and cleans ``out``, and never touches its inputs."""
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"--out {out} is a file: give a folder for gradebook.csv, class_report.md and the unpacked files"
        )
    where = out.resolve()
    for what, path in inputs.items():
        given = path.resolve()
        if where == given or where.is_relative_to(given) or given.is_relative_to(where):
            relation = "is" if where == given else "lies inside" if where.is_relative_to(given) else "holds"
            raise ValueError(
                f"--out {out} {relation} {what} ({path}): the grader writes into --out and never changes its "
                "inputs. Choose a folder of its own beside them, for example --out grades"
            )


def _entries(folder: Path) -> list[Path]:
    """Everything under ``folder``, deepest first (links listed, never followed)."""
    found = []
    for parent, dirs, names in os.walk(folder):
        found += [Path(parent, name) for name in dirs + names]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unpacked_earlier(work: Path) -> list[Path]:
    """What an earlier grade unpacked into ``work`` (listed in its ``WORK_RECORD``), deepest first, to
    be removed before unpacking anew; ``ValueError`` when ``work`` holds anything else, so that the
    grader never deletes a file it did not write (an instructor's notes, a folder that merely has the name)."""
    if not work.exists() and not work.is_symlink():
        return []
    if work.is_symlink() or not work.is_dir():
        raise ValueError(f"{work} is not a folder the grader made: move it away or choose another --out")
    record = work / WORK_RECORD
    try:
        listed = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
        written, unpacking = set(listed.get("written", [])), set(listed.get("unpacking", []))
    except (OSError, ValueError, AttributeError, TypeError):
        written, unpacking = set(), set()
    entries = _entries(work)
    names = {p.relative_to(work).as_posix(): p.is_dir() for p in entries if p != record}
    # "unpacking": the student folders of a grade that was stopped before it could list what it wrote
    foreign = [name for name in names if name not in written and name.split("/")[0] not in unpacking]
    foreign.sort(key=lambda name: (names[name], name))  # files first: they are what would be lost
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise ValueError(
            f"{work} holds {foreign[0]}{more}, which labkit grade did not unpack there; it removes only what it "
            f"wrote itself. Move them out of {work}, or choose another --out"
        )
    return entries


def record_unpacked(work: Path, unpacking: list[str] = ()) -> None:
    """List in ``work/WORK_RECORD`` everything under ``work`` (all of it unpacked by this grade), so that
    the next grade can remove exactly that; before unpacking, also the student folders about to be made
    (``unpacking``), so that a grade stopped half-way still leaves a folder the next one may clean."""
    written = sorted(p.relative_to(work).as_posix() for p in _entries(work) if p != work / WORK_RECORD)
    listing = {"written_by": "labkit grade", "written": written, "unpacking": sorted(unpacking)}
    files.write_text(work / WORK_RECORD, json.dumps(listing, indent=1))
