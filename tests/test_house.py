"""The shape of the house, read from the code with ``ast``: labkit's imports (those inside functions
included) form no circle, the longest chain of imports stays within its floors, and a family's package
imports no other family, so that a student can guess where a thing lives and read a family alone."""

import ast
from pathlib import Path

import pytest

LABKIT = Path(__file__).resolve().parents[1] / "labkit"
# The longest chain of imports, in modules: the engine's leaves (environment, settings, files), what a training is
# and the checkpoint, the loop, the runs, a family's model and training, its recipe, the registry of recipes
# (``labkit.experiments``), the course's and instructors' tools, the command line.
MAX_LEVELS = 8
FAMILY_PACKAGES = ("ae", "vae", "gan", "diffusion")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = LABKIT) -> dict[str, set[str]]:
    """Module -> the labkit modules it imports (not the top-level package ``labkit`` itself, which imports
    everything for the notebooks' convenience and is imported by nothing inside)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            targets |= {c for c in candidates if c in modules and c not in (name, root.name)}
        graph[name] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle found by a depth-first walk, each as the chain of modules that closes it."""
    found, state = [], {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                found.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest chain of imports (the graph has no circles)."""
    chains: dict[str, list[str]] = {}

    def chain(module: str) -> list[str]:
        if module not in chains:
            below = max((chain(target) for target in graph[module]), key=len, default=[])
            chains[module] = [module, *below]
        return chains[module]

    return max((chain(module) for module in graph), key=len)


def family_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in FAMILY_PACKAGES else None


def test_the_graph_reads_relative_absolute_and_in_function_imports(tmp_path):
    package = tmp_path / "kit"
    (package / "family").mkdir(parents=True)
    (package / "__init__.py").write_text("from . import core\n")
    (package / "core.py").write_text("import os\n")
    (package / "family" / "__init__.py").write_text("")
    (package / "family" / "model.py").write_text("from ..core import x\n\ndef f():\n    from . import recipe\n")
    (package / "family" / "recipe.py").write_text("import kit.family.model\nfrom kit import core\n")
    graph = import_graph(package)
    assert graph["kit.family.model"] == {"kit.core", "kit.family", "kit.family.recipe"}  # a package runs its __init__
    assert graph["kit.family.recipe"] == {"kit.family.model", "kit.core"}
    assert circles(graph) == [["kit.family.model", "kit.family.recipe", "kit.family.model"]]


def test_labkit_imports_form_no_circle():
    assert circles(import_graph()) == [], "labkit's imports must only go down: move what both sides need lower"


def test_the_longest_chain_of_imports_stays_within_the_floors():
    chain = longest_chain(import_graph())
    assert len(chain) <= MAX_LEVELS, f"{len(chain)} levels of imports: " + " -> ".join(chain)


@pytest.mark.parametrize("package", FAMILY_PACKAGES)
def test_a_family_package_imports_no_other_family(package):
    graph = import_graph()
    crossing = {
        (module, target)
        for module, targets in graph.items()
        if family_of(module) == package
        for target in targets
        if family_of(target) not in (None, package)
    }
    assert crossing == set(), f"labkit.{package} imports another family: move what both need below the families"


# Where a family may be named: its own package, the registry that lists the families (``labkit.experiments``), the
# package's index (``labkit``), the report's outline (one part per notebook) and the notebooks' exercise checks
# (one module per notebook). Everywhere else labkit loops over the registry.
MAY_NAME_FAMILIES = ("labkit", "labkit.experiments", "labkit.report.parts")
EXERCISES = "labkit.exercises"


def family_names() -> set[str]:
    """Every name the registry gives a family, a recipe, a model notebook 04 compares or a doctor check."""
    from labkit import experiments

    recipes = experiments.RECIPES.values()
    return (
        {family.name for family in experiments.FAMILIES}
        | set(experiments.RECIPES)
        | set(experiments.COMPARED + experiments.CONDITIONAL)
        | {check.name for recipe in recipes for check in recipe.doctor}
    )


def names_in(source: str, names: set[str]) -> list[str]:
    """The lines of ``source`` where a string constant is one of ``names``, as ``line N: 'name'``."""
    return [
        f"line {node.lineno}: {node.value!r}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
    ]


def test_the_check_finds_a_family_named_in_a_branch():
    source = 'def step(model):\n    if model == "dcgan":\n        return 2\n    return {"note": "a dcgan run"}\n'
    assert names_in(source, {"dcgan", "gan"}) == ["line 2: 'dcgan'"]


def test_the_registry_names_the_families_that_are_packages():
    from labkit import experiments

    assert tuple(family.name for family in experiments.FAMILIES) == FAMILY_PACKAGES


def test_no_module_outside_the_families_and_the_registry_names_a_family():
    names, graph = family_names(), import_graph()
    found = {}
    for module, targets in sorted(graph.items()):
        if family_of(module) or module in MAY_NAME_FAMILIES or module.startswith(EXERCISES):
            continue
        path = LABKIT.parent / (module.replace(".", "/") + ".py")
        path = path if path.is_file() else path.with_suffix("") / "__init__.py"
        problems = [f"imports {target}" for target in sorted(targets) if family_of(target)]
        problems += names_in(path.read_text(encoding="utf-8"), names)
        if problems:
            found[module] = problems
    assert found == {}, (
        "these modules name a family instead of looping over labkit.experiments.FAMILIES (declare what differs "
        f"in the family's Recipe, labkit.engine.family): {found}"
    )


MAX_LINES = 400  # a module a reader can hold in mind; split by what the parts are, not by line count


def test_no_module_is_longer_than_a_reader_holds_in_mind():
    long = {
        str(p.relative_to(LABKIT)): n
        for p in LABKIT.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"
