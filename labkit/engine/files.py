"""Writing files so that a full disk, a kill or a dropped runtime never leaves half of one.

Every file labkit writes that a student or an instructor keeps (``metrics.json``, figures,
checkpoints, ``REPORT.md`` and its figures, the submission archive, ``gradebook.csv``) goes
through ``atomic_writer``: the bytes go to a temporary file in the same folder, are flushed and
``fsync``-ed, and only then renamed over the target (``os.replace``, atomic on POSIX and Windows).
A failure at any point leaves the previous file untouched and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _mode_for(path: Path) -> int:
    """The permissions the written file gets: those of the file it replaces, else what ``open`` would give
    a new file (0o666 less the umask). A temporary file starts private (0o600), which would lock a shared
    course folder's other users out of every file labkit rewrites."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "wb", **open_kwargs) -> Iterator[IO]:
    """``with atomic_writer(path, "w") as f: f.write(...)``: ``path`` holds either its old
    contents or everything written inside the block, never a part of it.

    ``mode`` is ``"wb"`` or ``"w"`` (text; ``open_kwargs`` such as ``newline=""`` or
    ``encoding`` are passed on, UTF-8 by default). An ``OSError`` (a full disk, a folder that is
    not writable) is raised with the target named and the old file left as it was."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_writer writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, _mode_for(path))
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_writer``)."""
    with atomic_writer(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see ``atomic_writer``)."""
    with atomic_writer(path, "w") as f:
        f.write(text)
    return Path(path)


def save_figure(fig, path: str | Path, **savefig_kwargs) -> Path:
    """``fig.savefig`` into memory, then onto disk atomically: a full disk leaves the previous
    figure (or none), never a PNG cut short. The format comes from the suffix, as savefig's does."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", **savefig_kwargs)
    return write_bytes(path, buffer.getvalue())
