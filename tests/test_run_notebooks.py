"""``python -m labkit notebooks`` (``make run``): says what it will run and how long it took last time,
shows each notebook's progress line and the kernel's progress bar, records the times, and stops at
the first notebook that fails, naming it. Runs real kernels on small notebooks the test writes."""

import json
from pathlib import Path

import pytest

from labkit import run_notebooks as runner

nbformat = pytest.importorskip("nbformat")  # with nbclient and ipykernel: the dev extra, not Colab's set
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent


def write_notebook(folder, name, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / f"{name}.ipynb")


TRAIN = """
import torch, labkit
from labkit.engine.training import TrainingBase
class Mean(TrainingBase):
    name = "mean"
    def __init__(self):
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.modules, self.optimizer = {"w": torch.nn.Linear(1, 1)}, torch.optim.SGD([self.w], lr=0.1)
        self.optimizers = {"optimizer": self.optimizer}
    def train_step(self, x):
        loss = (x.mean() - self.w) ** 2
        self.optimizer.zero_grad(); loss.backward(); self.optimizer.step()
        return {"loss": loss.detach()}
    def eval_step(self, x):
        return {"loss": (x.mean() - self.w) ** 2}
labkit.fit(Mean(), torch.rand(64, 1, 4, 4), epochs=2, batch_size=16)
"""


@pytest.fixture
def folder(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks, "a_first", "print('hello from a')")
    write_notebook(notebooks, "b_train", TRAIN)
    write_notebook(notebooks, "c_fails", "x = 1", "raise ValueError('broken on purpose')", "print('never')")
    return notebooks


def test_it_announces_the_plan_shows_progress_and_bars_and_records_the_times(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    out = tmp_path / "executed"
    assert runner.run_notebooks(folder, out, names=("a_first", "b_train")) == 0
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert lines[0].startswith("labkit: running 2 notebooks at smoke mode (reduced epochs and data) on cpu")
    assert "  a_first                no estimate yet" in lines  # nothing measured on this machine yet
    assert any(line.startswith("[1/2] a_first: started") for line in lines)
    assert any(line.startswith("[2/2] b_train: done in") for line in lines)
    assert "mean epochs: 100%" in printed.err and "2/2" in printed.err  # the kernel's text bar, shown here
    executed = nbformat.read(out / "a_first.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "hello from a\n"
    recorded = json.loads((out / runner.TIMINGS_FILE).read_text())["cpu, smoke"]
    assert set(recorded) == {"a_first", "b_train"} and all(m >= 0 for m in recorded.values())
    # the second run estimates from the first
    assert runner.run_notebooks(folder, out, names=("a_first",)) == 0
    assert f"  a_first                about {recorded['a_first']:.0f} min" in capsys.readouterr().out


def test_on_a_cpu_it_says_first_what_the_notebooks_shrink_and_what_a_gpu_runs(folder, tmp_path, capsys, monkeypatch):
    from labkit.engine import environment
    from labkit.gan.recipe import DCGAN_CPU_EPOCHS

    monkeypatch.setattr(environment, "training_on_cpu", lambda: True)
    assert runner.run_notebooks(folder, tmp_path / "executed", names=("a_first",)) == 0
    notes = [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("CPU: ")]
    assert len(notes) == 2, notes
    assert notes[0].startswith(f"CPU: {DCGAN_CPU_EPOCHS} of the course's 100 DCGAN epochs")  # notebook 03
    assert notes[1].startswith(  # notebook 05, which trains fewer epochs than the command line
        "CPU: a diffusion UNet of width 16 on batches of 64 for 20 epochs, fewer than the 72 of "
        "`python -m labkit train diffusion`"
    )
    assert notes[1].endswith("trains the course's width 32 on batches of 128 for 30 epochs")
    monkeypatch.setattr(environment, "training_on_cpu", lambda: False)  # a GPU runs the course's settings
    assert runner.run_notebooks(folder, tmp_path / "executed", names=("a_first",)) == 0
    assert "CPU: " not in capsys.readouterr().out


def test_a_failing_notebook_stops_the_run_names_the_error_and_keeps_what_ran(folder, tmp_path, capsys):
    out = tmp_path / "executed"
    assert runner.run_notebooks(folder, out, names=("c_fails", "a_first")) == 1
    printed = capsys.readouterr()
    assert "[1/2] c_fails: FAILED" in printed.out and "a_first: started" not in printed.out
    assert "broken on purpose" in printed.err and str(out / "c_fails.ipynb") in printed.err
    partial = nbformat.read(out / "c_fails.ipynb", as_version=4)
    assert partial.cells[0].execution_count == 1 and partial.cells[2].execution_count is None


def test_make_run_runs_every_course_notebook_once_and_the_comparison_last():
    course = sorted(path.stem for path in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(runner.NOTEBOOKS) == course  # each notebook of the course, once
    assert runner.NOTEBOOKS[-1] == "04_compare"  # it compares the models of all the others, diffusion included
    assert runner.NOTEBOOKS.index("05_diffusion") < runner.NOTEBOOKS.index("04_compare")
    assert set(runner.REFERENCE_CPU_MINUTES) <= set(runner.NOTEBOOKS)


def test_a_missing_notebook_is_named_before_anything_runs(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="no notebook .*zz_missing.ipynb"):
        runner.run_notebooks(folder, tmp_path / "executed", names=("a_first", "zz_missing"))
    assert not (tmp_path / "executed").exists()
