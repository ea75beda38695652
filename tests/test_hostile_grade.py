"""The grader against hostile-but-realistic use: it never deletes or changes its inputs, one bad
``metrics.json`` is one refused row and never stops the class, no cell of ``gradebook.csv`` is read as a
formula by a spreadsheet, a flagged number is never listed as verified, and nothing is written under
the data root. Small submissions are built here by hand (as ``labkit submit`` packs them); the checks
that re-evaluate weights use one real smoke-mode AE run."""

import csv
import json
import math
import re
import zipfile
from pathlib import Path

import pytest
import torch
from test_grade import _rewrite_member, _set_env  # the honest class's environment switch and archive edit

from labkit import ae, experiments, grade, report, submit
from labkit.__main__ import main

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NUMERIC_COLUMNS = {f"{run}_{metric}" for run, metric in experiments.gradebook_metrics()} | {
    f"words_{p.key}" for p in report.PARTS
}


def _record(**changes) -> dict:
    """The metrics.json of a small honest AE run on data the grader does not re-evaluate."""
    record = {
        "model": "ae",
        "epochs": 1,
        "smoke": False,
        "dataset": {"name": "toy digits", "source": "hand-made", "n_train": 10, "n_test": 10},
        "hyperparameters": {"epochs": 1, "lr": 0.001},
        "history": [{"train_loss": 0.05}],
        "final": {"test_mse": 0.031, "seconds_per_epoch": 2.5},
        "figures": {},
    }
    record.update(changes)
    return record


def _submission(path: Path, runs: dict[str, object], extra: dict[str, bytes] | None = None) -> Path:
    """A submission archive as ``labkit submit`` packs one: REPORT.md, ``runs/<name>/metrics.json``
    (a dict is written as JSON, bytes as they are) and a manifest with every file's SHA-256."""
    members = {"REPORT.md": b"# Report\n"}
    for name, record in runs.items():
        members[f"runs/{name}/metrics.json"] = record if isinstance(record, bytes) else json.dumps(record).encode()
    members.update(extra or {})
    manifest = {
        "format": submit.FORMAT,
        "version": submit.VERSION,
        "files": {n: submit.sha256(d) for n, d in members.items()},
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(submit.MANIFEST, json.dumps(manifest))
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folder``, by relative path."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))
    }


def _rows(book: Path) -> dict[str, dict]:
    with open(book, newline="", encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def _class(folder: Path, names=("alice", "bob")) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        _submission(folder / f"{name}.zip", {"ae": _record()})
    return folder


# --------------------------------------------------------------------------- 1: the inputs are never touched


def test_grading_a_course_folder_into_itself_refuses_and_keeps_every_archive(tmp_path, monkeypatch, capsys):
    """The reproduction: `grade submissions --out .` in a course folder emptied submissions/."""
    course = tmp_path / "course"
    _class(course / "submissions")
    (course / "notes.md").write_text("my notes")
    before = _snapshot(course)
    monkeypatch.chdir(course)
    assert main(["grade", "submissions", "--out", "."]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out . holds the submissions folder (submissions)") and "Traceback" not in err
    assert _snapshot(course) == before


def test_a_reference_submission_is_never_emptied(tmp_path, monkeypatch, capsys):
    course = tmp_path / "course"
    reference = course / "reference"
    reference.mkdir(parents=True)
    with zipfile.ZipFile(_submission(tmp_path / "ref.zip", {"ae": _record()})) as z:
        z.extractall(reference)  # the instructor's own submission, unpacked
    inbox = _class(tmp_path / "inbox")
    before, class_before = _snapshot(course), _snapshot(inbox)
    monkeypatch.chdir(course)
    assert main(["grade", str(inbox), "--reference", "reference", "--out", "."]) == 2
    assert "holds the reference (reference)" in capsys.readouterr().err
    assert _snapshot(course) == before and _snapshot(inbox) == class_before


def test_an_out_inside_the_submissions_is_refused_so_outputs_are_never_graded_as_students(tmp_path):
    inbox = _class(tmp_path / "submissions")
    for _ in range(2):  # a second grade would have found the first one's grades/ among the students
        with pytest.raises(ValueError, match="lies inside the submissions folder"):
            grade.grade(inbox, inbox / "grades")
    assert sorted(p.name for p in inbox.iterdir()) == ["alice.zip", "bob.zip"]


def test_a_folder_merely_named_submissions_in_out_is_never_deleted(tmp_path):
    inbox = _class(tmp_path / "inbox")
    mine = tmp_path / "grades" / "submissions" / "alice"
    mine.mkdir(parents=True)
    (mine / "feedback.md").write_text("Alice: good work on the VAE.")
    with pytest.raises(ValueError, match="holds alice/feedback.md.*did not unpack there"):
        grade.grade(inbox, tmp_path / "grades")
    assert (mine / "feedback.md").read_text() == "Alice: good work on the VAE."
    assert not (tmp_path / "grades" / "gradebook.csv").exists()


def test_a_second_grade_removes_only_what_the_first_unpacked(tmp_path):
    inbox = _class(tmp_path / "inbox")
    out = tmp_path / "grades"
    grade.grade(inbox, out)
    assert (out / "submissions" / "bob" / "runs" / "ae" / "metrics.json").is_file()
    (inbox / "bob.zip").unlink()  # bob withdrew: his unpacked copy goes with the next grade
    book, _ = grade.grade(inbox, out)
    assert sorted(p.name for p in (out / "submissions").iterdir() if not p.name.startswith(".")) == ["alice"]
    assert list(_rows(book)) == ["alice"]
    (out / "submissions" / "alice" / "feedback.md").write_text("read her discussion twice")
    with pytest.raises(ValueError, match="alice/feedback.md, which labkit grade did not unpack there"):
        grade.grade(inbox, out)
    assert (out / "submissions" / "alice" / "feedback.md").read_text() == "read her discussion twice"


def test_a_reference_or_course_file_that_cannot_be_read_is_a_clear_error_and_nothing_is_written(tmp_path, capsys):
    inbox = _class(tmp_path / "inbox")
    reference = tmp_path / "reference-runs"
    (reference / "ae").mkdir(parents=True)
    (reference / "ae" / "metrics.json").write_text("[1, 2, 3]")
    (tmp_path / "not-a-zip.zip").write_bytes(b"PK but not really")
    (tmp_path / "course.json").write_text('["ae", "vae"]')
    for extra, says in (
        (["--reference", str(reference)], "is not a labkit run's metrics.json: it holds a list"),
        (["--reference", str(tmp_path / "not-a-zip.zip")], "cannot be read: not a zip archive"),
        (["--course", str(tmp_path / "course.json")], "the course settings must be a JSON object of runs"),
    ):
        assert main(["grade", str(inbox), "--out", str(tmp_path / "grades"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and says in err and "Traceback" not in err
        assert not (tmp_path / "grades").exists()


@pytest.mark.parametrize(
    "device, says",
    [
        ("tpu", "is not a device name"),
        pytest.param(
            "cuda",
            "no CUDA GPU is visible",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU"),
        ),
    ],
)
def test_a_device_that_is_not_here_is_refused_before_anything_is_written(tmp_path, capsys, device, says):
    inbox = _class(tmp_path / "inbox")
    assert main(["grade", str(inbox), "--out", str(tmp_path / "grades"), "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and "Traceback" not in err
    assert not (tmp_path / "grades").exists()


# --------------------------------------------------------------------------- 5: one bad file, one refused row


def test_every_bad_shape_of_metrics_json_is_that_students_refused_row(tmp_path):
    inbox = _class(tmp_path / "inbox", names=("alice", "zoe"))
    bad = {
        "list": b"[1, 2, 3]",
        "final_text": _record(final="fast"),
        "history_object": _record(history={"1": 0.5}),
        "figures_list": _record(figures=["loss.png"]),
        "figure_outside": _record(figures={"loss": "../../../etc/passwd"}),
        "dataset_list": _record(dataset=["MNIST"]),
        "epochs_list": _record(epochs=[1, 2]),
        "not_json": b"\xff\xfe not json",
    }
    for name, record in bad.items():
        _submission(inbox / f"{name}.zip", {"ae": record})
    _submission(inbox / "odd_manifest.zip", {"ae": _record()})
    _rewrite_member(inbox / "odd_manifest.zip", submit.MANIFEST, b'["not", "a", "manifest"]', fix_manifest=False)
    book, class_report = grade.grade(inbox, tmp_path / "grades")
    rows = _rows(book)
    assert set(rows) == {"alice", "zoe", "odd_manifest", *bad}
    for name in ("alice", "zoe"):
        assert rows[name]["status"] == "graded" and rows[name]["ae_test_mse"] == "0.031"
    for name in bad:
        status = rows[name]["status"]
        assert status.startswith("refused: runs/ae/metrics.json "), (name, status)
    assert "it holds a list" in rows["list"]["status"]
    assert '"final" is "fast", where an object belongs' in rows["final_text"]["status"]
    assert rows["odd_manifest"]["status"] == "graded"
    assert "manifest.json is not a labkit-submission manifest" in rows["odd_manifest"]["flags"]
    text = class_report.read_text()
    assert f"{len(rows)} submission(s): 3 graded, {len(bad)} refused" in text


# --------------------------------------------------------------------------- 6: no formula reaches a spreadsheet


def test_no_cell_of_the_gradebook_is_a_formula_and_numbers_are_numbers(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = ['=HYPERLINK("evil.example";"grade")', "+1+1", "-2+3", "@SUM(A1)", "\t=1+2", " =cmd", "x\n=1"]
    for name in names:
        _submission(inbox / f"{name}.zip", {"ae": _record()})
    hostile_final = {"test_mse": '=HYPERLINK("evil.example";"click")', "seconds_per_epoch": 2.0}
    _submission(
        inbox / "mallory.zip",
        {
            "=cmd|' -C calc'!A0": _record(final={"test_mse": float("nan")}),
            "ae": _record(final=hostile_final),
            "gan": _record(model="gan", final={"fid_classifier": 1e308, "class_coverage": True}),
            "vae": _record(model="vae", final={"test_neg_elbo_nats": "@SUM(1)", "test_kl_nats": 3.5}),
        },
    )
    book, _ = grade.grade(inbox, tmp_path / "grades")
    with open(book, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    assert len(rows) == len(names) + 1
    for row in rows:
        for column, cell in zip(header, row):
            assert not set(cell) & {"\n", "\r", "\t"}, (column, cell)
            if column in NUMERIC_COLUMNS:
                assert cell == "" or math.isfinite(float(cell)), (column, cell)
            else:
                assert not cell.lstrip().startswith(FORMULA_STARTS), (column, cell)
    by_name = {row[0]: dict(zip(header, row)) for row in rows}
    assert "'" + names[0] in by_name and "'+1+1" in by_name and "'-2+3" in by_name and "'@SUM(A1)" in by_name
    mallory = by_name["mallory"]
    assert mallory["ae_test_mse"] == "" and mallory["gan_fid_classifier"] == "" and mallory["gan_class_coverage"] == ""
    assert mallory["vae_test_neg_elbo_nats"] == "" and mallory["vae_test_kl_nats"] == "3.5"
    assert mallory["flags"].startswith("'=cmd|' -C calc'!A0: test_mse is nan")
    assert 'ae: test_mse = "=HYPERLINK(\\"evil.example\\";\\"click\\")" is not a number' in mallory["flags"]
    assert "gan: fid_classifier = 1e+308 is absurdly large" in mallory["flags"]
    assert "gan: class_coverage = true is not a number" in mallory["flags"]
    assert by_name["'+1+1"]["ae_test_mse"] == "0.031" and by_name["'+1+1"]["status"] == "graded"


def test_names_and_flags_from_submissions_are_plain_text_in_the_class_report(tmp_path):
    """A file name or a quoted metrics.json value that is Markdown or HTML (a tag, a link, an image that
    loads from elsewhere) reaches the instructor's class report escaped: shown as written, never rendered."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    tag, link = "<img src=x onerror=alert(1)>", "[grades](javascript:alert(1))"
    _submission(inbox / f"{tag}.zip", {"ae": _record(final={"test_mse": float("nan")})})  # flagged
    _submission(inbox / f"{link}.zip", {"ae": _record(final="![t](https://tracker.example/p.png)")})  # refused
    _, class_report = grade.grade(inbox, tmp_path / "grades")
    listed = [line[len("- **") :] for line in class_report.read_text().splitlines() if line.startswith("- **")]
    assert len(listed) == 2, listed
    for line in listed:
        name, says = line.split("**: ", 1)
        for text in (name, says):
            assert not re.search(r"(?<!\\)[<>\[\]()!`*_]", text), text  # every markup character escaped
    shown = [re.sub(r"\\(.)", r"\1", line) for line in listed]  # what a reader sees
    assert any(line.startswith(f"{tag}**: ") for line in shown), shown
    assert any(line.startswith(f"{link}**: ") and "![t](https://tracker.example/p.png)" in line for line in shown)


# --------------------------------------------------------------------------- 8 and the cache: one real run


@pytest.fixture(scope="module")
def real_class(tmp_path_factory):
    """One real smoke-mode AE run of one epoch packed by ``labkit submit`` as alice's submission, and
    copies whose metrics.json (and manifest) were edited: a NaN, an infinite and a 1e308 number. The
    class is graded with the data root listed before and after."""
    root = tmp_path_factory.mktemp("real")
    data_root = root / "data"
    data_root.mkdir()
    old = _set_env(LABKIT_SMOKE="1", LABKIT_OFFLINE="1", LABKIT_RUNS=str(root / "runs"), LABKIT_DATA=str(data_root))
    try:
        ae.run_ae(ae.AESettings(epochs=1), device="cpu", progress=False)
        report.build_report(root / "runs")
        inbox = root / "inbox"
        inbox.mkdir()
        honest, _ = submit.build_submission(root / "runs", inbox / "alice.zip", allow_smoke=True)
        record = json.loads((root / "runs" / "ae" / "metrics.json").read_text())
        for name, key, value in (
            ("nan", "test_mse", float("nan")),
            ("inf", "test_mse", float("inf")),
            ("huge", "test_bce", 1e308),
        ):
            edited = {**record, "final": {**record["final"], key: value}}
            (inbox / f"{name}.zip").write_bytes(honest.read_bytes())
            _rewrite_member(inbox / f"{name}.zip", "runs/ae/metrics.json", json.dumps(edited).encode())
        data_before = _snapshot(data_root)
        out = root / "grades"
        try:
            grade.grade(inbox, out)
            crash = None
        except Exception as e:  # noqa: BLE001 - a crash is a finding of its own test; the gradebook may be written
            crash = f"{type(e).__name__}: {e}"
        return {
            "rows": _rows(out / "gradebook.csv"),
            "crash": crash,
            "data_before": data_before,
            "data_after": _snapshot(data_root),
            "out": out,
        }
    finally:
        _set_env(**old)


def test_nan_and_infinite_numbers_do_not_stop_the_class_report(real_class):
    assert real_class["crash"] is None
    text = (real_class["out"] / "class_report.md").read_text()
    assert "4 submission(s): 4 graded, 0 refused, 4 graded with flags" in text
    assert "2 student(s)" in text.split("## ae: test_mse")[1].split("##")[0]  # alice and huge: NaN, inf left out


def test_an_honest_run_is_verified(real_class):
    alice = real_class["rows"]["alice"]
    assert alice["status"] == "graded" and alice["verified"] == "ae test_mse", alice
    assert math.isfinite(float(alice["ae_test_mse"]))


@pytest.mark.parametrize("name, flag", [("nan", "test_mse is nan"), ("inf", "test_mse is inf"), ("huge", "absurdly")])
def test_a_flagged_number_is_never_listed_as_verified(real_class, name, flag):
    row = real_class["rows"][name]
    assert row["status"] == "graded" and flag in row["flags"], row["flags"]
    assert row["verified"] == "", row["verified"]
    assert row["ae_test_mse"] == "" if name != "huge" else math.isfinite(float(row["ae_test_mse"]))


def test_grading_writes_nothing_under_the_data_root(real_class):
    assert real_class["data_after"] == real_class["data_before"]
    assert list((real_class["out"] / grade.CACHE).glob("mnist-classifier-*.pt"))  # kept under --out instead
