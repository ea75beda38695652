"""One recipe per model: a notebook run and a command-line run of the same settings write the same
metrics.json (the same keys, the same final numbers' names, the same hyperparameters as used)."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def _run_notebook(name: str) -> None:
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()


def _cli(model: str, out: Path, env: dict, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "labkit", "train", model, "--out", str(out), "--no-progress", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "notebook, runs",
    [("01_ae.ipynb", {"ae": ()}), ("02_vae.ipynb", {"vae": (), "vae-classic": ("--variant", "classic")})],
)
def test_a_notebook_run_and_a_command_line_run_record_the_same_fields(notebook, runs, tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("LABKIT_SMOKE", "1")
    monkeypatch.setenv("LABKIT_RUNS", str(tmp_path / "notebook"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    _run_notebook(notebook)
    for run, args in runs.items():
        _cli(run.split("-")[0], tmp_path / "cli" / run, dict(os.environ), *args)
        from_notebook = json.loads((tmp_path / "notebook" / run / "metrics.json").read_text())
        from_cli = json.loads((tmp_path / "cli" / run / "metrics.json").read_text())
        assert set(from_notebook) == set(from_cli), run
        assert set(from_notebook["final"]) == set(from_cli["final"]), run
        assert from_notebook["hyperparameters"] == from_cli["hyperparameters"], run
        assert from_notebook["epochs"] == from_cli["epochs"] == len(from_cli["history"])
