"""Running the notebooks on Colab and Kaggle: the repository they come from, their badges and set-up cell.

``REPOSITORY`` is the one place that names the course repository. ``python -m labkit.hosted
--sync-notebooks`` rewrites the "Open in Colab / Kaggle" badges and the set-up cell of every
notebook from it; ``--check`` lists the notebooks that disagree with it (tests run the check).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

# The course repository on GitHub. This is a placeholder: an instructor who publishes the kit
# changes it to their own repository and runs `python -m labkit.hosted --sync-notebooks`.
REPOSITORY = "https://github.com/labkit-course/labkit"
# The branch, tag or commit students get: the badges open the notebooks at it and the set-up cell
# installs labkit from it. A course pins a tag (say "v2026.1") so that every student runs the same code.
REF = "main"
NOTEBOOKS_FOLDER = "notebooks"

COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
KAGGLE_BADGE = "https://kaggle.com/static/images/open-in-kaggle.svg"
SETUP_CELL_ID = "hosted-setup"  # the set-up cell's id in every notebook
NO_INTERNET = {
    "Kaggle": "Kaggle's internet is switched off, so labkit cannot be installed: in the notebook's Settings "
    "(right-hand panel) switch Internet on (Kaggle asks once for a verified phone number), then run "
    "this cell again.",
    "Colab": "This Colab runtime cannot reach {host}, so labkit cannot be installed: reconnect (Runtime > "
    "Disconnect and delete runtime), then run this cell again.",
}
_REF_PATTERN = re.compile(r"^[\w./-]+$")

_REPOSITORY_PATTERN = re.compile(r"^https://github\.com/([\w.-]+)/([\w.-]+?)/?$")
_BADGES_LINE = re.compile(r"^\[!\[Open in Colab\].*$", flags=re.M)


def github_path(repository: str = REPOSITORY) -> str:
    """``OWNER/REPO`` of a ``https://github.com/OWNER/REPO`` address; anything else is an error."""
    match = _REPOSITORY_PATTERN.match(repository)
    if not match:
        raise ValueError(f"REPOSITORY must look like https://github.com/OWNER/REPO, got {repository!r}")
    return f"{match.group(1)}/{match.group(2)}"


def check_ref(ref: str) -> str:
    """A branch, tag or commit name (letters, digits, ``. _ / -``); anything else is an error."""
    if not isinstance(ref, str) or not _REF_PATTERN.match(ref) or ".." in ref:
        raise ValueError(
            f"REF must name a branch, tag or commit such as 'main', 'v2026.1' or a commit hash, got {ref!r}"
        )
    return ref


def notebook_on_github(notebook: str, repository: str = REPOSITORY, ref: str = REF) -> str:
    """``OWNER/REPO/blob/REF/notebooks/NAME.ipynb``: the part both badge links share."""
    return f"{github_path(repository)}/blob/{check_ref(ref)}/{NOTEBOOKS_FOLDER}/{notebook}"


def colab_url(notebook: str, repository: str = REPOSITORY, ref: str = REF) -> str:
    """Colab's address that opens ``notebook`` (a file name such as ``01_ae.ipynb``) from GitHub."""
    return f"https://colab.research.google.com/github/{notebook_on_github(notebook, repository, ref)}"


def kaggle_url(notebook: str, repository: str = REPOSITORY, ref: str = REF) -> str:
    """Kaggle's address that imports ``notebook`` from GitHub into a new Kaggle notebook."""
    return f"https://kaggle.com/kernels/welcome?src=https://github.com/{notebook_on_github(notebook, repository, ref)}"


def badges_markdown(notebook: str, repository: str = REPOSITORY, ref: str = REF) -> str:
    """The line of the title cell with the two badges."""
    return (
        f"[![Open in Colab]({COLAB_BADGE})]({colab_url(notebook, repository, ref)}) "
        f"[![Open in Kaggle]({KAGGLE_BADGE})]({kaggle_url(notebook, repository, ref)})"
    )


def setup_cell_source(repository: str = REPOSITORY, ref: str = REF) -> str:
    """The notebooks' first code cell. It runs before labkit is installed, so until the install it
    uses nothing of labkit.

    On Colab or Kaggle it checks that the repository's host can be reached (on Kaggle the internet
    is a switch, off by default: the cell says where to switch it on instead of failing later at
    ``import labkit``), installs labkit at ``ref`` (keeping the torch the platform ships), and says
    when there is no GPU or one this torch cannot use. Elsewhere it prints one line.
    """
    github_path(repository)  # fail here, not in a student's notebook, on a malformed address
    host = urlparse(repository).hostname
    return f'''# On Colab or Kaggle: install labkit from the course repository (at the version the course chose) and
# check the GPU. Elsewhere labkit is already installed and this cell only says so.
import os, socket, sys
HOSTED = "Colab" if "google.colab" in sys.modules else "Kaggle" if "KAGGLE_KERNEL_RUN_TYPE" in os.environ else None
NO_INTERNET = {json.dumps({k: v.format(host=host) for k, v in NO_INTERNET.items()}, indent=4)}
if HOSTED:
    try:
        socket.create_connection(("{host}", 443), timeout=10).close()
    except OSError as error:
        raise RuntimeError(f"{{NO_INTERNET[HOSTED]}} ({{error}})") from None
    %pip install -q "labkit @ git+{repository}@{check_ref(ref)}"
    from labkit.engine.environment import hosted_gpu_problem
    gpu_problem = hosted_gpu_problem(HOSTED)   # no GPU switched on, or one this torch cannot use
    if gpu_problem:
        print(gpu_problem)
else:
    print("Not on Colab or Kaggle: using the labkit installed in this environment.")'''


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _setup_cell(repository: str) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": SETUP_CELL_ID,
        "metadata": {},
        "outputs": [],
        "source": _lines(setup_cell_source(repository)),
    }


def synced(nb: dict, notebook: str, repository: str = REPOSITORY) -> dict:
    """``nb`` (a notebook as parsed JSON) with its badges and set-up cell made from ``repository``.

    The badges go right under the title (first line of the first cell), replacing old ones; the
    set-up cell replaces the cell with id ``hosted-setup``, or goes before the first code cell.
    """
    cells = [dict(c) for c in nb["cells"]]
    title = _text(cells[0]["source"])
    badges = badges_markdown(notebook, repository)
    if _BADGES_LINE.search(title):
        title = _BADGES_LINE.sub(lambda _: badges, title, count=1)
    else:
        first, _, rest = title.partition("\n")
        rest = rest.lstrip("\n")
        title = f"{first}\n\n{badges}\n" + (f"\n{rest}" if rest else "")
    cells[0]["source"] = _lines(title)
    ids = [c.get("id") for c in cells]
    if SETUP_CELL_ID in ids:
        cells[ids.index(SETUP_CELL_ID)] = _setup_cell(repository)
    else:
        first_code = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), len(cells))
        cells.insert(first_code, _setup_cell(repository))
    return {**nb, "cells": cells}


def problems(path: str | Path, repository: str = REPOSITORY) -> list[str]:
    """What in the notebook at ``path`` disagrees with ``repository`` (empty when nothing does)."""
    path = Path(path)
    nb = json.loads(path.read_text())
    found = []
    title = _text(nb["cells"][0]["source"])
    if badges_markdown(path.name, repository) not in title:
        found.append(
            f"{path.name}: the title cell lacks the badges for {repository} "
            f"(expected the line {badges_markdown(path.name, repository)!r})"
        )
    setup = [c for c in nb["cells"] if c.get("id") == SETUP_CELL_ID]
    if len(setup) != 1:
        found.append(f"{path.name}: expected one set-up cell with id {SETUP_CELL_ID!r}, found {len(setup)}")
    elif _text(setup[0]["source"]) != setup_cell_source(repository):
        found.append(f"{path.name}: the set-up cell differs from labkit.hosted.setup_cell_source({repository!r})")
    else:
        first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
        if first_code is not setup[0]:
            found.append(f"{path.name}: the set-up cell must be the first code cell (before the imports)")
    return found


def notebooks(folder: str | Path | None = None) -> list[Path]:
    """The course notebooks (``notebooks/*.ipynb`` of the checkout unless ``folder`` is given)."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent.parent / NOTEBOOKS_FOLDER
    return sorted(folder.glob("*.ipynb"))


def sync_notebooks(folder: str | Path | None = None, repository: str = REPOSITORY) -> list[Path]:
    """Rewrite the badges and set-up cell of every notebook in ``folder``; returns those changed."""
    changed = []
    for path in notebooks(folder):
        text = path.read_text()
        new = json.dumps(synced(json.loads(text), path.name, repository), indent=1, ensure_ascii=False) + "\n"
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.hosted", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--sync-notebooks",
        action="store_true",
        help="rewrite every notebook's badges and set-up cell from labkit.hosted.REPOSITORY",
    )
    action.add_argument("--check", action="store_true", help="list notebooks that disagree with REPOSITORY")
    parser.add_argument("--folder", default=None, help="notebooks folder (default: notebooks/ of the checkout)")
    args = parser.parse_args(argv)
    if not notebooks(args.folder):
        print(f"no notebooks (*.ipynb) in {args.folder or NOTEBOOKS_FOLDER}")
        return 1
    if args.sync_notebooks:
        for path in sync_notebooks(args.folder):
            print("rewrote", path)
        print(f"badges and set-up cells point to {REPOSITORY}")
        return 0
    found = [p for path in notebooks(args.folder) for p in problems(path)]
    print("\n".join(found) if found else f"all notebooks point to {REPOSITORY}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
