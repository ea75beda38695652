"""The runs a report is built from (every metrics.json), the GAN variants benchmark's table, and how numbers are
written in the report's tables."""

from __future__ import annotations

import json
from pathlib import Path

from ..engine import environment
from ..engine.runs import METRICS_FILE, read_record


def load_runs(runs_dir: Path) -> dict[str, dict]:
    """Every ``<runs_dir>/<name>/metrics.json``, by run name, each checked by ``engine.runs.read_record``:
    a file that cannot be read, or is not shaped like a run's record, raises ``ValueError`` naming it."""
    return {path.parent.name: read_record(path) for path in sorted(runs_dir.glob(f"*/{METRICS_FILE}"))}


GAN_VARIANTS_FILE = "gan_variants.json"  # written by benchmarks/gan_variants.py


def find_gan_variants(runs_dir: Path) -> Path | None:
    """The GAN variants benchmark's result: in the runs folder, else the one committed in the checkout."""
    root = environment.project_root()
    for path in (runs_dir / GAN_VARIANTS_FILE, root / "benchmarks" / "results" / GAN_VARIANTS_FILE if root else None):
        if path is not None and path.is_file():
            return path
    return None


def read_gan_variants(path: Path, shown: str) -> list[str]:
    """The variants table of the benchmark's result at ``path``; a file that cannot be read or is not shaped
    like one (a copy cut short, an edit gone wrong) leaves the table out with a line that says why and how to
    write it again, and the rest of the report is built."""
    try:
        return gan_variants_section(json.loads(path.read_text(encoding="utf-8")), shown)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else 'no detail'}"
        print(f"labkit: {shown} could not be read ({why}); the report leaves its table out")
        return [
            "### The MNIST GAN's variants over several seeds",
            "",
            f"Left out: `{shown}` could not be read ({why}). Run `python benchmarks/gan_variants.py` to write it "
            "again, then rebuild the report.",
            "",
        ]


def gan_variants_section(result: dict, source: str) -> list[str]:
    """The MNIST GAN's variants over several seeds as a Markdown table: mean ± standard deviation."""

    def spread(measure: dict, digits: int) -> str:
        return f"{measure['mean']:.{digits}f} ± {measure['sd']:.{digits}f}"

    machine = result.get("machine", {})
    lines = [
        f"### The MNIST GAN's variants over {len(result['seeds'])} seeds",
        "",
        f"From `{result['benchmark']}` ({source}): {result['epochs']} epochs per run on {result['data']['name']}, "
        f"seeds {', '.join(map(str, result['seeds']))}, {result['samples']:,} samples per run, on "
        f"{machine.get('device', '?')} ({machine.get('cpu_cores', '?')} threads), {result['minutes']} minutes in all. "
        "Mean ± standard deviation over the seeds. Fréchet: the classifier Fréchet distance to the test digits "
        f"(real training digits score {result['real_floor_fid_classifier']:.2f}); D(x) and D(G(z)) are "
        "probabilities, or mean critic scores for WGAN-GP." + (f" {result['note']}" if result.get("note") else ""),
        "",
        "| variant | Fréchet | classes covered | KL from uniform | D(x) | D(G(z)) | s/epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in result["variants"].items():
        lines.append(
            f"| {name} | {spread(v['fid_classifier'], 1)} | {spread(v['class_coverage'], 1)} | "
            f"{spread(v['class_kl_from_uniform'], 3)} | {spread(v['d_real'], 2)} | {spread(v['d_fake'], 2)} | "
            f"{spread(v['seconds_per_epoch'], 2)} |"
        )
    return lines + [""]


def format_value(value, digits: int = 4) -> str:
    """A value as the report and notebook 04's table write it: ``digits`` significant digits for a
    number (thousands separated when large), "n/a" for None, lists and dicts item by item."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v, digits) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {format_value(v, digits)}" for k, v in value.items())
    return str(value)


def table_cell(value) -> str:
    """A value as a table of the report shows it: ``format_value``, with a ``|`` turned into ``/``
    (the grader compares a report's numbers with their metrics.json through this)."""
    return format_value(value).replace("|", "/")


def markdown_table(rows, header=("", "")) -> list[str]:
    """The lines of a Markdown table: ``header`` and one line per row, any number of columns,
    each value as ``table_cell`` shows it."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(table_cell(v) for v in row) + " |" for row in rows]
