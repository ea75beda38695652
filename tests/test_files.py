"""Atomic writes (``labkit.engine.files``) and the check of a metrics.json's shape on reading
(``labkit.engine.runs.read_record``): a full disk leaves the previous file, a bad record a clear error."""

import errno
import json
import os

import matplotlib
import pytest

from labkit.engine import files
from labkit.engine.runs import read_record, record_problem

matplotlib.use("Agg")


class DiskFullAfter:
    """A stand-in for ``os.fsync`` that fails as a full disk does: the bytes written so far never
    reach the disk, and the caller gets ENOSPC."""

    def __init__(self):
        self.calls = 0

    def __call__(self, fd):
        self.calls += 1
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_leaves_the_previous_file_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "REPORT.md"
    target.write_text("the student's discussion, written over an evening\n")
    fail = DiskFullAfter()
    monkeypatch.setattr(files.os, "fsync", fail)
    with pytest.raises(OSError) as raised:
        files.write_text(target, "a new report " * 10_000)
    assert raised.value.errno == errno.ENOSPC and fail.calls == 1
    assert target.read_text() == "the student's discussion, written over an evening\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["REPORT.md"]


def test_an_error_inside_the_block_keeps_the_old_contents(tmp_path):
    target = tmp_path / "gradebook.csv"
    target.write_bytes(b"student,flags\nalice,\n")
    with pytest.raises(RuntimeError), files.atomic_writer(target, "w", newline="") as f:
        f.write("student,flags\n")
        raise RuntimeError("the grader stopped half-way")
    assert target.read_bytes() == b"student,flags\nalice,\n"
    assert os.listdir(tmp_path) == ["gradebook.csv"]


def test_a_written_file_holds_everything_and_only_appending_modes_are_refused(tmp_path):
    files.write_bytes(tmp_path / "a.bin", b"\x00\x01" * 5000)
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01" * 5000
    files.write_text(tmp_path / "b.md", "naïve café")
    assert (tmp_path / "b.md").read_text(encoding="utf-8") == "naïve café"
    with pytest.raises(ValueError, match="whole files"), files.atomic_writer(tmp_path / "c", "a"):
        pass


def test_a_figure_cut_off_by_a_full_disk_leaves_the_previous_png(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = files.save_figure(fig, tmp_path / "curves.png")
    good = path.read_bytes()
    assert good.startswith(b"\x89PNG") and len(good) > 1000
    monkeypatch.setattr(files.os, "fsync", DiskFullAfter())
    ax.plot([0, 1], [0, 1])
    with pytest.raises(OSError):
        files.save_figure(fig, path)
    plt.close(fig)
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["curves.png"]


def test_a_written_file_keeps_the_permissions_of_the_one_it_replaces_or_gets_the_usual_ones(tmp_path):
    shared = tmp_path / "gradebook.csv"
    shared.write_text("old")
    os.chmod(shared, 0o664)
    files.write_text(shared, "new")
    assert shared.stat().st_mode & 0o777 == 0o664
    umask = os.umask(0o022)
    try:
        files.write_text(tmp_path / "new.md", "text")
    finally:
        os.umask(umask)
    assert (tmp_path / "new.md").stat().st_mode & 0o777 == 0o644  # as open() makes it, not mkstemp's 0o600


@pytest.mark.parametrize(
    "record, problem",
    [
        ([1, 2, 3], "a list, not an object"),
        ({"model": "ae", "final": "0.01"}, '"final" is "0.01", where an object belongs'),
        ({"model": "ae", "epochs": True}, '"epochs" is true, where a whole number or a string belongs'),
        ({"model": "ae", "smoke": 1}, '"smoke" is 1, where true or false belongs'),
        ({"model": "ae", "history": [{"loss": 1.0}, 3]}, "not an object of per-epoch numbers"),
        ({"model": "ae", "figures": {"curves": "../../secret.png"}}, "where a file name in the run folder"),
        ({"model": "ae", "figures": {"curves": "/etc/passwd"}}, "where a file name in the run folder"),
    ],
)
def test_a_record_of_the_wrong_shape_is_named_with_what_is_wrong(tmp_path, record, problem):
    assert problem in record_problem(record)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="is not a labkit run's metrics.json") as raised:
        read_record(path)
    assert str(path) in str(raised.value) and "rerun that notebook" in str(raised.value)


def test_a_record_of_the_right_shape_reads_back_and_missing_parts_are_allowed(tmp_path):
    comparison = {"model": "compare", "epochs": "ae 20, vae 20, gan 100", "smoke": False}
    assert record_problem(comparison) is None  # notebook 04 writes each model's epochs
    record = {"model": "vae", "epochs": 2, "seed": None, "final": {"test_neg_elbo_nats": 140.1, "table": "| a |"}}
    record["figures"] = {"loss_curves": "loss_curves.png"}
    assert record_problem(record) is None and record_problem({}) is None
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(record))
    assert read_record(path) == record
