"""The grader's output: ``gradebook.csv`` (one row per student) and ``class_report.md`` (each main
number across the class, with figures). ``labkit.grade`` fills the students' records.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from . import report

if TYPE_CHECKING:
    from .grade import Student

MAIN_METRICS = (
    ("ae", "test_mse"),
    ("vae", "test_neg_elbo_nats"),
    ("vae", "test_recon_nats"),
    ("vae", "test_kl_nats"),
    ("gan", "fid_classifier"),
    ("gan", "class_coverage"),
    ("dcgan", "seconds_per_epoch"),
)


def _words(text: str) -> int:
    return 0 if text in ("", report.PLACEHOLDER) else len(text.split())


def gradebook_rows(students: list[Student]) -> tuple[list[str], list[dict]]:
    checklist = [f"{part} {description}" for part, _, _, _, description in report.CHECKLIST]
    columns = (
        ["student", "status", "flags", "verified"]
        + checklist
        + [f"{run}_{metric}" for run, metric in MAIN_METRICS]
        + [f"words_{p.key}" for p in report.PARTS]
    )
    rows = []
    for s in students:
        row = {
            "student": s.name,
            "status": f"refused: {s.refused}" if s.refused else "graded",
            "flags": "; ".join(s.flags),
            "verified": "; ".join(s.verified),
        }
        for (_, run, kind, item, _), column in zip(report.CHECKLIST, checklist):
            present = item in s.runs.get(run, {}).get("final" if kind == "final" else "figures", {})
            row[column] = "present" if present else "missing"
        for run, metric in MAIN_METRICS:
            value = s.runs.get(run, {}).get("final", {}).get(metric)
            row[f"{run}_{metric}"] = "" if value is None else value
        for p in report.PARTS:
            row[f"words_{p.key}"] = _words(s.discussions.get(p.key, ""))
        rows.append(row)
    return columns, rows


def write_gradebook(students: list[Student], out: Path) -> tuple[Path, list[dict]]:
    """``out/gradebook.csv``; returns its path and its rows."""
    columns, rows = gradebook_rows(students)
    path = out / "gradebook.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
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


def class_report(students: list[Student], rows: list[dict], out: Path, reference: dict[str, dict]) -> Path:
    """``class_report.md``: each main metric across the class (reference run marked), outliers, flags."""
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    figures = out / "class_report_files"
    figures.mkdir(parents=True, exist_ok=True)
    refused = [s for s in students if s.refused]
    flagged = [s for s in students if s.flags and not s.refused]
    lines = [
        "# Class report",
        "",
        f"{len(students)} submission(s): {len(students) - len(refused)} graded, "
        f"{len(refused)} refused, {len(flagged)} graded with flags. Every number comes from the submissions' "
        "metrics.json files; `gradebook.csv` has one row per student.",
        "",
    ]
    for run, metric in MAIN_METRICS:
        values = {
            r["student"]: float(r[f"{run}_{metric}"]) for r in rows if isinstance(r[f"{run}_{metric}"], (int, float))
        }
        lines += [f"## {run}: {metric}", ""]
        if not values:
            lines += ["No submission has this number.", ""]
            continue
        fig, ax = plt.subplots(figsize=(5, 2.6))
        ax.hist(list(values.values()), bins=min(20, max(5, len(values))), color="C0", alpha=0.8)
        ref = reference.get(run, {}).get("final", {}).get(metric)
        if isinstance(ref, (int, float)):
            ax.axvline(ref, color="C3", ls="--", label=f"reference run: {report.format_value(ref)}")
            ax.legend(fontsize=8)
        ax.set_xlabel(f"{run} {metric}")
        ax.set_ylabel("students")
        fig.tight_layout()
        fig.savefig(figures / f"{run}_{metric}.png", dpi=100)
        plt.close(fig)
        ordered = sorted(values.values())
        lines += [
            f"![{run} {metric}](class_report_files/{run}_{metric}.png)",
            "",
            f"{len(values)} student(s); median {report.format_value(ordered[len(ordered) // 2])}, range "
            f"{report.format_value(ordered[0])} to {report.format_value(ordered[-1])}"
            + (f"; reference run {report.format_value(ref)}" if isinstance(ref, (int, float)) else "")
            + ".",
            "",
        ]
        for name, z in sorted(_outliers(values).items(), key=lambda kv: -abs(kv[1])):
            lines.append(
                f"- stands out: {name}, {report.format_value(values[name])} ({z:+.1f} robust standard deviations)"
            )
        lines.append("")
    lines += ["## Flagged submissions", ""]
    lines += [f"- **{s.name}**: " + "; ".join(s.flags) for s in flagged] or ["None."]
    lines += ["", "## Refused submissions", ""]
    lines += [f"- **{s.name}**: {s.refused}" for s in refused] or ["None."]
    path = out / "class_report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
