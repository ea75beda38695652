"""``python -m labkit notebooks``: execute the course's notebooks headless, in order, as ``make run``
does, and say what is going on: before it starts, what will run and how long it took last time (or on
the reference machine); while it runs, one line per notebook and the current model's progress bar; at
the end, each notebook's time. The executed notebooks (with their outputs) go to ``--out``; the figures,
metrics and ``REPORT.md`` go where the notebooks put them (the runs folder).

Needs ``nbclient`` and ``ipykernel`` (installed with ``pip install -e ".[dev]"``, which ``make`` uses).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from . import experiments
from .engine import environment, files

# In this order: notebook 04 compares the models of all the others (diffusion included) and ends by writing
# REPORT.md, so it runs last; the file names keep the course's numbering.
NOTEBOOKS = ("01_ae", "02_vae", "03_gan_abstract_art", "05_diffusion", "04_compare")
TIMINGS_FILE = "timings.json"  # in --out: each notebook's minutes, per device, from the last run
# Minutes at full settings on the reference machine (2 CPU cores, no GPU, the offline data), measured by
# `make run` of the five notebooks on a fresh clone (52 minutes with the set-up): the estimate before a first
# run on a CPU. Other devices get theirs after their first run. Notebook 03 is the resizing DCGAN's 18 CPU epochs
# (80 s each that day; the same machine has run as fast as 24 s an epoch for the transposed G, which costs about
# three quarters as much), the MNIST GANs and the six variants; notebook 05 its two models (20 and 10 epochs).
REFERENCE_CPU_MINUTES = {
    "01_ae": 0.55,
    "02_vae": 3.1,
    "03_gan_abstract_art": 34.01,
    "05_diffusion": 9.78,
    "04_compare": 2.11,
}


def _device_kind() -> str:
    from .engine.environment import pick_device

    device = pick_device(verbose=False)
    if device.type == "cuda":
        import torch

        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def estimates(out: Path, kind: str) -> tuple[dict[str, float], str]:
    """Minutes per notebook expected on ``kind`` and where the numbers come from (None when unknown)."""
    path = out / TIMINGS_FILE
    mode = "smoke" if environment.smoke_mode() else "full"
    if path.is_file():
        recorded = json.loads(path.read_text()).get(f"{kind}, {mode}")
        if recorded:
            return recorded, "as the last run on this machine took"
    if kind == "cpu" and mode == "full":
        return dict(REFERENCE_CPU_MINUTES), "as on the reference machine (2 CPU cores)"
    return {}, ""


def _executor(notebook, kernel_cwd: Path):
    """An nbclient executor that copies the kernel's stderr (the progress bars) to this terminal."""
    from nbclient import NotebookClient

    class ShowingProgress(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content", {})
            if msg.get("msg_type") == "stream" and content.get("name") == "stderr":
                sys.stderr.write(content.get("text", ""))
                sys.stderr.flush()
            return super().output(outs, msg, display_id, cell_index)

    return ShowingProgress(notebook, timeout=None, kernel_name="python3", resources={"metadata": {"path": kernel_cwd}})


def run_notebooks(notebooks: str | Path = "notebooks", out: str | Path = "runs/notebooks", names=NOTEBOOKS) -> int:
    """Execute ``names`` from ``notebooks`` in order; write each executed notebook into ``out``. Returns 0,
    or 1 at the first notebook that fails (its partial outputs are written too, and the cell is named)."""
    try:
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError as e:
        raise RuntimeError(
            f"running the notebooks needs nbclient and ipykernel ({e}): pip install nbclient ipykernel"
        ) from e
    notebooks, out = Path(notebooks), Path(out)
    paths = [notebooks / f"{name}.ipynb" for name in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no notebook {', '.join(missing)}: run this from the top of the checkout")
    out.mkdir(parents=True, exist_ok=True)
    kind = _device_kind()
    expected, source = estimates(out, kind)
    mode = "smoke mode (reduced epochs and data)" if environment.smoke_mode() else "full settings"
    print(f"labkit: running {len(names)} notebooks at {mode} on {kind}:")
    for name in names:
        guess = f"about {expected[name]:.0f} min" if name in expected else "no estimate yet"
        print(f"  {name:<22} {guess}")
    if expected and all(name in expected for name in names):
        print(f"  {'in all':<22} about {sum(expected[n] for n in names):.0f} min, {source}")
    for note in _cpu_notes():
        print(f"  {note}")
    minutes: dict[str, float] = {}
    before = os.environ.get("LABKIT_PLAIN_PROGRESS")
    os.environ["LABKIT_PLAIN_PROGRESS"] = "1"  # text progress bars, which the kernels stream to us
    try:
        for i, (name, path) in enumerate(zip(names, paths), 1):
            if not _execute(i, len(names), name, path, out, minutes):
                return 1
    finally:
        if before is None:
            os.environ.pop("LABKIT_PLAIN_PROGRESS")
        else:
            os.environ["LABKIT_PLAIN_PROGRESS"] = before
    _record(out, kind, minutes)
    print(f"labkit: {len(names)} notebooks in {sum(minutes.values()):.1f} min; executed copies in {out}")
    return 0


def _execute(i: int, n: int, name: str, path: Path, out: Path, minutes: dict[str, float]) -> bool:
    """Run notebook ``i`` of ``n`` with its progress lines, its folder as the working directory, and add
    its minutes to ``minutes``; its executed copy goes to ``out`` even when it fails."""
    import nbformat
    from nbclient.exceptions import CellExecutionError

    print(f"[{i}/{n}] {name}: started {time.strftime('%H:%M:%S')}", flush=True)
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    try:
        _executor(notebook, path.parent).execute()
    except CellExecutionError as e:
        _write_notebook(notebook, out / path.name)
        print(f"[{i}/{n}] {name}: FAILED after {(time.perf_counter() - started) / 60:.1f} min", flush=True)
        print(str(e).strip().splitlines()[-1] if str(e).strip() else repr(e), file=sys.stderr)
        print(f"the executed part is in {out / path.name}", file=sys.stderr)
        return False
    minutes[name] = round((time.perf_counter() - started) / 60, 2)
    nbformat.write(notebook, out / path.name)
    print(f"[{i}/{n}] {name}: done in {minutes[name]:.1f} min", flush=True)
    return True


def _cpu_notes() -> list[str]:
    """What the notebooks shrink on a machine without a GPU, and what a GPU runs instead."""
    notes = (recipe.cpu_note() for recipe in experiments.RECIPES.values() if recipe.cpu_note)
    return [note for note in notes if note]


def _record(out: Path, kind: str, minutes: dict[str, float]) -> None:
    path = out / TIMINGS_FILE
    known = json.loads(path.read_text()) if path.is_file() else {}
    known[f"{kind}, {'smoke' if environment.smoke_mode() else 'full'}"] = minutes
    files.write_text(path, json.dumps(known, indent=1) + "\n")


def _write_notebook(notebook, path: Path) -> None:
    """An executed notebook, written whole or not at all (``labkit.engine.files``)."""
    import nbformat

    with files.atomic_writer(path, "w") as f:
        nbformat.write(notebook, f)
