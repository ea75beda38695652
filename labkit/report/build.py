"""``build_report``: REPORT.md from the runs' metrics.json files, with the environment, a section per run, the parts
with their Discussions kept, and the checklist."""

from __future__ import annotations

import time
from pathlib import Path

from ..engine import environment
from .discussions import discussion_markers, read_previous, refusal
from .parts import CHECKLIST, PARTS, PLACEHOLDER, figures_folder
from .tables import find_gan_variants, load_runs, markdown_table, read_gan_variants
from .writing import (
    FIGURES_FORMAT,
    destination_problem,
    figure_problems,
    read_figures_manifest,
    remove_abandoned_stages,
    sha256_of_file,
    write_report,
)


def _figure_plan(runs: dict[str, dict], runs_dir: Path) -> dict[str, dict[str, str]]:
    """The figures of each run that exist, as run -> figure name -> ``<run>/<file>`` (their place in
    the figures folder)."""
    return {
        run: {
            name: f"{run}/{filename}"
            for name, filename in record.get("figures", {}).items()
            if (runs_dir / run / filename).is_file()
        }
        for run, record in runs.items()
    }


def _environment_section(runs: dict[str, dict]) -> list[str]:
    lines = ["## Environment", ""]
    if not runs:
        return lines + ["No runs found yet: run the notebooks (or `python -m labkit train ...`) first.", ""]
    first = next(iter(runs.values()))
    env = first.get("environment", {})
    modes = sorted({"smoke (reduced epochs and data)" if r.get("smoke") else "full settings" for r in runs.values()})
    lines += markdown_table(
        [
            ("device", ", ".join(sorted({r.get("device", "?") for r in runs.values()}))),
            ("GPU", env.get("gpu", "none")),
            ("CPU cores", env.get("cpu_count", "?")),
            ("platform", env.get("platform", "?")),
            (
                "libraries",
                "; ".join(
                    f"{k} {env[k]}" for k in ("python", "torch", "torchvision", "numpy", "scikit-learn") if k in env
                ),
            ),
            ("seeds", ", ".join(sorted({str(r.get("seed")) for r in runs.values()}))),
            ("settings", ", ".join(modes)),
        ],
        header=("what", "value"),
    )
    lines += [
        "",
        "Data used by each run (offline subsets and synthetic stand-ins are named as such):",
        "",
        "| run | dataset | source | train | test |",
        "|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        d = r.get("dataset", {})
        lines.append(
            f"| {name} | {d.get('label', d.get('name', '?'))} | {d.get('source', '?')} | "
            f"{d.get('n_train', '?')} | {d.get('n_test', '?')} |"
        )
    return lines + [""]


def run_section(name: str, record: dict, figures: dict[str, str]) -> list[str]:
    lines = [
        f"### Run `{name}`: {record.get('model', '?')}, {record.get('epochs', '?')} epochs"
        f"{' (smoke mode)' if record.get('smoke') else ''}",
        "",
    ]
    if record.get("note"):
        lines += [f"*{record['note']}.*", ""]
    hyper = record.get("hyperparameters", {})
    if hyper:
        lines += ["Hyperparameters:", ""] + markdown_table(sorted(hyper.items()), ("setting", "value")) + [""]
    table = record.get("final", {}).get("table")  # the comparison's own Markdown table
    final = {k: v for k, v in record.get("final", {}).items() if not (k == "table" and isinstance(v, str))}
    if final:
        lines += ["Measured:", ""] + markdown_table(sorted(final.items()), ("metric", "value")) + [""]
    if isinstance(table, str):
        lines += table.strip().splitlines() + [""]
    for fig_name, rel in figures.items():
        lines += [f"![{name}: {fig_name}]({rel})", ""]
    return lines


def _checklist(runs: dict[str, dict], discussions: dict[str, str]) -> list[str]:
    lines = ["## Instructor checklist", "", "| part | item | status |", "|---|---|---|"]
    for part_key, run, kind, item, description in CHECKLIST:
        record = runs.get(run, {})
        present = item in record.get("final" if kind == "final" else "figures", {})
        if present and record.get("smoke"):
            status = "present (smoke run)"
        else:
            status = "present" if present else f"missing (run `{run}`)"
        lines.append(f"| {part_key} | {description} | {status} |")
    for part in PARTS:
        written = discussions.get(part.key, "") not in ("", PLACEHOLDER)
        lines.append(f"| {part.key} | discussion written | {'present' if written else 'missing'} |")
    return lines + [""]


def build_report(runs_dir: str | Path | None = None, out: str | Path | None = None) -> Path:
    """Write REPORT.md from every run under ``runs_dir`` (default: the runs folder).

    The report goes to ``out``, by default beside the runs folder: ``REPORT.md`` at the top of the
    checkout for ``runs/``, in Kaggle's working folder or on Google Drive when the runs are there.

    Figures are copied into ``<report>_files/`` beside the report and linked by relative paths.
    Existing Discussion text in ``out`` is kept, and nothing else the student wrote is lost: the
    rebuild refuses (``ValueError`` naming each line) where it cannot tell what to keep, keeps the
    report it replaces as ``<report>.bak``, and replaces or removes only files it wrote itself.
    Nothing is written when it refuses or fails. Returns the report's path.
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else environment.runs_root()
    out = Path(out) if out is not None else runs_dir.parent / "REPORT.md"
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"no runs folder at {runs_dir}: run the notebooks or `python -m labkit train` first")
    runs = load_runs(runs_dir)
    figures_dir = figures_folder(out)
    problem = destination_problem(out, figures_dir)
    if problem:
        raise ValueError(f"{problem}; nothing was changed")
    manifest = read_figures_manifest(figures_dir)
    previous = read_previous(out, manifest, figures_dir.name)
    ours = {rel: None for rel in (previous.linked if previous else ())} | manifest.get("figures", {})
    plan = _figure_plan(runs, runs_dir)
    planned = {rel for figures in plan.values() for rel in figures.values()}
    problems = figure_problems(figures_dir, planned, ours)
    if problems:
        raise refusal(
            out,
            problems,
            f"The rebuild would replace them with the runs' figures: move them out of {figures_dir}, or choose "
            "another --out.",
            why="no file it did not write is replaced",
        )
    stale = [
        rel
        for rel in sorted(set(ours) - planned)
        if (path := figures_dir / rel).is_file()
        and not path.is_symlink()
        and not path.parent.is_symlink()
        and (ours[rel] is None or sha256_of_file(path) == ours[rel])
    ]
    discussions = previous.discussions if previous else {}
    links = {run: {name: f"{figures_dir.name}/{rel}" for name, rel in figures.items()} for run, figures in plan.items()}
    variants = None
    if (benchmark := find_gan_variants(runs_dir)) is not None:
        root = environment.project_root()
        shown = benchmark.relative_to(root) if root and benchmark.is_relative_to(root) else benchmark.name
        variants = read_gan_variants(benchmark, str(shown))
    built = (
        f"Built by `python -m labkit report` on {time.strftime('%Y-%m-%d %H:%M')} from {len(runs)} runs. "
        "Every number and figure below comes from those runs; edit only the Discussion sections "
        "(between their markers): they are kept when the report is rebuilt."
    )
    text = "\n".join(_report_lines(runs, links, variants, built, discussions))
    manifest = {
        "format": FIGURES_FORMAT,
        "version": 1,
        "report": out.name,
        "built": built,
        "figures": {},  # filled as they are written: <run>/<file> -> SHA-256
        "generated": _report_lines(runs, links, variants, built, discussions, bodies=False),
    }
    sources = {rel: runs_dir / rel for figures in plan.values() for rel in figures.values()}
    remove_abandoned_stages(out)
    write_report(out, text, sources, manifest, previous, stale)
    for note in previous.notes if previous else ():
        print(f"labkit: {note}")
    return out


def _report_lines(
    runs: dict[str, dict],
    links: dict[str, dict[str, str]],
    variants: list[str] | None,
    built: str,
    discussions: dict[str, str],
    bodies: bool = True,
) -> list[str]:
    """The lines of the report; without ``bodies``, the report's own lines alone (each Discussion's
    start marker followed by its end marker), as the figures' manifest keeps them."""
    lines = ["# Lab report: deep generative models", "", built, ""]
    lines += _environment_section(runs)
    for part in PARTS:
        lines += [f"## {part.title}", ""]
        present = [name for name in part.runs if name in runs]
        extra = sorted(n for n in runs if n not in part.runs and any(n.startswith(r + "-") for r in part.runs))
        for name in present + extra:
            lines += run_section(name, runs[name], links.get(name, {}))
        if part.variants_table and variants is not None:
            lines += variants
        if not present and not extra:
            lines += [f"_No run yet: {', '.join(part.runs)}._", ""]
        start, end = discussion_markers(part.key)
        lines += ["### Discussion", "", "Guiding questions:", ""]
        lines += [f"- {q}" for q in part.questions]
        body = [discussions.get(part.key) or PLACEHOLDER] if bodies else []
        lines += ["", start, *body, end, ""]
    lines += _checklist(runs, discussions)
    return lines
