"""Training on several processes (``labkit.engine.distributed``): two CPU processes with the gloo backend,
started by torchrun, must end with identical weights after training on different shards, and only
rank 0 may write the run. The job itself is tests/ddp_worker.py."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labkit.engine import distributed
from labkit.engine.checkpoint import safe_load

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Run the two-process job once; returns (completed process, output folder, rank 0's dump, rank 1's dump)."""
    out = tmp_path_factory.mktemp("ddp")
    env = {
        **os.environ,
        "LABKIT_SMOKE": "1",
        "LABKIT_OFFLINE": "1",
        "LABKIT_DEVICE": "cpu",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "LABKIT_DATA": str(out),
        "LABKIT_RUNS": str(out / "runs"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result, out, torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")


def _same(a: dict, b: dict) -> list[str]:
    """Names of the tensors that differ between two weight dumps (empty: identical, bit for bit)."""
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


def test_ranks_train_on_different_shards_and_end_with_identical_weights(job):
    _, _, rank0, rank1 = job
    assert rank0["shard_sums"][0] != rank1["shard_sums"][0]  # the ranks saw different images ...
    for run0, run1 in zip(rank0["ae_runs"], rank1["ae_runs"], strict=True):
        assert _same(run0["before"], run1["before"]) == []
        assert _same(run0["after"], run1["after"]) == []  # ... and DDP kept their weights equal
        assert set(_same(run0["before"], run0["after"])) == set(run0["after"])  # every tensor was trained
    assert len(rank0["ae_runs"]) == 2


def test_a_resumed_run_continues_from_the_checkpoint_on_every_rank(job):
    _, out, rank0, rank1 = job
    first, resumed = rank0["ae_runs"]
    # rank 1 loaded the checkpoint too: the history of epoch 1, and Adam's moments (without them its
    # updates, and so its weights, would differ from rank 0's after epoch 2)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    assert resumed["history"] == rank1["ae_runs"][1]["history"] and resumed["history"][0] == first["history"][0]
    checkpoint = safe_load(out / "ae" / "checkpoint.pt")
    assert checkpoint["epochs_done"] == 2
    saved = {f"{name}.{k}": v for name, sd in checkpoint["modules"].items() for k, v in sd.items()}
    assert _same(saved, resumed["after"]) == [] and _same(saved, rank1["ae_runs"][1]["after"]) == []


def test_only_rank_0_prints_and_writes_the_run(job):
    result, out, _, _ = job
    printed = [line for line in result.stdout.splitlines() if line.startswith('{"model": "ae"')]
    assert len(printed) == 1 and result.stdout.count("labkit: using device") == 1
    files = sorted(p.name for p in (out / "ae").iterdir())
    assert files == [
        "checkpoint.pt",
        "latent_tsne.png",
        "loss_curves.png",
        "metrics.json",
        "random_codes.png",
        "reconstructions.png",
    ]
    metrics = json.loads((out / "ae" / "metrics.json").read_text())
    assert metrics["environment"]["processes"] == 2 and metrics["dataset"]["n_train"] == 2000
    assert [r["epoch"] for r in metrics["history"]] == [1]
    assert json.loads(printed[0])["final"] == pytest.approx(metrics["final"])


def test_gan_under_ddp_ends_with_identical_generator_and_discriminator(job):
    _, _, rank0, rank1 = job
    assert _same(rank0["gan_after"], rank1["gan_after"]) == []  # batch-norm running statistics included
    changed = _same(rank0["gan_before"], rank0["gan_after"])
    assert any(k.startswith("generator.") for k in changed) and any(k.startswith("discriminator.") for k in changed)


def test_shards_are_equal_sized_disjoint_and_interleaved():
    x = torch.arange(10)
    parts = [distributed.shard(x, r, 3) for r in range(3)]
    assert [p.tolist() for p in parts] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]  # one image left out: equal steps
    assert distributed.shard(x, 0, 1) is x and distributed.shard(None, 1, 2) is None
    with pytest.raises(ValueError, match="cannot be shared among 4 processes"):
        distributed.shard(torch.arange(3), 0, 4)


def test_a_single_process_is_unchanged(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.init_from_env("cpu") == torch.device("cpu")
    assert not torch.distributed.is_initialized()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    record = {"epoch": 3, "seconds": 1.5, "train_loss": 0.25}
    assert distributed.average_record(record, torch.device("cpu")) is record


def test_the_conditional_wgan_gp_critic_and_generator_stay_identical_on_every_rank(job):
    """The gradient penalty's double backward and the labels under DistributedDataParallel."""
    _, _, rank0, rank1 = job
    assert _same(rank0["wgan_before"], rank1["wgan_before"]) == []
    assert _same(rank0["wgan_after"], rank1["wgan_after"]) == []
    trained = _same(rank0["wgan_before"], rank0["wgan_after"])
    assert any(k.startswith("generator.") for k in trained) and any(k.startswith("discriminator.") for k in trained)


def test_rank_0_alone_measures_the_gan_samples_without_waiting_for_the_others(job):
    """torchmetrics' Fréchet distance gathers its states over the ranks by default: rank 0 measuring
    alone then waited for ranks that had finished, and the command failed at its very end."""
    result, out, _, _ = job
    final = json.loads((out / "gan" / "metrics.json").read_text())["final"]
    assert final["fid_classifier"] > 0 and 0 <= final["class_coverage"] <= 10
    assert sum(line.startswith('{"model": "gan"') for line in result.stdout.splitlines()) == 1


def test_diffusion_under_ddp_keeps_the_network_and_its_average_identical_on_every_rank(job):
    """The weights' average (an AveragedModel beside the network) is updated from the network itself, once
    per step, on every rank; rank 0 draws the progression while the ranks train and writes the run alone."""
    _, out, rank0, rank1 = job
    (run0,), (run1,) = rank0["diffusion_runs"], rank1["diffusion_runs"]
    assert _same(run0["before"], run1["before"]) == []
    assert _same(run0["after"], run1["after"]) == []  # the network, its average and the average's count
    assert set(_same(run0["before"], run0["after"])) == set(run0["after"])  # every tensor was trained
    assert int(run0["after"]["ema.n_averaged"]) == 2  # 64 images a rank in batches of 32: one update a step
    assert run0["history"] == run1["history"] and math.isfinite(run0["history"][0]["test_loss"])
    checkpoint = safe_load(out / "diffusion" / "checkpoint.pt")
    saved = {f"{name}.{k}": v for name, sd in checkpoint["modules"].items() for k, v in sd.items()}
    assert _same(saved, run0["after"]) == []
    metrics = json.loads((out / "diffusion" / "metrics.json").read_text())
    assert metrics["environment"]["processes"] == 2 and metrics["dataset"]["n_train"] == 128
    assert sorted(p.name for p in (out / "diffusion").iterdir()) == sorted(
        ["checkpoint.pt", "metrics.json", *metrics["figures"].values()]
    )
    assert {"progression", "progression_gif", "samples", "digit_grid"} <= set(metrics["figures"])
    assert math.isfinite(metrics["final"]["conditional_accuracy"])


def test_the_weights_average_follows_the_network_itself_under_ddp(job):
    """With decay 0 the average equals the weights after every step: it reads the network, not its wrapper."""
    _, _, rank0, rank1 = job
    for found in (rank0["diffusion_ema0"], rank1["diffusion_ema0"]):
        assert found["net"].keys() == found["ema"].keys()
        assert _same(found["net"], found["ema"]) == []
    assert _same(rank0["diffusion_ema0"]["net"], rank1["diffusion_ema0"]["net"]) == []
