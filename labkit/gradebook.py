"""The grader's output: ``gradebook.csv`` (one row per student) and ``class_report.md`` (each main
number across the class, with figures). ``labkit.grade`` fills the students' records.

Both are written atomically (``labkit.engine.files``). The gradebook is opened in spreadsheets, and
much of it comes from untrusted submissions: a numeric column holds only finite numbers (anything
else is blank, and the grader flags it), and every text cell is neutralised as OWASP's guidance on
CSV injection says (``spreadsheet_text``), so no cell is ever read as a formula.
"""

from __future__ import annotations

import csv
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .engine import files
from .report.parts import CHECKLIST, PARTS, PLACEHOLDER
from .report.tables import format_value


@dataclass
class Student:
    """One student's graded submission, as ``labkit.grade`` fills it: the runs it holds (run name ->
    metrics.json), the answers of its REPORT.md, and what the grader flagged, noted, verified or refused."""

    name: str
    folder: Path | None = None
    runs: dict[str, dict] = field(default_factory=dict)
    discussions: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    refused: str = ""


ABSURD = 1e12  # no number a labkit run records, parameter counts included, comes near this in size
FORMULA_STARTS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # and their full-width forms


def number_problem(value) -> str | None:
    """Why ``value`` cannot stand in a numeric column of the gradebook (a finite int or float, not
    true/false, at most ``ABSURD`` in size), or None when it can."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "is not a number"
    if not math.isfinite(value):
        return "is not a finite number"
    if abs(value) > ABSURD:
        return f"is absurdly large (beyond {ABSURD:.0e}): no run records such a number"
    return None


def spreadsheet_text(text: str) -> str:
    """``text`` as a CSV cell that no spreadsheet reads as a formula (OWASP, CSV injection): control
    characters (tab, carriage return, line breaks) become spaces, so that a cell is one line, and a
    cell that then starts, after any spaces, with ``=``, ``+``, ``-`` or ``@`` gets a leading ``'``."""
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in str(text))
    return "'" + text if text.lstrip().startswith(FORMULA_STARTS) else text


def _number_cell(value):
    """A numeric column's cell: the number itself, or blank when it is not one (the grader flags it)."""
    return value if number_problem(value) is None else ""


def _words(text: str) -> int:
    return 0 if text in ("", PLACEHOLDER) else len(text.split())


def gradebook_rows(students: list[Student], main_metrics: Sequence[tuple[str, str]]) -> tuple[list[str], list[dict]]:
    """The gradebook's columns and one row per student: the checklist, then each (run, metric) of
    ``main_metrics`` (``labkit.experiments.gradebook_metrics()``), then the words of each Discussion."""
    checklist = [f"{part} {description}" for part, _, _, _, description in CHECKLIST]
    columns = (
        ["student", "status", "flags", "verified"]
        + checklist
        + [f"{run}_{metric}" for run, metric in main_metrics]
        + [f"words_{p.key}" for p in PARTS]
    )
    rows = []
    for s in students:
        row = {
            "student": spreadsheet_text(s.name),
            "status": spreadsheet_text(f"refused: {s.refused}" if s.refused else "graded"),
            "flags": spreadsheet_text("; ".join(s.flags)),
            "verified": spreadsheet_text("; ".join(s.verified)),
        }
        for (_, run, kind, item, _), column in zip(CHECKLIST, checklist):
            present = item in s.runs.get(run, {}).get("final" if kind == "final" else "figures", {})
            row[column] = "present" if present else "missing"
        for run, metric in main_metrics:
            row[f"{run}_{metric}"] = _number_cell(s.runs.get(run, {}).get("final", {}).get(metric))
        for p in PARTS:
            row[f"words_{p.key}"] = _words(s.discussions.get(p.key, ""))
        rows.append(row)
    return columns, rows


def write_gradebook(
    students: list[Student], out: Path, main_metrics: Sequence[tuple[str, str]]
) -> tuple[Path, list[dict]]:
    """``out/gradebook.csv`` (``gradebook_rows``), written atomically; returns its path and its rows. Text cells
    are quoted, numbers are not: a spreadsheet reads the numeric columns as numbers."""
    columns, rows = gradebook_rows(students, main_metrics)
    path = out / "gradebook.csv"
    with files.atomic_writer(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, quoting=csv.QUOTE_NONNUMERIC)
        writer.writeheader()
        writer.writerows(rows)
    return path, rows


def _outliers(values: dict[str, float]) -> dict[str, float]:
    """Students more than 3 robust standard deviations (median absolute deviation) from the median."""
    if len(values) < 4:
        return {}
    ordered = sorted(values.values())
    median = ordered[len(ordered) // 2]
    mad = sorted(abs(v - median) for v in ordered)[len(ordered) // 2] * 1.4826
    if mad == 0:
        return {}
    return {name: (v - median) / mad for name, v in values.items() if abs(v - median) / mad > 3}


def class_report(
    students: list[Student],
    rows: list[dict],
    out: Path,
    reference: dict[str, dict],
    main_metrics: Sequence[tuple[str, str]],
) -> Path:
    """``class_report.md``: each of ``main_metrics`` across the class (reference run marked), outliers, flags."""
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    figures = out / "class_report_files"
    figures.mkdir(parents=True, exist_ok=True)
    refused = [s for s in students if s.refused]
    names = [s.name for s in students]  # rows[i] is students[i]'s row, its name made safe for spreadsheets
    flagged = [s for s in students if s.flags and not s.refused]
    lines = [
        "# Class report",
        "",
        f"{len(students)} submission(s): {len(students) - len(refused)} graded, "
        f"{len(refused)} refused, {len(flagged)} graded with flags. Every number comes from the submissions' "
        "metrics.json files; `gradebook.csv` has one row per student.",
        "",
    ]
    for run, metric in main_metrics:
        values = {
            name: float(r[f"{run}_{metric}"])
            for name, r in zip(names, rows)
            if number_problem(r[f"{run}_{metric}"]) is None
        }
        lines += [f"## {run}: {metric}", ""]
        if not values:
            lines += ["No submission has this number.", ""]
            continue
        fig, ax = plt.subplots(figsize=(5, 2.6))
        ax.hist(list(values.values()), bins=min(20, max(5, len(values))), color="C0", alpha=0.8)
        ref = reference.get(run, {}).get("final", {}).get(metric)
        ref = ref if number_problem(ref) is None else None
        if ref is not None:
            ax.axvline(ref, color="C3", ls="--", label=f"reference run: {format_value(ref)}")
            ax.legend(fontsize=8)
        ax.set_xlabel(f"{run} {metric}")
        ax.set_ylabel("students")
        fig.tight_layout()
        files.save_figure(fig, figures / f"{run}_{metric}.png", dpi=100)
        plt.close(fig)
        ordered = sorted(values.values())
        lines += [
            f"![{run} {metric}](class_report_files/{run}_{metric}.png)",
            "",
            f"{len(values)} student(s); median {format_value(ordered[len(ordered) // 2])}, range "
            f"{format_value(ordered[0])} to {format_value(ordered[-1])}"
            + (f"; reference run {format_value(ref)}" if ref is not None else "")
            + ".",
            "",
        ]
        for name, z in sorted(_outliers(values).items(), key=lambda kv: -abs(kv[1])):
            lines.append(
                f"- stands out: {_one_line(name)}, {format_value(values[name])} ({z:+.1f} robust standard deviations)"
            )
        lines.append("")
    lines += ["## Flagged submissions", ""]
    lines += [f"- **{_one_line(s.name)}**: " + _one_line("; ".join(s.flags)) for s in flagged] or ["None."]
    lines += ["", "## Refused submissions", ""]
    lines += [f"- **{_one_line(s.name)}**: {_one_line(s.refused)}" for s in refused] or ["None."]
    return files.write_text(out / "class_report.md", "\n".join(lines) + "\n")


# Every ASCII character Markdown or HTML could read as markup (CommonMark lets any ASCII punctuation be escaped).
MARKUP_CHARACTERS = "\\`*_{}[]()<>#+-!|~&"


def _one_line(text: str) -> str:
    """Text from a submission (a file name, a flag quoting its metrics.json) as plain text on one line of
    the class report: a line break in it cannot start a heading, and no character of it is read as
    Markdown or HTML (a link, an image that loads from elsewhere, a tag), each shown as it was written."""
    line = " ".join(str(text).splitlines())
    return "".join("\\" + c if c in MARKUP_CHARACTERS else c for c in line)
