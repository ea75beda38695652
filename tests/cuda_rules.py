"""CUDA's rules, emulated on the CPU (a pytest plugin, loaded by conftest.py).

CI has no GPU, and a CPU run is more forgiving than a GPU in ways that stop a student's notebook:
CUDA autocast refuses some functions outright, a checkpoint loaded "to the device" puts tensors where
only CPU tensors may go, Kaggle's two GPUs leave two generator states, Colab's shell has another class
name, and a GPU can be too old for the installed torch. Each fixture here makes the CPU behave as a
GPU runtime would at one of these points; the tests that use them are marked ``gpu_emulation``
(``pytest -m gpu_emulation`` runs them alone).
"""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# What CUDA's autocast says when it meets binary_cross_entropy (aten/src/ATen/autocast_mode.cpp).
CUDA_AUTOCAST_REFUSAL = (
    "torch.nn.functional.binary_cross_entropy and torch.nn.BCELoss are unsafe to autocast.\n"
    "Many models use a sigmoid layer right before the binary cross entropy layer.\n"
    "In this case, combine the two layers using torch.nn.functional.binary_cross_entropy_with_logits\n"
    "or torch.nn.BCEWithLogitsLoss.  binary_cross_entropy_with_logits and BCEWithLogits are\n"
    "safe to autocast."
)
REFUSED_UNDER_AUTOCAST = (F.binary_cross_entropy, torch._C._nn.binary_cross_entropy)


def autocast_on() -> bool:
    """True inside any enabled ``torch.autocast`` (CPU, CUDA or another device)."""
    return any(torch.is_autocast_enabled(device_type) for device_type in ("cpu", "cuda"))


class CudaAutocastRules(TorchFunctionMode):
    """Raise, as CUDA does, when a function that CUDA autocast refuses runs with autocast on.

    CPU autocast lets ``F.binary_cross_entropy`` (and ``nn.BCELoss``, which calls it) through; CUDA's
    raises the error above at the first call, which is how notebook 01 stopped at its first epoch."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in REFUSED_UNDER_AUTOCAST and autocast_on():
            raise RuntimeError(CUDA_AUTOCAST_REFUSAL)
        return func(*args, **(kwargs or {}))


@pytest.fixture
def cuda_autocast_rules():
    """While the test runs, autocast on the CPU refuses what CUDA autocast refuses."""
    with CudaAutocastRules():
        yield


def save_as_if_on_gpu(monkeypatch) -> None:
    """From now on ``torch.save`` tags every tensor as a CUDA tensor, as a file saved on a GPU is.

    Loading such a file on this CPU machine without ``map_location`` fails ("Attempting to deserialize
    object on a CUDA device"), exactly as a GPU student's checkpoint does on a CPU."""
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")


class FakeGPUs:
    """``n`` fake CUDA devices as far as the random generators go: each has a generator state, and
    ``set_rng_state`` refuses a device that does not exist ("invalid device ordinal") or a state that
    is not a CPU tensor, as the real one does."""

    def __init__(self, monkeypatch, n: int):
        self.n = n
        self.restored: dict[int, torch.Tensor] = {}
        self.states = [torch.full((16,), 10 + i, dtype=torch.uint8) for i in range(n)]
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in self.states])
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set_rng_state)
        monkeypatch.setattr(torch.cuda.random, "set_rng_state", self.set_rng_state)  # what set_rng_state_all calls

    def set_rng_state(self, new_state: torch.Tensor, device=0) -> None:
        index = torch.device("cuda", device).index if not isinstance(device, int) else device
        if index >= self.n:
            raise RuntimeError(f"CUDA error: invalid device ordinal (device {index} of {self.n})")
        if new_state.device.type != "cpu":
            raise TypeError(f"RNG state must be a torch.ByteTensor on the CPU, got one on {new_state.device}")
        self.restored[index] = new_state.clone()


@pytest.fixture
def fake_gpus(monkeypatch):
    """``fake_gpus(n)``: pretend this machine has ``n`` CUDA GPUs (generator states only)."""
    return lambda n: FakeGPUs(monkeypatch, n)


@pytest.fixture
def fake_gpu_model(monkeypatch):
    """``fake_gpu_model(name, capability, arch_list)``: one visible CUDA GPU of that compute capability,
    and a torch build that ships kernels for ``arch_list`` (``torch.cuda.get_arch_list()``)."""

    def fake(
        name: str, capability: tuple[int, int], arch_list=("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")
    ):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: name)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: capability)
        monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(arch_list))

    return fake


@pytest.fixture
def colab_shell(monkeypatch):
    """IPython's ``get_ipython()`` returns a shell shaped like Colab's: a class named ``Shell`` (module
    ``google.colab._shell``) that subclasses Jupyter's ``ZMQInteractiveShell``."""
    from ipykernel.zmqshell import ZMQInteractiveShell

    Shell = types.new_class("Shell", (ZMQInteractiveShell,))
    Shell.__module__ = "google.colab._shell"
    shell = object.__new__(Shell)  # the class is what matters; a real kernel is not started
    monkeypatch.setattr("IPython.get_ipython", lambda: shell)
    return shell
