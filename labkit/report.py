"""REPORT.md, the document instructors grade from, built from the runs' metrics.json files.

``python -m labkit report`` (and the last cell of notebook 04) calls ``build_report``. The
student's Discussion sections live between markers and survive every rebuild; nothing else a
student wrote is dropped either. A rebuild refuses, naming the line, when a marker was deleted or
text lies outside the Discussions (text written just under a Discussion's questions is moved inside
its markers instead, and said so), keeps the report it replaces as ``REPORT.md.bak``, removes from
``REPORT_files/`` only the figures it wrote itself (listed in ``REPORT_files/report-manifest.json``),
and writes everything beside the old files first, then swaps them in: a full disk or a failure
leaves the previous report and its figures as they were.
"""

from __future__ import annotations

import difflib
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .engine import files, settings
from .engine.runs import METRICS_FILE, read_record

PLACEHOLDER = "_Write your discussion here._"
FIGURES_DIR_SUFFIX = "_files"
FIGURES_MANIFEST = "report-manifest.json"  # in the figures folder: what the report wrote there, and its own text
FIGURES_FORMAT = "labkit-report-figures"
BACKUP_SUFFIX = ".bak"  # REPORT.md.bak: the report as it was before the last rebuild


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
        "Part 4: AE vs VAE vs GAN vs diffusion (notebook 04)",
        ("compare",),
        (
            "Which model would you choose for compression, for sampling, for sharp images, for cheap samples? "
            "Back it with the table.",
            "Is the Fréchet distance consistent with what you see in the samples? Where does it disagree?",
            "What does a diffusion sample cost against a GAN sample (network evaluations, seconds per 1,000 "
            "samples), and what does it buy in the Fréchet distance, the classes covered and the memorised fraction?",
            "What would you change to make the comparison fairer?",
        ),
    ),
    Part(
        "diffusion",
        "Part 5: Diffusion and flow matching (notebook 05)",
        ("diffusion", "diffusion-eps", "diffusion-cond"),
        (
            "How far is the classifier Fréchet distance of your `diffusion` run above the real-data floor (real "
            "training digits against the test digits: `real_fid_classifier` in Part 4), and how does it compare "
            "with the MNIST GAN's in Part 3? Do the classes covered and the samples tell the same story?",
            "Where does the quality-against-steps curve of notebook 05 flatten, and what does a sample cost there "
            "(`network_evaluations`, `sampling_seconds_per_1000`) against the GAN's single call of G? Which "
            "objective, flow matching with Heun (`diffusion`) or DDPM with DDIM (`diffusion-eps`), reaches a "
            "good Fréchet distance in fewer steps, and what about its sampler explains it?",
            "Samples are drawn from the exponential moving average of the weights. Train once more with "
            "`--ema 0 --out runs/diffusion-ema0` (samples from the last weights) and compare the Fréchet "
            "distance, the classes covered and the progression figures of the two runs: what did the average "
            "change, and would you expect the difference to grow or shrink with more epochs?",
            "What does classifier-free guidance trade? Read the conditional accuracy and the Fréchet distance of "
            "`diffusion-cond` (sampled with its `guidance` w) against the guidance sweep of notebook 05, compare "
            "its conditional accuracy with the conditional GAN's and the cVAE's, and say whether the rows of its "
            "digit grid still vary in style.",
            "Are the samples copies? Compare each run's `memorised_fraction` with the about 0.01 that held-out "
            "test digits score by construction, look at the closest pairs in notebook 05, and say what this "
            "pixel-space check could miss.",
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
    ("diffusion", "diffusion", "final", "fid_classifier", "flow matching classifier Fréchet distance"),
    ("diffusion", "diffusion", "final", "memorised_fraction", "flow matching memorised fraction"),
    ("diffusion", "diffusion", "final", "sampling_seconds_per_1000", "flow matching seconds per 1,000 samples"),
    ("diffusion", "diffusion", "figure", "samples", "flow matching samples"),
    ("diffusion", "diffusion", "figure", "progression", "flow matching fixed-noise progression"),
    ("diffusion", "diffusion", "figure", "trajectory", "flow matching path from noise to digit"),
    ("diffusion", "diffusion-eps", "final", "fid_classifier", "DDPM classifier Fréchet distance"),
    ("diffusion", "diffusion-cond", "final", "conditional_accuracy", "conditional diffusion conditional accuracy"),
    ("diffusion", "diffusion-cond", "figure", "digit_grid", "conditional diffusion samples, one row per digit"),
)


def _discussion_markers(key: str) -> tuple[str, str]:
    return f"<!-- discussion:{key}:start -->", f"<!-- discussion:{key}:end -->"


_MARKER = re.compile(r"<!-- discussion:([^\s:>]+):(start|end) -->")


def figures_folder(report_path: Path) -> Path:
    """Where the figures of the report at ``report_path`` go: ``REPORT_files/`` beside ``REPORT.md``."""
    return report_path.parent / (report_path.stem + FIGURES_DIR_SUFFIX)


def backup_path(report_path: Path) -> Path:
    """Where a rebuild keeps the report it replaces: ``REPORT.md.bak`` beside ``REPORT.md``."""
    return report_path.with_name(report_path.name + BACKUP_SUFFIX)


@dataclass(frozen=True)
class _Body:
    """Where the student's text of one Discussion lies in a report: ``text[start:end]``, between
    the end of its start marker and the beginning of its end marker (on their lines or not)."""

    key: str
    start: int
    end: int


def _title(key: str) -> str:
    return next((f'"{part.title}"' for part in PARTS if part.key == key), f"`{key}`")


def _line_number(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _discussion_bodies(text: str) -> tuple[list[_Body], list[str]]:
    """The Discussion bodies of a report's text, in order, and what is wrong with its markers: a
    marker missing, doubled or out of order, where the end of a student's text cannot be known."""
    bodies, problems, seen = [], [], set()
    opened = None  # (key, offset after its start marker, line)

    def unclosed(key: str, line: int) -> str:
        return (
            f"line {line}: the Discussion of {_title(key)} starts here but its end marker "
            f"{_discussion_markers(key)[1]} is missing: put it back on a line of its own after your text"
        )

    for match in _MARKER.finditer(text):
        key, kind = match.groups()
        line = _line_number(text, match.start())
        if kind == "start":
            if opened:
                problems.append(unclosed(opened[0], opened[2]))
            if key in seen:
                problems.append(
                    f"line {line}: a second Discussion of {_title(key)} starts here: keep one pair of its "
                    "markers, with all your text for it between them"
                )
            seen.add(key)
            opened = (key, match.end(), line)
        elif opened and opened[0] == key:
            bodies.append(_Body(key, opened[1], match.start()))
            opened = None
        else:
            if opened:
                problems.append(unclosed(opened[0], opened[2]))
                opened = None
            problems.append(
                f"line {line}: the end marker of the Discussion of {_title(key)} has no start marker "
                f"{_discussion_markers(key)[0]} before it: put that back on a line of its own before your text"
            )
    if opened:
        problems.append(unclosed(opened[0], opened[2]))
    return bodies, problems


def read_discussions(report_path: Path) -> dict[str, str]:
    """The student's text of each Discussion section of an existing report (empty if none). A
    Discussion whose markers are missing or out of order is left out here; ``build_report``
    refuses to rebuild over such a report, naming the line."""
    if not report_path.is_file():
        return {}
    text = report_path.read_text(encoding="utf-8", errors="replace")
    found = {}
    bodies, _ = _discussion_bodies(text)
    keys = {part.key for part in PARTS}
    for body in bodies:
        if body.key in keys:
            found.setdefault(body.key, text[body.start : body.end].strip())
    return found


# --------------------------------------------------------------------------- what a rebuild must keep


def _words(line: str) -> str:
    """A line as compared with the report's own text: spaces do not count (an editor may realign a table)."""
    return " ".join(line.split())


def _outside_lines(text: str, bodies: list[_Body]) -> tuple[list[tuple[int, str]], list[int]]:
    """The lines of a report outside its Discussion bodies, each with its line number, and the index
    of each body's start-marker line among them (its end-marker line follows): with every body
    taken out, a report the student wrote only inside the markers reads as the report's own text."""
    lines, starts, position = [], [], 0
    for body in bodies + [None]:
        stop = body.start if body else len(text)
        first = _line_number(text, position)
        lines += [(first + i, line) for i, line in enumerate(text[position:stop].split("\n"))]
        if body:
            starts.append(len(lines) - 1)
            position = body.end
    return lines, starts


def _figure_name(rel: str) -> bool:
    """Whether ``rel`` has the shape of a figure the report writes: ``<run>/<file>``, nothing else."""
    parts = PurePosixPath(rel).parts
    return len(parts) == 2 and "\\" not in rel and not any(p in ("", ".", "..") for p in parts)


@dataclass
class _Previous:
    """The report a rebuild replaces: its bytes (kept as ``REPORT.md.bak``), the student's text of
    each Discussion (with any text moved inside its markers), the figures its own lines link to,
    and the notes to print about text that was moved."""

    raw: bytes
    discussions: dict[str, str] = field(default_factory=dict)
    linked: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def _refusal(out: Path, problems: list[str], advice: str, why: str = "nothing written in it is lost") -> ValueError:
    shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
    return ValueError(
        f"{out} was not rebuilt, so that {why} (nothing was changed):\n"
        + "\n".join(f"  {out.name} {p}" if p.startswith("line") else f"  {p}" for p in shown)
        + f"\n{advice}"
    )


def _read_previous(out: Path, manifest: dict, figures_name: str) -> _Previous | None:
    """Read the report at ``out`` before a rebuild replaces it; ``ValueError`` naming each line whose
    text the rebuild would drop.

    The report's own text is known from the figures folder's manifest, which keeps the lines it
    wrote outside the Discussions: any other line there is the student's. Without a manifest (a
    report built by an older labkit), only the lines under each "### Discussion" are checked."""
    if not out.is_file():
        return None
    raw = out.read_bytes()
    try:
        text = raw.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{out} is not UTF-8 text ({e}): save it as UTF-8 and build the report again, or choose another "
            "--out; nothing was changed"
        ) from None
    previous = _Previous(raw)
    if not text.strip():
        return previous
    bodies, problems = _discussion_bodies(text)
    if not bodies and not problems:
        raise ValueError(
            f"{out} exists and is not a report that `labkit report` built (it has none of the Discussion markers "
            f"such as {_discussion_markers(PARTS[0].key)[0]}): a rebuild would replace it. Choose another --out, "
            "or move it away; nothing was changed"
        )
    outside, starts = _outside_lines(text, bodies)
    marked = {match.group(1) for match in _MARKER.finditer(text)}
    for part in PARTS:
        start, end = _discussion_markers(part.key)
        heading = next((i for i, (_, line) in enumerate(outside) if _words(line) == _words(f"## {part.title}")), None)
        if part.key not in marked and heading is not None:
            below = next((i for i in range(heading + 1, len(outside)) if outside[i][1].startswith("## ")), len(outside))
            where = next((i for i in range(heading, below) if _words(outside[i][1]) == "### Discussion"), heading)
            problems.append(
                f"line {outside[where][0]}: the markers of the Discussion of {_title(part.key)} are missing: put "
                f'{start} and {end} back, each on a line of its own, around your text under its "### Discussion"'
            )
    keys = {part.key for part in PARTS}
    for body in bodies:
        written = text[body.start : body.end].strip()
        if body.key not in keys and written not in ("", PLACEHOLDER):
            problems.append(
                f"line {_line_number(text, body.start)}: the Discussion {_title(body.key)} is not one of this "
                "report's: move its text into one of the Discussions"
            )
    if problems:
        raise _refusal(out, problems, "Fix the markers, then build the report again.")

    foreign = _foreign_lines(outside, starts, bodies, manifest)
    kept = {}  # body index -> [the student's text above its start marker, and below its end marker]
    moved = set()
    for k, body in enumerate(bodies):
        if body.key not in keys:  # no Discussion to move it into: refused below, with the line
            continue
        before, after = _discussion_region(outside, starts[k])
        pieces = []
        for region in (before, after):
            chosen = [i for i in region if i in foreign]
            moved.update(chosen)
            pieces.append(
                "\n".join(foreign.get(i, outside[i][1]) for i in range(chosen[0], chosen[-1] + 1)).strip()
                if chosen
                else ""
            )
            if chosen:
                previous.notes.append(
                    f"{out.name} {_lines(outside[chosen[0]][0], outside[chosen[-1]][0])}: text written under the "
                    f"Discussion of {_title(body.key)} but outside its markers is now inside them (check that it "
                    f"reads as you meant; the report before this rebuild is {backup_path(out).name})"
                )
        kept[k] = pieces
    stray = [i for i in sorted(foreign) if i not in moved]
    if stray:
        raise _refusal(
            out,
            [f"line {outside[i][0]} (in {_section(outside, i)}): {foreign[i][:70]!r}" for i in stray],
            "These lines are not text the report wrote, and lie outside the Discussion markers: a rebuild would "
            "drop them. Move each between the markers of a Discussion (or delete it), then build the report again.",
        )
    for k, body in enumerate(bodies):
        if body.key not in keys:
            continue
        written = text[body.start : body.end].strip()
        pieces = [kept[k][0], "" if written == PLACEHOLDER else written, kept[k][1]]
        previous.discussions.setdefault(body.key, "\n\n".join(p for p in pieces if p))
    for i, (_, line) in enumerate(outside):
        link = re.fullmatch(r"!\[[^\]]*\]\((.+)\)", line.strip())
        if i not in foreign and link and link.group(1).startswith(f"{figures_name}/"):
            rel = link.group(1)[len(figures_name) + 1 :]
            if _figure_name(rel):
                previous.linked.add(rel)
    return previous


def _foreign_lines(outside: list[tuple[int, str]], starts: list[int], bodies: list[_Body], manifest: dict) -> dict:
    """Index (among ``outside``) -> text, of each line outside the Discussions that the report did
    not write; on a marker's line, the text beside the marker."""
    foreign = {}
    present = {_words(line) for _, line in outside}
    generated = manifest.get("generated") if _words(manifest.get("built", "\0")) in present else None
    if generated is not None:  # the manifest belongs to this report: every line it did not write is foreign
        ours = [_words(line) for line in generated]
        theirs = [_words(line) for _, line in outside]
        matcher = difflib.SequenceMatcher(None, ours, theirs, autojunk=False)
        for tag, _, _, j1, j2 in matcher.get_opcodes():
            if tag in ("insert", "replace"):
                foreign.update({j: outside[j][1] for j in range(j1, j2) if theirs[j]})
    else:  # only the lines under each "### Discussion" are known
        for k, s in enumerate(starts):
            questions = next((part.questions for part in PARTS if part.key == bodies[k].key), ())
            allowed = {"", "### Discussion", "Guiding questions:"} | {_words(f"- {q}") for q in questions}
            before, after = _discussion_region(outside, s)
            for i in before[:-1]:
                if _words(outside[i][1]) not in allowed:
                    foreign[i] = outside[i][1]
            for i in after[1:]:
                if _words(outside[i][1]):
                    foreign[i] = outside[i][1]
    for k, s in enumerate(starts):  # on a marker's line, only the text beside the marker is the student's
        for i, marker in zip((s, s + 1), _discussion_markers(bodies[k].key)):
            beside = outside[i][1].replace(marker, "", 1).strip()
            if beside:
                foreign[i] = beside
            else:
                foreign.pop(i, None)
    return foreign


def _discussion_region(outside: list[tuple[int, str]], start: int) -> tuple[list[int], list[int]]:
    """The lines (indices among ``outside``) under a Discussion's "### Discussion" heading up to its
    start marker (included), and from its end marker (included) to the next part's "## " heading."""
    i = start - 1
    while i >= 0 and not outside[i][1].startswith(("## ", "### ")):
        i -= 1
    first = i + 1 if i >= 0 and _words(outside[i][1]) == "### Discussion" else start
    j = start + 2
    while j < len(outside) and not outside[j][1].startswith("## "):
        j += 1
    return list(range(first, start + 1)), list(range(start + 1, j))


def _lines(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


def _section(outside: list[tuple[int, str]], index: int) -> str:
    """The "## " heading a line of the report lies under, to name where it is."""
    for _, line in reversed(outside[: index + 1]):
        if line.startswith("## "):
            return f'"{line[3:].strip()}"'
    return "the top of the report"


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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_figures_manifest(figures_dir: Path) -> dict:
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
        and all(_figure_name(rel) and isinstance(digest, str) for rel, digest in figures.items())
        and isinstance(generated, list)
        and all(isinstance(line, str) for line in generated)
        and isinstance(manifest.get("built"), str)
    ):
        return {}
    return manifest


def _destination_problem(out: Path, figures_dir: Path) -> str | None:
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


def _figure_problems(figures_dir: Path, planned: set[str], ours: dict[str, str | None]) -> list[str]:
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
        elif target.exists() and ours[rel] is not None and _sha256(target) != ours[rel]:
            problems[str(target)] = f"{target} was changed after the report wrote it"
    return list(problems.values())


class _Swap:
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


def _write_report(
    out: Path, text: str, figures: dict[str, Path], manifest: dict, previous: _Previous | None, stale: list[str]
) -> None:
    """Write the report, its figures (``<run>/<file>`` -> source), the figures' manifest and the
    backup of ``previous`` in a temporary folder beside ``out``; only then rename them into place,
    each file it replaces moved aside, and the report itself last. A failure at any point puts every
    renamed file back: the report and its figures stay as they were."""
    figures_dir, swap = figures_folder(out), _Swap()
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


def _remove_abandoned_stages(out: Path) -> None:
    """Remove the temporary folders of rebuilds that were killed before they finished (``_write_report``
    stages in ``.<report>.*.new`` beside the report). One that holds ``replaced`` is kept: it has the
    previous versions of files a killed rebuild had already moved aside."""
    for stage in out.parent.glob(f".{glob.escape(out.name)}.*.new"):
        if stage.is_dir() and not stage.is_symlink() and not (stage / "replaced").exists():
            shutil.rmtree(stage, ignore_errors=True)


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
    runs_dir = Path(runs_dir) if runs_dir is not None else settings.runs_root()
    out = Path(out) if out is not None else runs_dir.parent / "REPORT.md"
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"no runs folder at {runs_dir}: run the notebooks or `python -m labkit train` first")
    runs = load_runs(runs_dir)
    figures_dir = figures_folder(out)
    problem = _destination_problem(out, figures_dir)
    if problem:
        raise ValueError(f"{problem}; nothing was changed")
    manifest = _read_figures_manifest(figures_dir)
    previous = _read_previous(out, manifest, figures_dir.name)
    ours = {rel: None for rel in (previous.linked if previous else ())} | manifest.get("figures", {})
    plan = _figure_plan(runs, runs_dir)
    planned = {rel for figures in plan.values() for rel in figures.values()}
    problems = _figure_problems(figures_dir, planned, ours)
    if problems:
        raise _refusal(
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
        and (ours[rel] is None or _sha256(path) == ours[rel])
    ]
    discussions = previous.discussions if previous else {}
    links = {run: {name: f"{figures_dir.name}/{rel}" for name, rel in figures.items()} for run, figures in plan.items()}
    variants = None
    if (benchmark := find_gan_variants(runs_dir)) is not None:
        root = settings.project_root()
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
    _remove_abandoned_stages(out)
    _write_report(out, text, sources, manifest, previous, stale)
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
            lines += _run_section(name, runs[name], links.get(name, {}))
        if part.key == "gan" and variants is not None:
            lines += variants
        if not present and not extra:
            lines += [f"_No run yet: {', '.join(part.runs)}._", ""]
        start, end = _discussion_markers(part.key)
        lines += ["### Discussion", "", "Guiding questions:", ""]
        lines += [f"- {q}" for q in part.questions]
        body = [discussions.get(part.key) or PLACEHOLDER] if bodies else []
        lines += ["", start, *body, end, ""]
    lines += _checklist(runs, discussions)
    return lines
