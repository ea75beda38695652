"""What the benchmarks share: labkit's MNIST written as torchvision's IDX files (so that a
DataLoader pipeline, or another script, reads the very same images) and the peak memory of one
measurement."""

from __future__ import annotations

import json
import platform
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from labkit import data


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (MNIST's format, ``labkit.data.read_idx`` reads it back)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(mnist: data.ImageData, root: Path) -> Path:
    """Write both splits of ``mnist`` as ``root/MNIST/raw/*-ubyte``, the layout of torchvision's
    ``datasets.MNIST(root)`` and of labkit's ``LABKIT_DATA=root``; returns the raw folder."""
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    to_bytes = lambda x: (x * 255).round().to(torch.uint8).squeeze(1).cpu().numpy()  # noqa: E731
    write_idx(raw / data.MNIST_FILES["train_x"], to_bytes(mnist.train_x))
    write_idx(raw / data.MNIST_FILES["train_y"], mnist.train_y.cpu().numpy())
    write_idx(raw / data.MNIST_FILES["test_x"], to_bytes(mnist.test_x))
    write_idx(raw / data.MNIST_FILES["test_y"], mnist.test_y.cpu().numpy())
    return raw


def _status_mb(field: str) -> float | None:
    """A field of /proc/self/status (Linux) in MiB, or None where there is none."""
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.fields()``: the peak memory of the block.

    On CUDA: ``torch.cuda.max_memory_allocated``, reset at the start (tensors of this process only).
    On the CPU under Linux: the process's peak resident set (VmHWM), reset at the start through
    /proc/self/clear_refs, so it is the peak during the block of everything resident (Python,
    libraries, datasets already loaded), with the resident size at the start beside it: the
    difference is what the block added. DataLoader worker processes are not included. Elsewhere:
    ``ru_maxrss``, the peak since the process started, said so in ``memory_kind``.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.start = self.peak = None
        self.kind = ""

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind, self.start = "cuda max_memory_allocated", torch.cuda.memory_allocated(self.device) / 2**20
            return self
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
            self.kind, self.start = "process peak RSS during the measurement (VmHWM)", _status_mb("VmRSS")
        except OSError:
            self.kind = "process peak RSS since start (ru_maxrss; not reset per measurement)"
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.start is not None:
            self.peak = _status_mb("VmHWM")
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, kB elsewhere
            self.peak = peak / 2**20 if sys.platform == "darwin" else peak / 1024

    def fields(self) -> dict:
        """The JSON fields of a measurement: ``peak_memory_mb``, ``memory_at_start_mb`` and what they are."""
        rounded = lambda v: None if v is None else round(v, 1)  # noqa: E731
        return {
            "peak_memory_mb": rounded(self.peak),
            "memory_at_start_mb": rounded(self.start),
            "memory_kind": self.kind,
        }


def write_result(
    out: str | Path, result: dict, *, data: data.ImageData | None, device, started: float, note=None
) -> None:
    """Write a benchmark's ``result`` to ``out`` as JSON, with what every result file says of its run: the
    data (None: a benchmark of random tensors), the machine, torch's version, the minutes since ``started``
    (``time.time()``) and ``note``; print where it went."""
    from labkit.engine.runs import installed_version

    result = {
        **result,
        **({"data": {"name": data.label, "n_train": data.n_train, "n_test": data.n_test}} if data else {}),
        "machine": {"device": str(device), "cpu_cores": torch.get_num_threads(), "platform": platform.platform()},
        "torch": installed_version("torch"),
        "minutes": round((time.time() - started) / 60, 1),
        **({"note": note} if note else {}),
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"written": str(out), "minutes": result["minutes"]}))
