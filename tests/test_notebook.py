"""Out-of-order cells: the message for a missing name, its registration, and each notebook's list of names.

The message is built without IPython; registration is tried on a stand-in shell and on a real IPython
shell. Each notebook's list of "which section defines what" is compared with what its cells really
define and use.
"""

import ast
import json
import re
from pathlib import Path

import pytest

from labkit import notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("01_ae.ipynb", "02_vae.ipynb", "03_gan_abstract_art.ipynb", "04_compare.ipynb")
SETUP_SECTION = "Set-up"  # the imports; the explanations exist only once that section has run


def _load(name: str) -> dict:
    return json.loads((ROOT / "notebooks" / name).read_text())


def _text(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _python(source: str) -> ast.Module:
    from IPython.core.inputtransformer2 import TransformerManager

    return ast.parse(TransformerManager().transform_cell(source))  # %magics -> plain Python


def _sections(nb: dict) -> list[tuple[str, list[str]]]:
    """(section title, code cell sources) in order; a section starts at a ## or ### heading."""
    sections = [("(title)", [])]
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            headings = re.findall(r"^#{2,3} (.+)$", _text(cell), flags=re.M)
            if headings:
                sections.append((headings[-1].strip(), []))
        elif cell["cell_type"] == "code":
            sections[-1][1].append(_text(cell))
    return sections


def _defined(tree: ast.AST) -> set[str]:
    """Names a cell binds at the notebook's top level (not inside its functions)."""
    names = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        if not isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            names |= _defined(node)
    return names


SCOPES = (ast.FunctionDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _used(node: ast.AST, local: frozenset = frozenset()) -> set[str]:
    """Names a cell reads that are not local to one of its functions, lambdas or comprehensions."""
    if isinstance(node, SCOPES):
        arguments = getattr(node, "args", None)
        params = {a.arg for a in ast.walk(arguments) if isinstance(a, ast.arg)} if arguments else set()
        stored = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        local = local | params | stored
    found = (
        {node.id} if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in local else set()
    )
    for child in ast.iter_child_nodes(node):
        found |= _used(child, local)
    return found


def cross_section_names(nb: dict) -> dict[str, str]:
    """Every name a section uses that an earlier section (other than the set-up) defines: name -> section."""
    first_defined, needed = {}, {}
    for title, sources in _sections(nb):
        trees = [_python(s) for s in sources]
        defined_here = set().union(*map(_defined, trees)) if trees else set()
        for name in set().union(*map(_used, trees)) if trees else set():
            if name in first_defined and name not in defined_here and first_defined[name] != SETUP_SECTION:
                needed[name] = first_defined[name]
        for name in defined_here:
            first_defined.setdefault(name, title)
    return needed


def registered_sections(nb: dict) -> dict[str, str]:
    """The mapping the notebook passes to ``explain_missing_names``, as name -> section."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "explain_missing_names(" in _text(cell):
            for node in ast.walk(_python(_text(cell))):
                called = getattr(node, "func", None)
                if getattr(called, "attr", getattr(called, "id", None)) == "explain_missing_names":
                    sections = ast.literal_eval(node.args[0])
                    return {name: section for section, names in sections.items() for name in names}
    raise AssertionError("the notebook never calls labkit.notebook.explain_missing_names")


# --------------------------------------------------------------------------- the message


def test_message_names_the_section_that_defines_the_missing_name():
    message = notebook.missing_name_message(
        "history", {"Settings": ["cfg", "run"], "Training": ["training", "history"]}
    )
    assert "`history`" in message and "'Training'" in message and "Run All Above" in message


def test_a_single_name_may_be_given_as_a_string():
    assert "'Data'" in notebook.missing_name_message("data", {"Data": "data"})


def test_unknown_name_gets_the_general_advice_and_the_spelling_hint():
    message = notebook.missing_name_message("histroy", {"Training": ["history"]})
    assert "`histroy` is not defined" in message and "spelling" in message and "'Training'" not in message


def test_missing_name_is_read_from_the_error():
    try:
        undefined_in_this_test  # noqa: B018, F821
    except NameError as e:
        assert notebook.missing_name(e) == "undefined_in_this_test"
    assert notebook.missing_name(NameError("name 'cfg' is not defined")) == "cfg"  # an error without .name
    assert notebook.missing_name(ValueError("name 'cfg' is not defined")) is None


# --------------------------------------------------------------------------- registration


def test_registration_is_a_no_op_outside_ipython():
    assert notebook.explain_missing_names({"Training": ["history"]}) is False


class FakeShell:
    """Records what IPython's set_custom_exc and showtraceback receive."""

    def __init__(self):
        self.handled, self.handler, self.tracebacks = None, None, []

    def set_custom_exc(self, exceptions, handler):
        self.handled, self.handler = exceptions, handler

    def showtraceback(self, exc_tuple, tb_offset=None):
        self.tracebacks.append(exc_tuple[0])


def test_the_handler_shows_the_traceback_then_the_section(capsys):
    shell = FakeShell()
    assert notebook.explain_missing_names({"Training": ["history"]}, shell=shell) is True
    assert shell.handled == (NameError,)
    error = NameError("name 'history' is not defined", name="history")
    shell.handler(shell, NameError, error, None, tb_offset=None)
    assert shell.tracebacks == [NameError]
    assert "defined in the section 'Training'" in capsys.readouterr().out


def test_a_real_ipython_shell_prints_the_explanation(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        assert notebook.explain_missing_names({"Training": ["history"]}, shell=shell)
        result = shell.run_cell("history.last")
        assert isinstance(result.error_in_exec, NameError)  # the cell still fails, as it should
        out = capsys.readouterr().out
        assert "NameError" in out and "`history` is defined in the section 'Training'" in out
    finally:
        InteractiveShell.clear_instance()


# --------------------------------------------------------------------------- the notebooks


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_notebook_explains_every_name_it_carries_across_sections(name):
    nb = _load(name)
    expected, registered = cross_section_names(nb), registered_sections(nb)
    missing = {k: v for k, v in expected.items() if registered.get(k) != v}
    extra = sorted(set(registered) - set(expected))
    assert not missing, f"{name}: explain_missing_names lacks or misplaces {missing}"
    assert not extra, f"{name}: explain_missing_names lists names no later section uses: {extra}"


def test_cross_section_analysis_on_a_known_notebook():
    nb = {
        "cells": [
            {"cell_type": "markdown", "source": "## Set-up"},
            {"cell_type": "code", "source": "%matplotlib inline\nimport torch"},
            {"cell_type": "markdown", "source": "## Data"},
            {"cell_type": "code", "source": "data = torch.zeros(3)"},
            {"cell_type": "markdown", "source": "## Training"},
            {
                "cell_type": "code",
                "source": "for i in range(2):\n    history = data + i\ndef f():\n    local = 1\n    return data",
            },
            {"cell_type": "markdown", "source": "## Plots"},
            {"cell_type": "code", "source": "print(history, [i for i in data])\ng = lambda local: local + 1"},
        ]
    }
    assert cross_section_names(nb) == {"data": "Data", "history": "Training"}


# --------------------------------------------------------------------------- the teaching code lives in the notebooks

# What each notebook teaches, written in its own cells, and where the rest of the notebook must use it:
# ("in", definition) inside another definition of the notebook, ("call", None) called at the top level
# of a cell, ("keyword", argument) passed as that keyword argument of a call. If a notebook went back
# to labkit's copy, or stopped passing its own to training, these fail.
TEACHING = {
    "01_ae.ipynb": {"Autoencoder": ("call", None)},
    "02_vae.ipynb": {
        "VAE": ("call", None),
        "reparameterize": ("in", "VAE"),
        "kl_divergence": ("in", "vae_loss"),
        "vae_loss": ("keyword", "loss"),
    },
    "03_gan_abstract_art.ipynb": {
        "Generator": ("call", None),
        "Discriminator": ("call", None),
        "discriminator_loss": ("in", "AdversarialTraining"),
        "generator_loss": ("in", "AdversarialTraining"),
        "AdversarialTraining": ("keyword", "training_class"),
    },
    "04_compare.ipynb": {"path_smoothness": ("keyword", "measure")},
}
INSTEAD = {"02_vae.ipynb": ("make_vae", "vae_loss"), "03_gan_abstract_art.ipynb": ("discriminator_loss",)}


def _code_trees(nb: dict) -> list[ast.Module]:
    return [_python(_text(c)) for c in nb["cells"] if c["cell_type"] == "code"]


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _top_level_calls(trees: list[ast.Module]) -> list[ast.Call]:
    calls = []
    for tree in trees:
        for statement in tree.body:
            if not isinstance(statement, (ast.FunctionDef, ast.ClassDef)):
                calls += [n for n in ast.walk(statement) if isinstance(n, ast.Call)]
    return calls


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_ideas_are_code_the_notebook_defines_and_really_uses(name):
    nb = _load(name)
    trees = _code_trees(nb)
    definitions = {s.name: s for t in trees for s in t.body if isinstance(s, (ast.FunctionDef, ast.ClassDef))}
    calls = _top_level_calls(trees)
    for idea, (how, where) in TEACHING[name].items():
        assert idea in definitions, f"{name}: no cell defines {idea}"
        if how == "in":
            assert idea in _loads(definitions[where]), f"{name}: {where} does not use the notebook's {idea}"
        elif how == "call":
            assert any(isinstance(c.func, ast.Name) and c.func.id == idea for c in calls), (
                f"{name}: {idea} is never built"
            )
        else:
            assert any(
                k.arg == where and isinstance(k.value, ast.Name) and k.value.id == idea
                for c in calls
                for k in c.keywords
            ), f"{name}: {idea} is not passed as {where}="
    code = "\n".join(_text(c) for c in nb["cells"] if c["cell_type"] == "code")
    assert "getsource" not in code, f"{name}: shows source code instead of defining it"
    for labkit_copy in INSTEAD.get(name, ()):
        assert not re.search(rf"\b(labkit\.\w+|gan|losses)\.{labkit_copy}\b", code), (
            f"{name}: uses labkit's {labkit_copy} where the notebook's own should be used"
        )
