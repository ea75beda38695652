"""Badges and the Colab/Kaggle set-up cell: one repository setting, and every notebook agrees with it."""

import json
import shutil
from pathlib import Path

import pytest

from labkit import hosted

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
OTHER = "https://github.com/some-teacher/genmodels-2025"


def test_badge_links_have_the_formats_colab_and_kaggle_expect():
    assert hosted.colab_url("01_ae.ipynb", OTHER) == (
        "https://colab.research.google.com/github/some-teacher/genmodels-2025/blob/main/notebooks/01_ae.ipynb"
    )
    assert hosted.kaggle_url("01_ae.ipynb", OTHER) == (
        "https://kaggle.com/kernels/welcome?src=https://github.com/some-teacher/genmodels-2025/blob/main/notebooks/01_ae.ipynb"
    )


@pytest.mark.parametrize("bad", ["github.com/owner/repo", "https://gitlab.com/owner/repo", "https://github.com/owner"])
def test_a_repository_that_is_not_a_github_address_is_refused(bad):
    with pytest.raises(ValueError, match="https://github.com/OWNER/REPO"):
        hosted.setup_cell_source(bad)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_points_to_the_repository_setting(path):
    assert hosted.problems(path) == [], "run `python -m labkit.hosted --sync-notebooks`"


def _copy_notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for path in NOTEBOOKS:
        shutil.copy(path, folder / path.name)
    return folder


def test_check_fails_for_another_repository_until_the_notebooks_are_synced(tmp_path):
    folder = _copy_notebooks(tmp_path)
    before = {p.name: hosted.problems(p, OTHER) for p in hosted.notebooks(folder)}
    assert all(len(found) == 2 for found in before.values()), before  # badges and set-up cell both differ
    changed = hosted.sync_notebooks(folder, OTHER)
    assert sorted(p.name for p in changed) == sorted(p.name for p in NOTEBOOKS)
    for path in hosted.notebooks(folder):
        assert hosted.problems(path, OTHER) == []
        text = path.read_text()
        assert hosted.REPOSITORY not in text and f"git+{OTHER}" in text
        assert text.count("[![Open in Colab]") == 1 and text.count(hosted.SETUP_CELL_ID) == 1
    assert hosted.sync_notebooks(folder, OTHER) == []  # syncing twice changes nothing


def test_sync_adds_badges_and_set_up_cell_to_a_notebook_that_has_none(tmp_path):
    nb = {
        "cells": [
            {"cell_type": "markdown", "id": "t", "metadata": {}, "source": ["# Notebook 09: new\n", "\n", "Intro."]},
            {"cell_type": "markdown", "id": "m", "metadata": {}, "source": ["## Set-up"]},
            {
                "cell_type": "code",
                "id": "imports",
                "metadata": {},
                "outputs": [],
                "execution_count": None,
                "source": ["import labkit"],
            },
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "09_new.ipynb").write_text(json.dumps(nb))
    hosted.sync_notebooks(tmp_path, OTHER)
    cells = json.loads((tmp_path / "09_new.ipynb").read_text())["cells"]
    assert [c.get("id") for c in cells] == ["t", "m", hosted.SETUP_CELL_ID, "imports"]  # before the imports
    title = "".join(cells[0]["source"])
    assert title.startswith("# Notebook 09: new\n\n[![Open in Colab]") and title.endswith("Intro.")
    assert hosted.problems(tmp_path / "09_new.ipynb", OTHER) == []


def test_the_command_line_check_reports_a_stale_notebook(tmp_path, capsys):
    folder = _copy_notebooks(tmp_path)
    assert hosted.main(["--sync-notebooks", "--folder", str(folder)]) == 0
    assert hosted.main(["--check", "--folder", str(folder)]) == 0
    hosted.sync_notebooks(folder, OTHER)
    assert hosted.main(["--check", "--folder", str(folder)]) == 1
    assert "01_ae.ipynb: the title cell lacks the badges" in capsys.readouterr().out


class FakeShell:
    """What the set-up cell needs of IPython once its %pip line is turned into Python."""

    def __init__(self):
        self.magics = []

    def run_line_magic(self, name, line):
        self.magics.append((name, line))


def _run_setup_cell(monkeypatch, platform: str | None, internet: bool = True):
    import socket
    import sys
    import types

    from IPython.core.inputtransformer2 import TransformerManager

    class Connection:
        def close(self):
            pass

    def create_connection(address, timeout=None):
        assert address == ("github.com", 443)
        if not internet:
            raise socket.gaierror(-3, "Temporary failure in name resolution")
        return Connection()

    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    if platform == "Kaggle":
        monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    elif platform == "Colab":
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    shell = FakeShell()
    python = TransformerManager().transform_cell(hosted.setup_cell_source(OTHER))
    exec(compile(python, "setup-cell", "exec"), {"get_ipython": lambda: shell})
    return shell


def test_set_up_cell_installs_nothing_outside_colab_and_kaggle(monkeypatch, capsys):
    shell = _run_setup_cell(monkeypatch, None)
    assert shell.magics == []
    assert capsys.readouterr().out.strip() == "Not on Colab or Kaggle: using the labkit installed in this environment."


@pytest.mark.parametrize(
    "platform, advice",
    [("Kaggle", "Settings > Accelerator > GPU T4 x2"), ("Colab", "Runtime > Change runtime type > T4 GPU")],
)
def test_set_up_cell_on_a_hosted_platform_installs_labkit_and_says_how_to_get_a_gpu(
    monkeypatch, capsys, platform, advice
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    shell = _run_setup_cell(monkeypatch, platform)
    assert shell.magics == [("pip", f'install -q "labkit @ git+{OTHER}@main"')]  # no -U: keep the platform's torch
    out = capsys.readouterr().out
    assert f"No GPU in this {platform} runtime" in out and advice in out


def test_set_up_cell_is_silent_about_the_gpu_when_there_is_one(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a T4, which current torch supports
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"])
    _run_setup_cell(monkeypatch, "Colab")
    assert capsys.readouterr().out == ""


def test_the_command_line_says_so_when_the_folder_holds_no_notebook(tmp_path, capsys):
    assert hosted.main(["--sync-notebooks", "--folder", str(tmp_path)]) == 1
    assert "no notebooks" in capsys.readouterr().out


def test_the_set_up_cell_installs_the_version_the_course_fixed():
    cell = hosted.setup_cell_source(OTHER, ref="v2026.1")
    assert f'"labkit @ git+{OTHER}@v2026.1"' in cell
    assert "/blob/v2026.1/notebooks/01_ae.ipynb" in hosted.colab_url("01_ae.ipynb", OTHER, ref="v2026.1")
    with pytest.raises(ValueError, match="branch, tag or commit"):
        hosted.setup_cell_source(OTHER, ref="main; rm -rf /")


def test_with_kaggles_internet_off_the_set_up_cell_says_where_to_switch_it_on(monkeypatch):
    with pytest.raises(RuntimeError, match=r"Kaggle's internet is switched off.*Settings.*Internet on"):
        _run_setup_cell(monkeypatch, "Kaggle", internet=False)


def test_on_kaggles_p100_the_set_up_cell_says_to_choose_the_t4s(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (6, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Tesla P100-PCIE-16GB")
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"])
    _run_setup_cell(monkeypatch, "Kaggle")
    out = capsys.readouterr().out
    assert "Tesla P100-PCIE-16GB, compute capability 6.0" in out and "is not supported" in out
    assert "Settings > Accelerator > GPU T4 x2" in out
