"""The project's own promises: dependencies agree, notebooks are clean, CI runs the README command."""

import ast
import json
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name where they differ


def _pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {CONDA_NAMES.get(n, n) for n in (re.split(r"[<>=!~\[; ]", d)[0].strip().lower() for d in names)}


def _environment_packages() -> set[str]:
    names, section = set(), None
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if re.match(r"^\w", line):  # a top-level key: name, channels, dependencies
            section = line.split(":")[0]
            continue
        item = line.strip()
        if item.startswith("- pip:"):
            section = "pip"
        elif section == "dependencies" and item.startswith("- "):
            names.add(re.split(r"[<>=! ]", item[2:])[0].lower())
    return names - {"python", "pip"}


def test_environment_yml_names_the_same_packages_as_pyproject():
    assert _environment_packages() == _pyproject_packages()


def test_environment_yml_installs_labkit_itself_with_dev_extras():
    assert "- -e .[dev]" in (ROOT / "environment.yml").read_text()


def test_torch_is_not_pinned_in_the_package():
    """Colab and Kaggle bring their own torch: the package states a floor, never an exact version."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for name in ("torch", "torchvision"):
        [spec] = [d for d in project["dependencies"] if re.split(r"[<>=!~\[; ]", d)[0] == name]
        assert spec.startswith(f"{name}>=") and "==" not in spec and "<" not in spec, spec


def test_every_package_labkit_imports_is_declared():
    declared = _pyproject_packages() | {"labkit"}
    imports = set()
    for path in (ROOT / "labkit").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imports |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imports.add(node.module.split(".")[0])
    third_party = {n for n in imports if n not in sys.stdlib_module_names}
    module_to_package = {
        "sklearn": "scikit-learn",
        "PIL": "pillow",
        "torch": "pytorch",
        "IPython": "ipywidgets",
        "ipywidgets": "ipywidgets",
    }  # IPython comes with ipywidgets
    optional = {"kagglehub", "kaggle"}  # the extra labkit[kaggle], imported lazily
    optional |= {"nbclient", "nbformat"}  # `python -m labkit notebooks` (make run), from the dev extra
    missing = {n for n in third_party - optional if module_to_package.get(n, n).lower() not in declared}
    assert not missing, f"labkit imports {sorted(missing)} without declaring them in pyproject.toml"


def test_every_package_of_labkit_is_installed_with_it():
    """``pip install`` (Colab, Kaggle) copies only the packages pyproject.toml names: a family's package that
    its configuration misses would import on this checkout and fail on every student's runtime."""
    import setuptools

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    if isinstance(listed, list):  # named one by one
        installed = set(listed)
    else:  # found: [tool.setuptools.packages.find]
        installed = set(setuptools.find_packages(where=str(ROOT), include=listed["find"]["include"]))
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "labkit").rglob("__init__.py")}
    assert {"labkit.ae", "labkit.vae", "labkit.gan", "labkit.diffusion", "labkit.engine"} <= packages
    assert installed == packages


def test_notebooks_are_committed_without_outputs():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, "no notebooks found"
    for path in notebooks:
        nb = json.loads(path.read_text())
        dirty = [i for i, c in enumerate(nb["cells"]) if c.get("outputs") or c.get("execution_count")]
        assert not dirty, f"{path.name}: cells {dirty} carry outputs; strip them before committing"
        assert nb["metadata"]["kernelspec"]["name"] == "python3"


def test_ci_runs_the_test_command_written_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"```(?:bash|sh)?\n(make test)\n```", readme)
    assert command, "README must show the test command in its own code block"
    assert command.group(1) in (ROOT / ".ci" / "run").read_text()


def test_the_committed_reference_report_links_only_figures_that_are_committed_beside_it():
    text = (ROOT / "REPORT.md").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(figures) > 20
    missing = [f for f in figures if not (ROOT / f).is_file()]
    assert not missing, f"REPORT.md links figures that are not committed: {missing}"
    assert "| settings | full settings |" in text and "| CPU cores |" in text
    # every run the instructor checklist asks for is in it (only the students' discussions are missing, and the
    # DDPM model, which notebook 05 trains when its OBJECTIVE is switched to "eps": make run trains flow matching)
    checklist = text.split("## Instructor checklist", 1)[1]
    missing = [line for line in checklist.splitlines() if "missing" in line and "discussion" not in line]
    assert missing == ["| diffusion | DDPM classifier Fréchet distance | missing (run `diffusion-eps`) |"]
    assert "| diffusion | conditional diffusion conditional accuracy | present |" in checklist


def test_the_notebooks_that_tests_execute_write_outside_the_checkout():
    """nbval's kernels inherit the test process's environment: LABKIT_RUNS points them, and notebook
    04's REPORT.md (written beside the runs folder), away from the checkout's runs/ and REPORT.md.
    .ci/run also checks that `git status` is clean and runs/ absent after `make test`."""
    import conftest

    runs = Path(conftest.SCRATCH) / "runs"
    assert not runs.resolve().is_relative_to(ROOT) and not runs.parent.resolve().is_relative_to(ROOT)


def test_the_readmes_own_notebook_example_runs_trains_and_resumes(tmp_path, monkeypatch):
    """The "Using labkit in your own notebook" code, as printed, on the offline digits: it learns (the
    test MSE ends well below an untrained model's) and a second run resumes from its checkpoint."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Using labkit in your own notebook", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    first: dict = {}
    exec(compile(code, "README.md", "exec"), first)
    assert len(first["history"]) == 5 and (tmp_path / "runs" / "mine").is_dir()
    evaluate, x_test = first["evaluate"], first["x_test"]
    untrained = first["MyTraining"](first["labkit"].ae.Autoencoder(latent_dim=16))
    assert evaluate(first["training"], x_test)["loss"] < 0.6 * evaluate(untrained, x_test)["loss"]
    again: dict = {}
    exec(compile(code, "README.md", "exec"), again)  # the same cell run again: nothing left to train
    assert [r["test_loss"] for r in again["history"]] == [r["test_loss"] for r in first["history"]]
