"""Grading a class: ``grade`` (what ``python -m labkit grade`` runs), one student's row
(``grade_student``), the instructor's reference runs, and the checks that need labkit's own formats:
the numbers no honest run produces (``plausibility_flags``, by the gradebook's rule for a number), the
``Evaluator`` that runs a run's submitted weights again (rebuilt from the registry of recipes), and
Discussions nearly the same as another student's.

These sit together because each needs the submission format (``labkit.submit``), the gradebook or the
registry of recipes, which lie one floor below the instructors' tools: a grade module that uses them can
only be imported by the command line, which would otherwise rise to a ninth floor (``tests/test_house.py``
allows eight). The other modules of ``labkit.grade`` need nothing above the report and the metrics, so
this one imports them.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import tempfile
from dataclasses import fields
from pathlib import Path

import torch

from .. import experiments
from ..engine.checkpoint import ADDED_SETTINGS, refusal_reason
from ..gradebook import Student, class_report, number_problem, write_gradebook
from ..report.discussions import read_discussions
from ..report.parts import PARTS, PLACEHOLDER
from ..report.tables import format_value
from ..report.tables import load_runs as load_runs_folder
from ..submit import MANIFEST, WEIGHTS_FILE, WEIGHTS_FORMAT, Refused, check_manifest, load_runs, open_submission
from .drawn import judge_drawn
from .flags import check_course, report_flags, settings_flags
from .out_folder import CACHE, UNPACKED, check_out, record_unpacked, unpacked_earlier

TOLERANCE = {"test_mse": 0.02, "test_neg_elbo_nats": 0.02, "fid_classifier": 0.15, "conditional_accuracy": 0.05}
# the models whose weights the grader runs again (``labkit.engine.family.Recipe.graded_again``)
REEVALUATED = tuple(name for name, recipe in experiments.RECIPES.items() if recipe.graded_again)
SIMILARITY = 0.8  # cosine similarity of two Discussions (TF-IDF) that is flagged
# The numbers of a run's "final" that the grader compares or lists: each must be a finite number.
GRADED_NUMBERS = set(TOLERANCE) | {metric for _, metric in experiments.gradebook_metrics()}
GRADED_SUFFIXES = ("test_mse", "test_neg_elbo_nats", "fid_classifier", "class_coverage", "conditional_accuracy")


# --------------------------------------------------------------------------- the numbers no honest run produces


def _is_number(value) -> bool:
    return number_problem(value) is None


def _graded_number(key: str) -> bool:
    return key in GRADED_NUMBERS or key.endswith(GRADED_SUFFIXES) or re.fullmatch(r".+_iwae_k\d+_nats", key) is not None


def _data_key(record: dict) -> tuple:
    d = record.get("dataset", {})
    values = (d.get(key) for key in ("name", "source", "n_train", "n_test"))
    # a key of the floors dict: whatever JSON a submission put there, as a hashable value
    return (
        *(v if isinstance(v, (str, int, float, type(None))) else json.dumps(v) for v in values),
        bool(record.get("smoke")),
    )


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
                    f"{name}: {key} = {format_value(value)} is below the real-data floor "
                    f"{format_value(floor)} (real training digits against real test digits)"
                )
        for key, iwae in final.items():  # notebook 04's <model>_iwae_k<k>_nats beside <model>_test_neg_elbo_nats
            found = re.fullmatch(r"(.+)_iwae_k\d+_nats", key)
            elbo = final.get(f"{found[1]}_test_neg_elbo_nats") if found else None
            if _is_number(iwae) and _is_number(elbo) and elbo < iwae - 1e-6:
                flags.append(
                    f"{name}: the -ELBO {format_value(elbo)} is below the importance-weighted bound "
                    f"{format_value(iwae)}, which it can never be"
                )
    return flags


# --------------------------------------------------------------------------- re-evaluating the weights


class Evaluator:
    """The instructor's copy of the test data, loaded once per dataset size, and the re-evaluation
    of a run's submitted weights on it."""

    def __init__(self, device: str = "cpu"):
        self.device = torch.device(device)
        self._data: dict[bool, object] = {}
        self._floor: dict[bool, float] = {}

    def data(self, smoke: bool):
        from ..data import load_mnist

        if smoke not in self._data:
            self._data[smoke] = load_mnist(self.device, smoke=smoke, verbose=False)
        return self._data[smoke]

    def floor(self, smoke: bool) -> float:
        """Classifier Fréchet distance of real training digits to the test digits: no model does better."""
        from .. import metrics

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
        model = record.get("model")
        if model not in REEVALUATED or not weights_path.is_file():
            return [], None
        if not self.matches(record):
            return [], None
        try:
            saved = torch.load(weights_path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - an unsafe or damaged file is the student's problem, reported
            # PyTorch's refusal of a pickle mostly says how to load it anyway: keep the sentence naming what it wants
            reason = refusal_reason(str(e)) if isinstance(e, pickle.UnpicklingError) else str(e).splitlines()[0][:160]
            return [
                f"{name}: {WEIGHTS_FILE} refused ({type(e).__name__}: {reason}); labkit only loads plain weights, "
                "and nothing in this file was run"
            ], None
        if not isinstance(saved, dict) or saved.get("format") != WEIGHTS_FORMAT:
            return [f"{name}: {WEIGHTS_FILE} is not a labkit submission checkpoint"], None
        recipe = experiments.RECIPES[model]
        known = {f.name for f in fields(recipe.settings)}
        hyper = {  # a run from before a setting existed trained with the value that trains as it did then
            **{k: v for k, v in ADDED_SETTINGS.items() if k in known},
            **{k: (tuple(v) if isinstance(v, list) else v) for k, v in record.get("hyperparameters", {}).items()},
        }
        hyper = {k: v for k, v in hyper.items() if k in known}
        try:
            cfg = experiments.settings_for(model, **hyper)
            training = cfg.fresh_training(self.device)
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
        if recipe.drawn:  # the GANs and the diffusion models
            again, coverage = judge_drawn(training, data, bool(record.get("smoke")), cfg.seed)
            claimed = final.get("class_coverage")  # weights that cover other digits cannot be the run's
            if not (_is_number(claimed) and abs(coverage - claimed) <= 1):
                return [f"{name}: its weights cover {coverage} digits, its metrics.json says {claimed}"], None
        else:
            again = recipe.remeasure(training, data, cfg)
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
                    f"{name}: its weights give {key} = {format_value(value)} on the test split, its "
                    f"metrics.json says {format_value(claimed)[:80]} (beyond {TOLERANCE[key]:.0%}: not "
                    "the weights that made these numbers)"
                )
        return flags, None if flags else f"{name} {', '.join(again)}"


# --------------------------------------------------------------------------- the class


def grade_student(path: Path, work: Path, evaluator: Evaluator, course: dict) -> Student:
    """One student's row: every check of ``labkit.grade`` on the submission at ``path`` (unpacked under
    ``work``). A submission that cannot be read is refused with the reason; nothing it holds stops the class."""
    student = Student(path.stem if path.is_file() else path.name)
    try:
        student.folder = open_submission(path, work)
        student.flags += check_manifest(student.folder)
        student.runs = load_runs(student.folder)
        if not student.runs:
            raise Refused("no runs/*/metrics.json in the submission")
        student.discussions = read_discussions(student.folder / "REPORT.md")
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
    for part in PARTS:
        texts = {s.name: s.discussions.get(part.key, "") for s in graded}
        for s in graded:
            if texts[s.name] in ("", PLACEHOLDER):
                s.flags.append(f"discussion of {part.key} not written")
        written = [s for s in graded if texts[s.name] not in ("", PLACEHOLDER)]
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
    from .. import metrics
    from ..engine.environment import check_device

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
    book, rows = write_gradebook(students, out, experiments.gradebook_metrics())
    return book, class_report(students, rows, out, reference_record, experiments.gradebook_metrics())


def reference_runs(reference: Path | None, out: Path) -> dict[str, dict]:
    """The instructor's own runs: a runs folder (``*/metrics.json``) or a submission (archive or folder,
    unpacked into a temporary folder of ``out`` that is removed again). ``ValueError`` when it cannot be read."""
    if reference is None:
        return {}
    try:
        if reference.is_dir() and not (reference / MANIFEST).is_file():
            runs = load_runs_folder(reference)
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
