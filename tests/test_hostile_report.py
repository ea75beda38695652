"""REPORT.md, its figures and the submission archive under hostile-but-realistic use: a full disk in
the middle of a rebuild or a submit, a student's text outside the Discussion markers or a marker
deleted, ``--out`` pointed at someone else's files. Nothing a student wrote is ever lost, and every
refusal is an ``error:`` with exit status 2 that changes nothing."""

import builtins
import errno
import io
import json
import os
import shutil
import stat
import zipfile

import pytest

from labkit import ae, report
from labkit.__main__ import main
from labkit.submit import build_submission

AE_START, AE_END = "<!-- discussion:ae:start -->", "<!-- discussion:ae:end -->"
VAE_START, VAE_END = "<!-- discussion:vae:start -->", "<!-- discussion:vae:end -->"
MANIFEST = "report-manifest.json"  # in REPORT_files/: the figures the report wrote


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    """One real smoke run of the AE (one epoch, offline digits): its metrics.json, figures and checkpoint."""
    runs = tmp_path_factory.mktemp("runs")
    old = {k: os.environ.get(k) for k in ("LABKIT_SMOKE", "LABKIT_OFFLINE")}
    os.environ.update(LABKIT_SMOKE="1", LABKIT_OFFLINE="1")
    try:
        ae.run_ae(ae.AESettings(epochs=1), out=runs / "ae", device="cpu", progress=False)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return runs / "ae"


@pytest.fixture
def course(ae_run, tmp_path):
    """A student's folder: ``runs/ae`` and the REPORT.md built from it, with REPORT_files/."""
    folder = tmp_path / "course"
    shutil.copytree(ae_run, folder / "runs" / "ae")
    assert main(["report", "--runs", str(folder / "runs")]) == 0
    return folder


def snapshot(folder):
    """Every file (with its bytes) and folder under ``folder``, the runs excepted."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
        if p.relative_to(folder).parts[0] != "runs"
    }


def write_in_report(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def add_run(course, name="ae-latent8"):
    """A second run (a copy of the AE under another name: its figures and section join Part 1)."""
    shutil.copytree(course / "runs" / "ae", course / "runs" / name)


class FullDisk:
    """Files opened for writing get ``room`` more bytes in all, then ``OSError(ENOSPC)``, as on a
    disk that fills up: the write that does not fit is cut where the room ends."""

    def __init__(self, monkeypatch, room):
        self.room = room
        real_open = io.open

        def opening(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            return Filling(handle, self) if any(c in mode for c in "wax+") else handle

        monkeypatch.setattr(io, "open", opening)
        monkeypatch.setattr(builtins, "open", opening)
        monkeypatch.setattr(shutil, "_USE_CP_SENDFILE", False)  # copies go through write()


class Filling:
    def __init__(self, handle, disk):
        self._handle, self._disk = handle, disk

    def write(self, data):
        size = len(data.encode()) if isinstance(data, str) else memoryview(data).nbytes
        if size > self._disk.room:
            self._handle.write(data[: self._disk.room])
            self._handle.flush()
            self._disk.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._disk.room -= size
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def fail_once(monkeypatch, module, name, at_call):
    """``module.name`` raises ENOSPC on its ``at_call``-th call (from 0), and works before and after
    (an fsync of a folder, which may fail harmlessly, is not counted)."""
    real, calls = getattr(module, name), []

    def failing(*args, **kwargs):
        if name == "fsync" and not stat.S_ISREG(os.fstat(args[0]).st_mode):
            return real(*args, **kwargs)
        calls.append(args)
        if len(calls) - 1 == at_call:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


# --------------------------------------------------------------------------- 2. written atomically


@pytest.mark.parametrize("room", [0, 3000, 8192, 60_000, 200_000])
def test_a_full_disk_during_a_rebuild_leaves_the_report_and_every_figure_as_they_were(course, monkeypatch, room):
    path = course / "REPORT.md"
    write_in_report(path, report.PLACEHOLDER, "My discussion of the autoencoder.")
    add_run(course)  # the rebuild has a new section and four more figures to write
    before = snapshot(course)
    with monkeypatch.context() as patch:
        FullDisk(patch, room)
        with pytest.raises(OSError, match="No space left on device"):
            report.build_report(course / "runs", path)
    assert snapshot(course) == before  # no REPORT.md cut short, no figure at 0 bytes, no temporary file
    report.build_report(course / "runs", path)
    assert "### Run `ae-latent8`" in path.read_text() and "My discussion of the autoencoder." in path.read_text()


@pytest.mark.parametrize("call", ["replace", "fsync"])
def test_a_failure_at_any_rename_or_fsync_of_a_rebuild_changes_nothing(course, monkeypatch, call):
    path = course / "REPORT.md"
    write_in_report(path, report.PLACEHOLDER, "Kept whatever happens.")
    add_run(course)
    before = snapshot(course)
    failures = 0
    while True:
        with monkeypatch.context() as patch:
            fail_once(patch, os, call, at_call=failures)
            try:
                report.build_report(course / "runs", path)
            except OSError as e:
                assert "was not rebuilt" in str(e) and "as they were" in str(e)
                assert snapshot(course) == before, f"the {call} number {failures} of the rebuild changed files"
                failures += 1
                continue
        break
    assert failures >= 10  # every figure, the manifest, the backup and the report go through one
    assert "### Run `ae-latent8`" in path.read_text()


@pytest.mark.parametrize("room", [0, 5000, 100_000])
def test_a_full_disk_during_submit_leaves_the_earlier_archive_and_no_temporary_file(course, monkeypatch, room):
    archive = course / "submission.zip"
    build_submission(course / "runs", archive, allow_smoke=True)
    write_in_report(course / "REPORT.md", report.PLACEHOLDER, "Added after the first submission.")
    before = snapshot(course)
    with monkeypatch.context() as patch:
        FullDisk(patch, room)
        with pytest.raises(OSError) as raised:
            build_submission(course / "runs", archive, allow_smoke=True)
    assert snapshot(course) == before  # the earlier archive, and no temporary file beside it
    assert "No space left on device" in str(raised.value) and "earlier archive is unchanged" in str(raised.value)


def test_submit_on_a_full_disk_is_an_error_that_writes_nothing(course, monkeypatch, capsys):
    before = snapshot(course)
    with monkeypatch.context() as patch:
        FullDisk(patch, 5000)
        assert main(["submit", "--runs", str(course / "runs"), "--allow-smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "No space left on device" in err and "nothing was written" in err
    assert snapshot(course) == before


# --------------------------------------------------------------------------- 3. a student's words


def test_text_written_under_a_discussion_but_outside_its_markers_is_kept_inside_them(course, capsys):
    path = course / "REPORT.md"
    above = "I wrote my answer right under the questions, above the marker."
    inside = "And this inside the markers, as asked."
    below = "Then a last thought after the end marker of Part 2."
    write_in_report(path, f"{AE_START}\n{report.PLACEHOLDER}", f"{above}\n\n{AE_START}\n{inside}")
    write_in_report(path, VAE_END, f"{VAE_END}\n{below}")
    old = path.read_bytes()
    capsys.readouterr()
    assert main(["report", "--runs", str(course / "runs")]) == 0
    discussions = report.read_discussions(path)
    assert discussions["ae"] == f"{above}\n\n{inside}"
    assert discussions["vae"] == below
    notes = capsys.readouterr().out
    assert 'under the Discussion of "Part 1: Autoencoder (notebook 01)" but outside its markers' in notes
    assert "Part 2" in notes and "REPORT.md.bak" in notes
    assert (course / "REPORT.md.bak").read_bytes() == old  # the report as the student left it


def test_every_rebuild_keeps_the_report_it_replaces_beside_it(course):
    path = course / "REPORT.md"
    write_in_report(path, report.PLACEHOLDER, "First version of my words.")
    first = path.read_bytes()
    report.build_report(course / "runs", path)
    assert (course / "REPORT.md.bak").read_bytes() == first


@pytest.mark.parametrize(
    "damage, named, message",
    [
        (lambda t: t.replace(AE_END, "", 1), AE_START, "its end marker <!-- discussion:ae:end --> is missing"),
        (lambda t: t.replace(AE_START, "", 1), AE_END, "has no start marker <!-- discussion:ae:start --> before it"),
        (lambda t: t.replace(AE_START, "", 1).replace(AE_END, "", 1), "### Discussion", "the markers of the"),
        (lambda t: t.replace(AE_END, VAE_END, 1), AE_START, "its end marker <!-- discussion:ae:end --> is missing"),
    ],
    ids=["end marker deleted", "start marker deleted", "both deleted", "wrong end marker"],
)
def test_a_deleted_marker_refuses_the_rebuild_naming_the_line_and_changes_nothing(
    course, capsys, damage, named, message
):
    path = course / "REPORT.md"
    mine = "My discussion, which a rebuild must not cut.\n\nSecond paragraph."
    write_in_report(path, report.PLACEHOLDER, mine)
    path.write_text(damage(path.read_text()))
    before = snapshot(course)
    lines = path.read_text().splitlines()
    line = lines.index(named, lines.index("## Part 1: Autoencoder (notebook 01)")) + 1
    assert main(["report", "--runs", str(course / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert f"REPORT.md line {line}: " in err and message in err and "Fix the markers" in err
    assert snapshot(course) == before  # no backup either: nothing was rebuilt


def test_text_written_outside_every_discussion_refuses_the_rebuild_naming_section_and_line(course, capsys):
    path = course / "REPORT.md"
    write_in_report(path, "Measured:\n", "Measured:\nMy note on this table: the MSE looks low.\n")
    write_in_report(path, "## Environment\n", "## Environment\nI ran this on my laptop.\n")
    lines = path.read_text().splitlines()
    before = snapshot(course)
    assert main(["report", "--runs", str(course / "runs")]) == 2
    err = capsys.readouterr().err
    note_line = lines.index("My note on this table: the MSE looks low.") + 1
    laptop_line = lines.index("I ran this on my laptop.") + 1
    assert f'line {note_line} (in "Part 1: Autoencoder (notebook 01)"): \'My note on this table' in err
    assert f"line {laptop_line} (in \"Environment\"): 'I ran this on my laptop.'" in err
    assert "Move each between the markers of a Discussion" in err
    assert snapshot(course) == before


def test_an_existing_file_that_is_not_a_report_is_never_replaced(course, capsys):
    thesis = course / "thesis.md"
    thesis.write_text("# My thesis\n\nThree months of work.\n")
    before = snapshot(course)
    assert main(["report", "--runs", str(course / "runs"), "--out", str(thesis)]) == 2
    assert "is not a report that `labkit report` built" in capsys.readouterr().err
    assert snapshot(course) == before


def test_a_report_of_an_older_labkit_without_a_manifest_keeps_text_under_a_discussion(course):
    path = course / "REPORT.md"
    (course / "REPORT_files" / MANIFEST).unlink(missing_ok=True)
    mine = "Written below the guiding questions, before the manifest existed."
    write_in_report(path, f"{AE_START}\n", f"{mine}\n{AE_START}\n")
    report.build_report(course / "runs", path)
    assert report.read_discussions(path)["ae"] == mine
    figures = sorted(p.name for p in (course / "REPORT_files" / "ae").iterdir())
    assert figures == sorted(json.loads((course / "runs" / "ae" / "metrics.json").read_text())["figures"].values())


# --------------------------------------------------------------------------- 4. only its own figures


def test_report_out_thesis_never_deletes_a_users_files_in_thesis_files(course, capsys):
    thesis, files = course / "thesis.md", course / "thesis_files"
    (files / "ae").mkdir(parents=True)
    (files / "outline.txt").write_text("my outline")
    (files / "ae" / "my sketch.png").write_bytes(b"my own drawing")
    add_run(course)
    assert main(["report", "--runs", str(course / "runs"), "--out", str(thesis)]) == 0
    assert (files / "outline.txt").read_text() == "my outline"
    assert (files / "ae" / "my sketch.png").read_bytes() == b"my own drawing"
    assert (files / "ae-latent8" / "reconstructions.png").is_file()
    shutil.rmtree(course / "runs" / "ae-latent8")
    assert main(["report", "--runs", str(course / "runs"), "--out", str(thesis)]) == 0
    assert not (files / "ae-latent8").exists()  # the figures the report wrote, and only those, are gone
    assert (files / "outline.txt").read_text() == "my outline"
    assert (files / "ae" / "my sketch.png").read_bytes() == b"my own drawing"
    assert (files / "ae" / "reconstructions.png").is_file()
    capsys.readouterr()


@pytest.mark.parametrize("owner", ["the student", "the report, edited since"])
def test_a_figure_would_replace_a_file_the_report_did_not_write_is_refused(course, capsys, owner):
    target = course / "REPORT_files" / "ae" / "reconstructions.png"
    if owner == "the student":  # a report without a manifest, whose figure the student replaced with their own
        (course / "REPORT_files" / MANIFEST).unlink(missing_ok=True)
        write_in_report(course / "REPORT.md", "![ae: reconstructions](REPORT_files/ae/reconstructions.png)", "")
        target.write_bytes(b"the student's own picture")
    else:
        target.write_bytes(b"retouched by hand")
    before = snapshot(course)
    assert main(["report", "--runs", str(course / "runs")]) == 2
    err = capsys.readouterr().err
    assert str(target) in err and ("did not write" in err or "changed after" in err)
    assert snapshot(course) == before


# --------------------------------------------------------------------------- clear errors, nothing written


@pytest.mark.parametrize("command", ["report", "submit"])
def test_a_metrics_json_that_is_a_list_is_an_error_naming_it(course, capsys, command):
    (course / "runs" / "ae" / "metrics.json").write_text("[1, 2, 3]")
    before = snapshot(course)
    extra = ["--allow-smoke"] if command == "submit" else []
    assert main([command, "--runs", str(course / "runs"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "metrics.json" in err and "a list" in err
    assert snapshot(course) == before


def test_a_report_that_cannot_be_written_is_refused_before_its_figures_change(course, capsys, monkeypatch):
    path = course / "REPORT.md"
    path.chmod(0o444)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(path) else real_access(p, mode))
    add_run(course)
    before = snapshot(course)
    assert main(["report", "--runs", str(course / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is read-only" in err and "nothing was changed" in err
    assert snapshot(course) == before


@pytest.mark.parametrize("where", ["inside a file", "a folder"])
def test_report_out_where_no_file_can_be_written_is_a_clear_error(course, capsys, where):
    out = course / "notes.txt" / "REPORT.md" if where == "inside a file" else course / "drafts"
    (course / "notes.txt").write_text("my notes")
    (course / "drafts").mkdir()
    before = snapshot(course)
    assert main(["report", "--runs", str(course / "runs"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ("is a file, not a folder" in err or "is a folder" in err)
    assert snapshot(course) == before


@pytest.mark.parametrize(
    "out, message",
    [
        ("drafts", "is a folder"),
        ("REPORT.md", "is the report it packs"),
        ("runs/submission.zip", "is the runs folder it packs, or inside it"),
        ("REPORT_files/submission.zip", "is the figures folder it packs, or inside it"),
        ("notes.txt", "must end in .zip"),
        ("data.zip", "is not a submission archive"),
        ("empty.zip", "is not a submission archive"),
    ],
)
def test_submit_out_refuses_anything_but_a_new_archive_or_an_earlier_submission(course, capsys, out, message):
    (course / "drafts").mkdir()
    (course / "notes.txt").write_text("my notes")
    with zipfile.ZipFile(course / "data.zip", "w") as z:
        z.writestr("images/1.png", b"a student's data")
    (course / "empty.zip").write_bytes(b"")
    before = snapshot(course)
    runs_before = sorted(p.name for p in (course / "runs").rglob("*"))
    assert main(["submit", "--runs", str(course / "runs"), "--allow-smoke", "--out", str(course / out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "nothing was written" in err
    assert snapshot(course) == before and sorted(p.name for p in (course / "runs").rglob("*")) == runs_before


def test_submit_replaces_an_earlier_submission(course, capsys):
    archive = course / "submission.zip"
    assert main(["submit", "--runs", str(course / "runs"), "--allow-smoke"]) == 0
    first = archive.read_bytes()
    write_in_report(course / "REPORT.md", report.PLACEHOLDER, "Written after submitting once.")
    assert main(["submit", "--runs", str(course / "runs"), "--allow-smoke", "--out", str(archive)]) == 0
    assert archive.read_bytes() != first
    assert "Written after submitting once." in zipfile.ZipFile(archive).read("REPORT.md").decode()
    assert sorted(p.name for p in course.iterdir()) == ["REPORT.md", "REPORT_files", "runs", "submission.zip"]
    capsys.readouterr()


def test_a_rebuild_removes_what_a_killed_rebuild_staged_but_keeps_files_it_had_moved_aside(course):
    path = course / "REPORT.md"
    abandoned = course / ".REPORT.md.k1ll3d.new"
    (abandoned / "figures").mkdir(parents=True)
    (abandoned / "report").write_text("a report staged when the process was killed")
    interrupted = course / ".REPORT.md.m1dsw4p.new"
    (interrupted / "replaced").mkdir(parents=True)
    (interrupted / "replaced" / "backup").write_text("the report a killed rebuild had moved aside")
    report.build_report(course / "runs", path)
    assert not abandoned.exists()
    assert (interrupted / "replaced" / "backup").read_text() == "the report a killed rebuild had moved aside"
