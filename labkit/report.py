"""REPORT.md, the document instructors grade from, built from the runs' metrics.json files.

``python -m labkit report`` (and the last cell of notebook 04) calls ``build_report``. The
student's Discussion sections live between markers and survive every rebuild.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .engine import settings
from .engine.runs import METRICS_FILE, read_record

PLACEHOLDER = "_Write your discussion here._"
FIGURES_DIR_SUFFIX = "_files"


@dataclass(frozen=True)
class Part:
    key: str
    title: str
    runs: tuple[str, ...]  # run folder names, in order of appearance
    questions: tuple[str, ...]


# The guiding questions of each Discussion; each notebook's "Questions" cell lists its part's, word
# for word (tests/test_exercises.py checks it), so edit them here and there together.
PARTS = (
    Part(
        "ae",
        "Part 1: Autoencoder (notebook 01)",
        ("ae",),
        (
            "How does the AE's test MSE per pixel compare with PCA using as many components as the code has "
            "dimensions? Why can a nonlinear autoencoder beat PCA, and what could make it fail to? How does the "
            "gap change with `latent_dim=8` and `latent_dim=2`?",
            "Which digits are reconstructed worst, and what do the failures have in common?",
            "Is it the batch size or the number of optimiser steps that matters? Re-run with `batch_size=128, "
            "lr=1e-3` for the same number of epochs and compare the steps per epoch and the test MSE.",
            "Do your train and test curves show overfitting? What would you change (data, model, training) to "
            "provoke it, and what would you expect to see?",
            "Which digits overlap in the t-SNE picture of the codes, and what can and cannot be concluded from a "
            "t-SNE picture about the codes themselves?",
            "Why do decoded random codes not look like digits? What would have to be added to the training "
            "objective so that they do?",
        ),
    ),
    Part(
        "vae",
        "Part 2: Variational autoencoder (notebook 02)",
        ("vae", "vae-classic", "vae-narrow", "vae-latent2", "cvae", "vqvae"),
        (
            "How many nats per image go to reconstruction and how many to the KL on the test set? Read the KL as "
            "the information the code carries about an image: is that a lot or a little?",
            "How do the reconstruction and KL terms evolve during training, and why does the KL rise first and "
            "then settle? What would it mean if it stayed near zero for the whole run?",
            "Which VAE had the lower test -ELBO, the default or the classic one, and is the difference in "
            "reconstruction, in KL or both? Relate it to the parameters, the latent dimensions and the seconds "
            "per epoch.",
            "Compare the VAE's reconstructions and test MSE with the AE's, and its samples from the prior with the "
            "AE's decoded random codes. What does the KL term cost, and what does it buy?",
            "What does the decoded manifold of the 2-D model show about how the digits are arranged? Compare it "
            "with the scatter of the latent means.",
            "What changes when beta grows (beta-VAE): the KL, the reconstruction, the scatter and the manifold? "
            "Which beta would you choose for sampling new digits, and which for reconstructing them?",
            "How often does the conditional VAE draw the digit it is asked for, overall and per digit, and which "
            "digits does it confuse? What does the style-transfer row show that z keeps once the label carries "
            "the class?",
            "How does the VQ-VAE's test MSE compare with the AE's and the VAE's, and how many of its codes does "
            "it use (perplexity, usage)? What would you try if half of the codebook were never chosen?",
        ),
    ),
    Part(
        "gan",
        "Part 3: GANs (notebook 03)",
        ("dcgan", "gan", "cgan"),
        (
            "Describe the D(x) and D(G(z)) curves of your DCGAN run: who was winning when, and did training "
            "settle? Quote D(x), D(G(z)) and both losses at three epochs and relate them to 2 ln 2 and ln 2.",
            "In what order did G learn things (colour, edges, layout) in the fixed-noise progression? Did any "
            "column change completely late in training, and what does that say about the stability of G?",
            "Do you see signs of mode collapse in the fixed-noise grids or the diversity numbers? Give one way in "
            "which a GAN could score well on the diversity ratio and still be a poor generator.",
            "What did label smoothing, k = 2 generator steps and the slower discriminator each change in D(x), "
            "D(G(z)), the losses, the diversity and the cost, and why? Which would you keep for the DCGAN?",
            "If you trained on the synthetic stand-in, train on the real gallery: what differs in the curves and "
            "samples? If you trained on the gallery, compare the two discriminators on CIFAR-10 "
            '(`DCGANSettings(dataset="cifar10", downsample="maxpool")` against the strided one).',
            "Compare WGAN-GP and spectral normalisation with the plain GAN on the classifier Fréchet distance and "
            "the classes covered: what does each change in what D is allowed to be? Is the difference larger than "
            "the spread between seeds in the three-seed table of `benchmarks/gan_variants.py`?",
            "Compare the conditional GAN with the MNIST GAN on the conditional accuracy, the classifier Fréchet "
            "distance and the classes covered. Does being told the digit make G's job easier? Can a conditional "
            "G still collapse, and where would you look for it?",
        ),
    ),
    Part(
        "compare",
        "Part 4: AE vs VAE vs GAN (notebook 04)",
        ("compare",),
        (
            "Which model would you choose for compression, for sampling, for sharp images? Back it with the table.",
            "Is the Fréchet distance consistent with what you see in the samples? Where does it disagree?",
            "What would you change to make the comparison fairer?",
        ),
    ),
)

# Instructor checklist: (part, run, kind, name, description); kind is "final" or "figure".
CHECKLIST = (
    ("ae", "ae", "final", "test_mse", "AE test MSE per pixel"),
    ("ae", "ae", "figure", "reconstructions", "AE reconstructions"),
    ("ae", "ae", "figure", "latent_tsne", "AE latent t-SNE"),
    ("ae", "ae", "figure", "random_codes", "AE decoded random codes"),
    ("vae", "vae", "final", "test_neg_elbo_nats", "VAE test -ELBO (nats)"),
    ("vae", "vae", "figure", "loss_curves", "VAE loss curves with the ELBO split"),
    ("vae", "vae", "figure", "prior_samples", "VAE samples from the prior"),
    ("vae", "vae", "figure", "interpolation", "VAE interpolation between two digits"),
    ("vae", "vae-latent2", "figure", "manifold", "decoded manifold of the latent-2 VAE"),
    ("vae", "cvae", "final", "conditional_accuracy", "cVAE conditional accuracy"),
    ("vae", "cvae", "figure", "digit_grid", "cVAE samples, one row per digit"),
    ("vae", "vqvae", "final", "codebook_perplexity", "VQ-VAE codebook perplexity"),
    ("gan", "dcgan", "figure", "progression", "DCGAN fixed-noise progression"),
    ("gan", "dcgan", "final", "seconds_per_epoch", "DCGAN seconds per epoch"),
    ("gan", "gan", "figure", "progression", "MNIST GAN fixed-noise progression"),
    ("gan", "cgan", "final", "conditional_accuracy", "conditional GAN conditional accuracy"),
    ("gan", "cgan", "figure", "digit_grid", "conditional GAN samples, one row per digit"),
    ("compare", "compare", "final", "table", "measured comparison table"),
)


def _discussion_markers(key: str) -> tuple[str, str]:
    return f"<!-- discussion:{key}:start -->", f"<!-- discussion:{key}:end -->"


def read_discussions(report_path: Path) -> dict[str, str]:
    """The student's text of each Discussion section of an existing report (empty if none)."""
    if not report_path.is_file():
        return {}
    text = report_path.read_text()
    found = {}
    for part in PARTS:
        start, end = _discussion_markers(part.key)
        match = re.search(re.escape(start) + r"\n(.*?)\n?" + re.escape(end), text, flags=re.S)
        if match:
            found[part.key] = match.group(1).strip()
    return found


def load_runs(runs_dir: Path) -> dict[str, dict]:
    """Every ``<runs_dir>/<name>/metrics.json``, by run name, each checked by ``engine.runs.read_record``:
    a file that cannot be read, or is not shaped like a run's record, raises ``ValueError`` naming it."""
    return {path.parent.name: read_record(path) for path in sorted(runs_dir.glob(f"*/{METRICS_FILE}"))}


GAN_VARIANTS_FILE = "gan_variants.json"  # written by benchmarks/gan_variants.py


def find_gan_variants(runs_dir: Path) -> Path | None:
    """The GAN variants benchmark's result: in the runs folder, else the one committed in the checkout."""
    root = settings.project_root()
    for path in (runs_dir / GAN_VARIANTS_FILE, root / "benchmarks" / "results" / GAN_VARIANTS_FILE if root else None):
        if path is not None and path.is_file():
            return path
    return None


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


def _copy_figures(run_name: str, record: dict, runs_dir: Path, figures_dir: Path, report_dir: Path) -> dict[str, str]:
    """Copy a run's figures next to the report; return name -> relative path."""
    copied = {}
    for name, filename in record.get("figures", {}).items():
        source = runs_dir / run_name / filename
        if source.is_file():
            target = figures_dir / run_name / filename
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            copied[name] = target.relative_to(report_dir).as_posix()
    return copied


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


def _run_section(name: str, record: dict, figures: dict[str, str]) -> list[str]:
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
    final = {k: v for k, v in record.get("final", {}).items() if k != "table"}
    if final:
        lines += ["Measured:", ""] + markdown_table(sorted(final.items()), ("metric", "value")) + [""]
    if "table" in record.get("final", {}):
        lines += record["final"]["table"].strip().splitlines() + [""]
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
    Existing Discussion text in ``out`` is kept. Returns the report's path.
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else settings.runs_root()
    out = Path(out) if out is not None else runs_dir.parent / "REPORT.md"
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"no runs folder at {runs_dir}: run the notebooks or `python -m labkit train` first")
    runs = load_runs(runs_dir)
    discussions = read_discussions(out)
    figures_dir = out.parent / (out.stem + FIGURES_DIR_SUFFIX)
    if figures_dir.is_dir():
        shutil.rmtree(figures_dir)  # only what the current runs produced
    lines = [
        "# Lab report: deep generative models",
        "",
        f"Built by `python -m labkit report` on {time.strftime('%Y-%m-%d %H:%M')} from {len(runs)} runs. "
        "Every number and figure below comes from those runs; edit only the Discussion sections "
        "(between their markers): they are kept when the report is rebuilt.",
        "",
    ]
    lines += _environment_section(runs)
    for part in PARTS:
        lines += [f"## {part.title}", ""]
        present = [name for name in part.runs if name in runs]
        extra = sorted(n for n in runs if n not in part.runs and any(n.startswith(r + "-") for r in part.runs))
        for name in present + extra:
            figures = _copy_figures(name, runs[name], runs_dir, figures_dir, out.parent)
            lines += _run_section(name, runs[name], figures)
        if part.key == "gan" and (benchmark := find_gan_variants(runs_dir)) is not None:
            root = settings.project_root()
            shown = benchmark.relative_to(root) if root and benchmark.is_relative_to(root) else benchmark.name
            lines += gan_variants_section(json.loads(benchmark.read_text()), str(shown))
        if not present and not extra:
            lines += [f"_No run yet: {', '.join(part.runs)}._", ""]
        start, end = _discussion_markers(part.key)
        lines += ["### Discussion", "", "Guiding questions:", ""]
        lines += [f"- {q}" for q in part.questions]
        lines += ["", start, discussions.get(part.key) or PLACEHOLDER, end, ""]
    lines += _checklist(runs, discussions)
    out.write_text("\n".join(lines))
    return out
