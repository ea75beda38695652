"""The flags read from what a student wrote: the numbers of REPORT.md against the metrics.json files
they were built from, and the settings of each run against those the course fixed. The flags on the
numbers themselves (impossible values, weights that do not give them) are ``labkit.grade.grading``'s.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ..report.tables import table_cell


def report_tables(text: str) -> dict[str, dict[str, str]]:
    """The "Measured:" table of every run section of a REPORT.md: run -> metric -> value as written."""
    tables: dict[str, dict[str, str]] = {}
    run, in_measured = None, False
    for line in text.splitlines():
        heading = re.match(r"^### Run `([^`]+)`", line)
        if heading:
            run, in_measured = heading.group(1), False
            tables[run] = {}
        elif line.startswith("Measured:"):
            in_measured = True
        elif in_measured and run and line.startswith("| ") and not line.startswith("| metric"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 2:
                tables[run][cells[0]] = cells[1]
        elif in_measured and line.startswith("#"):
            in_measured = False
    return tables


def report_flags(folder: Path, runs: dict[str, dict]) -> list[str]:
    """Numbers in REPORT.md that differ from the metrics.json they were built from."""
    path = folder / "REPORT.md"
    if not path.is_file():
        return ["REPORT.md is missing"]
    flags = []
    tables = report_tables(path.read_text())
    for run, table in tables.items():
        if run not in runs:
            flags.append(f"REPORT.md has a section for run {run}, which has no metrics.json")
            continue
        final = runs[run].get("final", {})
        for metric, written in table.items():
            if metric not in final:
                flags.append(f"REPORT.md lists {run} {metric} = {written}, which its metrics.json does not have")
            elif not _shows(written, final[metric]):
                flags.append(
                    f"REPORT.md says {run} {metric} = {_shown(written)} but its metrics.json says "
                    f"{_shown(table_cell(final[metric]))} (edited by hand?)"
                )
    return flags


def _shows(written: str, value) -> bool:
    """Whether a number written in REPORT.md is ``value``: as the report writes it, or the same number written
    another way ("232.0" where the report writes 232)."""
    shown = table_cell(value)
    if written == shown:
        return True
    try:
        return math.isfinite(float(written)) and float(written) == float(shown)
    except ValueError:
        return False


def _shown(text: str, limit: int = 60) -> str:
    """A value from a submission as a flag quotes it: whole up to ``limit`` characters, then cut with "..."."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def settings_flags(runs: dict[str, dict], course: dict[str, dict]) -> list[str]:
    """Smoke-mode runs, and settings other than those the instructor fixed (``course``: run -> settings)."""
    flags = [f"{name}: a smoke-mode run (reduced epochs and data)" for name, r in runs.items() if r.get("smoke")]
    for name, fixed in course.items():
        if name not in runs:
            continue
        used = runs[name].get("hyperparameters", {})
        for key, value in fixed.items():
            if used.get(key) != value:
                flags.append(f"{name}: {key} = {used.get(key)!r}, the course fixed {value!r}")
    return flags


def check_course(course) -> dict[str, dict]:
    """The course's fixed settings as given (run -> {setting: value}), or ``ValueError`` saying what is wrong."""
    if not isinstance(course, dict) or not all(isinstance(fixed, dict) for fixed in course.values()):
        raise ValueError(
            "the course settings must be a JSON object of runs, each an object of settings, for example "
            '{"ae": {"epochs": 20}, "vae": {"beta": 1.0}}'
        )
    return course
