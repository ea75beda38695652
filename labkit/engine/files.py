"""Writing files so that a full disk, a kill or a dropped runtime never leaves half of one.

Every file labkit writes that a student or an instructor keeps (``metrics.json``, figures,
checkpoints, ``REPORT.md`` and its figures, the submission archive, ``gradebook.csv``) goes
through ``atomic_writer``: the bytes go to a temporary file in the same folder, are flushed and
``fsync``-ed, and only then renamed over the target (``os.replace``, atomic on POSIX and Windows).
A failure at any point leaves the previous file untouched and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import torch


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


def content_digest(state: Mapping, leave_out: str | None = None) -> str:
    """SHA-256 (hex) of a checkpoint's contents, every entry but ``leave_out`` (the one that holds the digest).

    The walk is fixed: mappings by sorted key, sequences in order, each value tagged with its kind
    (and a length where its size varies), so that two different contents never feed the same bytes.
    A tensor contributes its dtype, shape and the bytes of its elements (on the CPU, in row-major
    order: the same whichever device saved it), a number its exact ``repr``. Loading with
    ``weights_only`` gives back the types that were saved, so the digest of a loaded file equals the
    one recorded when it was written unless its bytes changed on disk."""
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in state.items() if key != leave_out})
    return digest.hexdigest()


def _feed(digest, value) -> None:
    def text(tag: str, content: str) -> None:
        data = content.encode("utf-8")
        digest.update(f"{tag}{len(data)}:".encode())
        digest.update(data)

    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().resolve_conj().resolve_neg().contiguous()
        text("tensor", f"{tensor.dtype}{tuple(tensor.shape)}")
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda item: (type(item[0]).__name__, repr(item[0])))
        text("mapping", str(len(items)))
        for key, item in items:
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, (list, tuple)):
        text("sequence", str(len(value)))
        for item in value:
            _feed(digest, item)
    elif isinstance(value, str):
        text("str", value)
    else:  # None, bool, int, float (repr is exact), and the few other types weights_only loads
        text(type(value).__name__, repr(value))
