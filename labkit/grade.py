"""``python -m labkit grade SUBMISSIONS_DIR --out DIR``: grade a whole class from their submissions.

Every archive (or unpacked folder) in SUBMISSIONS_DIR is one student, named by the file. The grader
unpacks each safely, checks its manifest, compares REPORT.md with the metrics.json files it was built
from, re-evaluates the submitted weights on the instructor's copy of the test split, looks for
impossible values, smoke runs, other settings and copied discussions, and writes ``gradebook.csv``
(one row per student, ``flags`` empty when nothing is wrong) and ``class_report.md`` with figures.
Submissions are untrusted: nothing in them is executed, checkpoints are read with
``weights_only=True``, and nothing is written outside ``DIR`` but the test data itself, fetched into
the data root where it is missing (the digit classifier is kept in ``DIR/.cache``). The grader never
deletes or changes its inputs: an ``--out`` that is, holds or lies inside the submissions or the
reference is refused, and of ``DIR`` it removes only what an earlier grade unpacked there (listed in
``WORK_RECORD``). ``docs/instructors.md`` is the guide.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import tempfile
from dataclasses import fields
from pathlib import Path

import torch

from . import report
from .engine import files
from .engine.checkpoint import _refusal_reason
from .gradebook import MAIN_METRICS, Student, class_report, number_problem, write_gradebook
from .models import classes_in_turn
from .submit import MANIFEST, WEIGHTS_FILE, WEIGHTS_FORMAT, Refused, check_manifest, load_runs, open_submission

TOLERANCE = {"test_mse": 0.02, "test_neg_elbo_nats": 0.02, "fid_classifier": 0.15, "conditional_accuracy": 0.05}
REEVALUATED = ("ae", "vae", "cvae", "vqvae", "gan", "cgan", "diffusion")  # models whose weights the grader runs again
SAMPLES_JUDGED = (1000, 256)  # images a run that draws is judged on (full, smoke), as many as its recipe judged
SIMILARITY = 0.8  # cosine similarity of two Discussions (TF-IDF) that is flagged
UNPACKED = "submissions"  # the folder of --out the archives are unpacked into, one folder per student
WORK_RECORD = ".labkit-grade-unpacked.json"  # in UNPACKED: every file and folder the grader unpacked there
CACHE = ".cache"  # the folder of --out that keeps the digit classifier the grader trains
# The numbers of a run's "final" that the grader compares or lists: each must be a finite number.
GRADED_NUMBERS = set(TOLERANCE) | {metric for _, metric in MAIN_METRICS}
GRADED_SUFFIXES = ("test_mse", "test_neg_elbo_nats", "fid_classifier", "class_coverage", "conditional_accuracy")


# --------------------------------------------------------------------------- the checks


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
                    f"{_shown(report.table_cell(final[metric]))} (edited by hand?)"
                )
    return flags


def _shows(written: str, value) -> bool:
    """Whether a number written in REPORT.md is ``value``: as the report writes it, or the same number written
    another way ("232.0" where the report writes 232)."""
    shown = report.table_cell(value)
    if written == shown:
        return True
    try:
        return math.isfinite(float(written)) and float(written) == float(shown)
    except ValueError:
        return False


def _shown(text: str, limit: int = 60) -> str:
    """A value from a submission as a flag quotes it: whole up to ``limit`` characters, then cut with "..."."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value) -> bool:
    return number_problem(value) is None


def _graded_number(key: str) -> bool:
    return key in GRADED_NUMBERS or key.endswith(GRADED_SUFFIXES) or re.match(r"vae_iwae_k\d+_nats", key) is not None


def plausibility_flags(runs: dict[str, dict], floors: dict) -> list[str]:
    """Values that no honest run produces: a number the grader reads that is not a finite number
    (text, true/false, NaN, infinity, absurdly large), and numbers that contradict each other."""
    flags = []
    for name, r in runs.items():
        final, history = r.get("final", {}), r.get("history", [])
        for key, value in final.items():
            problem = number_problem(value)
            if problem is None or (key == "inception_fid" and isinstance(value, float) and not math.isfinite(value)):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                flags.append(f"{name}: {key} is {value}")
            elif _graded_number(key) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
                flags.append(f"{name}: {key} = {json.dumps(value)[:80]} {problem}")
        if isinstance(r.get("epochs"), int) and len(history) != r["epochs"]:
            flags.append(f"{name}: metrics.json says {r['epochs']} epochs but its history holds {len(history)}")
        settings_epochs = r.get("hyperparameters", {}).get("epochs")
        if isinstance(settings_epochs, int) and isinstance(r.get("epochs"), int) and r["epochs"] < settings_epochs:
            flags.append(f"{name}: trained {r['epochs']} of the {settings_epochs} epochs its settings say")
        for key, value in final.items():
            if not _is_number(value):
                continue
            if key.endswith("class_coverage") and not 0 <= value <= 10:
                flags.append(f"{name}: {key} = {value}, but there are 10 digits")
            if key.endswith("test_mse") and value < 0:
                flags.append(f"{name}: {key} = {value} is negative")
            floor = floors.get(_data_key(r))
            if (
                key.endswith("fid_classifier")
                and not key.startswith("real")
                and floor is not None
                and value < 0.8 * floor
            ):
                flags.append(
                    f"{name}: {key} = {report.format_value(value)} is below the real-data floor "
                    f"{report.format_value(floor)} (real training digits against real test digits)"
                )
        iwae = [v for k, v in final.items() if re.match(r"vae_iwae_k\d+_nats", k) and _is_number(v)]
        elbo = final.get("vae_test_neg_elbo_nats")
        if iwae and _is_number(elbo) and elbo < iwae[0] - 1e-6:
            flags.append(
                f"{name}: the -ELBO {report.format_value(final['vae_test_neg_elbo_nats'])} is below the "
                f"importance-weighted bound {report.format_value(iwae[0])}, which it can never be"
            )
    return flags


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


# --------------------------------------------------------------------------- re-evaluating the weights


def _data_key(record: dict) -> tuple:
    d = record.get("dataset", {})
    values = (d.get(key) for key in ("name", "source", "n_train", "n_test"))
    # a key of the floors dict: whatever JSON a submission put there, as a hashable value
    return (
        *(v if isinstance(v, (str, int, float, type(None))) else json.dumps(v) for v in values),
        bool(record.get("smoke")),
    )


class Evaluator:
    """The instructor's copy of the test data, loaded once per dataset size, and the re-evaluation
    of a run's submitted weights on it."""

    def __init__(self, device: str = "cpu"):
        self.device = torch.device(device)
        self._data: dict[bool, object] = {}
        self._floor: dict[bool, float] = {}

    def data(self, smoke: bool):
        from .data import load_mnist

        if smoke not in self._data:
            self._data[smoke] = load_mnist(self.device, smoke=smoke, verbose=False)
        return self._data[smoke]

    def floor(self, smoke: bool) -> float:
        """Classifier Fréchet distance of real training digits to the test digits: no model does better."""
        from . import metrics

        if smoke not in self._floor:
            data = self.data(smoke)
            classifier, _ = metrics.digit_classifier(data)
            self._floor[smoke] = metrics.frechet_distance(classifier, data.test_x, data.train_x[: len(data.test_x)])
        return self._floor[smoke]

    def matches(self, record: dict) -> bool:
        data = self.data(bool(record.get("smoke")))
        d = record.get("dataset", {})
        return (d.get("name"), d.get("source"), d.get("n_test")) == (data.name, data.source, data.n_test)

    def reproduce(self, name: str, record: dict, weights_path: Path) -> tuple[list[str], str | None]:
        """(flags, what was verified) for one run; runs of other models or data are not re-evaluated."""
        from . import experiments
        from .engine.loop import evaluate

        model = record.get("model")
        if model not in REEVALUATED or not weights_path.is_file():
            return [], None
        if not self.matches(record):
            return [], None
        try:
            saved = torch.load(weights_path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - an unsafe or damaged file is the student's problem, reported
            # PyTorch's refusal of a pickle mostly says how to load it anyway: keep the sentence naming what it wants
            reason = _refusal_reason(str(e)) if isinstance(e, pickle.UnpicklingError) else str(e).splitlines()[0][:160]
            return [
                f"{name}: {WEIGHTS_FILE} refused ({type(e).__name__}: {reason}); labkit only loads plain weights, "
                "and nothing in this file was run"
            ], None
        if not isinstance(saved, dict) or saved.get("format") != WEIGHTS_FORMAT:
            return [f"{name}: {WEIGHTS_FILE} is not a labkit submission checkpoint"], None
        known = {f.name for f in fields(experiments.RECIPES[model][1])}
        hyper = {
            k: (tuple(v) if isinstance(v, list) else v)
            for k, v in record.get("hyperparameters", {}).items()
            if k in known
        }
        try:
            cfg = experiments.settings_for(model, **hyper)
            if hasattr(cfg, "networks"):  # the GANs: settings that build the networks apart from the training
                training = cfg.training(*(m.to(self.device) for m in cfg.networks()))
            else:
                training = cfg.training(self.device)
            for module_name, module in training.modules.items():
                module.load_state_dict(
                    {k: v.to(module.state_dict()[k].dtype) for k, v in saved["modules"][module_name].items()}
                )
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            return [
                f"{name}: the submitted weights do not fit the settings in its metrics.json "
                f"({type(e).__name__}: {str(e).splitlines()[0][:160]})"
            ], None
        final, data = record.get("final", {}), self.data(bool(record.get("smoke")))
        for module in training.modules.values():
            module.eval()
        if callable(getattr(training, "draw", None)):  # the GANs and the diffusion models
            again, problem = _judge_drawn(training, data, record, cfg.seed)
            if problem:
                return [f"{name}: {problem}"], None
        elif model == "ae":
            again = {"test_mse": evaluate(training, data.test_x)["loss"]}
        elif model == "vqvae":
            again = {"test_mse": evaluate(training, data.test_x)["mse"]}
        else:  # the VAE and the cVAE
            torch.manual_seed(cfg.seed)  # the recipe's test ELBO draws z from this seed
            labels = data.test_y if model == "cvae" else None
            again = {"test_neg_elbo_nats": evaluate(training, data.test_x, labels)["neg_elbo"]}
        flags = []
        for key, value in again.items():
            claimed = final.get(key)
            # written so that NaN on either side is a mismatch: every comparison with NaN is False
            matched = (
                _is_number(claimed)
                and math.isfinite(value)
                and abs(value - claimed) <= TOLERANCE[key] * abs(value) + 1e-9
            )
            if not matched:
                flags.append(
                    f"{name}: its weights give {key} = {report.format_value(value)} on the test split, its "
                    f"metrics.json says {report.format_value(claimed)[:80]} (beyond {TOLERANCE[key]:.0%}: not "
                    "the weights that made these numbers)"
                )
        return flags, None if flags else f"{name} {', '.join(again)}"


def _classes_drawn(training) -> int:
    """How many classes the ``draw`` of a training takes in turn: the ``num_classes`` of its conditional
    network (the cGAN's generator, a conditional diffusion UNet), 0 when it draws without a label."""
    return max((getattr(module, "num_classes", 0) or 0 for module in training.modules.values()), default=0)


def _judge_drawn(training, data, record: dict, seed: int) -> tuple[dict[str, float], str | None]:
    """The numbers of a training that draws (``draw(n, seed=...)``: the GANs, the diffusion models), judged
    again as its recipe judged them: ``SAMPLES_JUDGED`` images drawn with the run's seed (a conditional
    model draws the classes in turn), their classifier Fréchet distance and, when conditional, how often
    the digit classifier reads the class asked for. Returns (the numbers, None), or (``{}``, why the
    weights cannot be those of the run) when they cover another number of digits than it claims."""
    from . import metrics

    n = SAMPLES_JUDGED[1] if record.get("smoke") else SAMPLES_JUDGED[0]
    images = training.draw(n, seed=seed)  # (n, C, H, W) in [0, 1]
    quality = metrics.digit_sample_quality(data, images, seed=seed)
    again = {"fid_classifier": quality["fid_classifier"]}
    classes = _classes_drawn(training)
    if classes:
        classifier, _ = metrics.digit_classifier(data, seed=seed)
        device = next(classifier.parameters()).device
        asked = classes_in_turn(n, classes)  # what draw asks for by default
        accuracy = metrics.conditional_accuracy(images.to(device), asked, classifier)
        again["conditional_accuracy"] = accuracy["conditional_accuracy"]
    claimed = record.get("final", {}).get("class_coverage")
    if not (_is_number(claimed) and abs(quality["class_coverage"] - claimed) <= 1):
        return {}, f"its weights cover {quality['class_coverage']} digits, its metrics.json says {claimed}"
    return again, None


# --------------------------------------------------------------------------- the class


def grade_student(path: Path, work: Path, evaluator: Evaluator, course: dict) -> Student:
    """One student's row: every check of this module on the submission at ``path`` (unpacked under
    ``work``). A submission that cannot be read is refused with the reason; nothing it holds stops the class."""
    student = Student(path.stem if path.is_file() else path.name)
    try:
        student.folder = open_submission(path, work)
        student.flags += check_manifest(student.folder)
        student.runs = load_runs(student.folder)
        if not student.runs:
            raise Refused("no runs/*/metrics.json in the submission")
        student.discussions = report.read_discussions(student.folder / "REPORT.md")
        student.flags += report_flags(student.folder, student.runs)
        floors = {
            _data_key(r): evaluator.floor(bool(r.get("smoke")))
            for r in student.runs.values()
            if r.get("dataset", {}).get("name") == "MNIST" and evaluator.matches(r)
        }
        implausible = {name: plausibility_flags({name: r}, floors) for name, r in student.runs.items()}
        student.flags += [flag for flags in implausible.values() for flag in flags]
        student.flags += settings_flags(student.runs, course)
        for name, record in student.runs.items():
            flags, verified = evaluator.reproduce(name, record, student.folder / "runs" / name / WEIGHTS_FILE)
            student.flags += flags
            if verified and not implausible[name]:  # a run with a flagged number is never listed as verified
                student.verified.append(verified)
    except Refused as e:
        student.refused = str(e)
    except Exception as e:  # noqa: BLE001 - one bad submission never stops the class; the reason is its row
        student.refused = f"could not be graded ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
    return student


def discussion_flags(students: list[Student], threshold: float = SIMILARITY) -> None:
    """Flag empty Discussions, and pairs of students whose Discussion of a part is nearly the same."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    graded = [s for s in students if not s.refused]
    for part in report.PARTS:
        texts = {s.name: s.discussions.get(part.key, "") for s in graded}
        for s in graded:
            if texts[s.name] in ("", report.PLACEHOLDER):
                s.flags.append(f"discussion of {part.key} not written")
        written = [s for s in graded if texts[s.name] not in ("", report.PLACEHOLDER)]
        if len(written) < 2:
            continue
        matrix = TfidfVectorizer().fit_transform([texts[s.name] for s in written])
        similarity = cosine_similarity(matrix)
        for i, a in enumerate(written):
            for j, b in enumerate(written):
                if i != j and similarity[i, j] >= threshold:
                    a.flags.append(
                        f"discussion of {part.key} nearly the same as {b.name}'s (similarity {similarity[i, j]:.2f})"
                    )


def grade(
    submissions: str | Path,
    out: str | Path,
    course: dict | None = None,
    reference: str | Path | None = None,
    similarity: float = SIMILARITY,
    device: str = "cpu",
) -> tuple[Path, Path]:
    """Grade every submission in ``submissions``; write ``out/gradebook.csv`` and ``out/class_report.md``.

    ``course``: the settings the instructor fixed, run -> {setting: value}. ``reference``: a runs
    folder or submission of the instructor's own run, marked on the class figures. The inputs are
    only read: ``ValueError`` (before anything is written) for an ``out`` that is, holds or lies
    inside one of them, for a ``course`` of another shape and for a reference that cannot be read.
    """
    from . import metrics
    from .engine.device import check_device

    submissions, out = Path(submissions), Path(out)
    if not submissions.is_dir():
        raise FileNotFoundError(f"no folder of submissions at {submissions}")
    inputs = {"the submissions folder": submissions}
    if reference is not None:
        reference = Path(reference)
        if not reference.exists():
            raise FileNotFoundError(f"no reference run at {reference}: give a runs folder or a submission")
        inputs["the reference"] = reference
    check_out(out, inputs)
    entries = sorted(p for p in submissions.iterdir() if not p.name.startswith(".") and (p.is_dir() or p.is_file()))
    if not entries:
        raise FileNotFoundError(f"{submissions} holds no submissions (one .zip file or folder per student)")
    course = check_course(course or {})
    evaluator = Evaluator(check_device(device, "--device of labkit grade"))
    work = out / UNPACKED
    earlier = unpacked_earlier(work)  # refuses a folder holding anything the grader did not write, before any change
    made_out = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        reference_record = reference_runs(reference, out)
    except ValueError:
        if made_out:
            out.rmdir()  # a bad reference leaves nothing behind
        raise
    for path in earlier:
        (path.rmdir if path.is_dir() and not path.is_symlink() else path.unlink)()
    work.mkdir(exist_ok=True)
    record_unpacked(work, unpacking=[entry.stem for entry in entries if entry.is_file()])
    students = []
    try:
        with metrics.classifier_cache(out / CACHE):
            for entry in entries:
                print(f"labkit: grading {entry.name}")
                students.append(grade_student(entry, work, evaluator, course))
    finally:
        record_unpacked(work)
    discussion_flags(students, similarity)
    book, rows = write_gradebook(students, out)
    return book, class_report(students, rows, out, reference_record)


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


def check_course(course) -> dict[str, dict]:
    """The course's fixed settings as given (run -> {setting: value}), or ``ValueError`` saying what is wrong."""
    if not isinstance(course, dict) or not all(isinstance(fixed, dict) for fixed in course.values()):
        raise ValueError(
            "the course settings must be a JSON object of runs, each an object of settings, for example "
            '{"ae": {"epochs": 20}, "vae": {"beta": 1.0}}'
        )
    return course


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


def reference_runs(reference: Path | None, out: Path) -> dict[str, dict]:
    """The instructor's own runs: a runs folder (``*/metrics.json``) or a submission (archive or folder,
    unpacked into a temporary folder of ``out`` that is removed again). ``ValueError`` when it cannot be read."""
    if reference is None:
        return {}
    try:
        if reference.is_dir() and not (reference / MANIFEST).is_file():
            runs = report.load_runs(reference)
        else:
            with tempfile.TemporaryDirectory(prefix=".reference-", dir=out) as work:
                runs = load_runs(open_submission(reference, Path(work)))
    except (Refused, ValueError) as e:
        raise ValueError(f"the reference {reference} cannot be read: {e}") from None
    if not runs:
        raise ValueError(
            f"the reference {reference} holds no runs (*/metrics.json, or runs/*/metrics.json in a submission)"
        )
    return runs
