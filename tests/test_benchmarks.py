"""The benchmarks' shared helpers (benchmarks/common.py) and a tiny run of benchmarks/pipeline.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from common import PeakMemory, write_mnist  # noqa: E402

from labkit import data  # noqa: E402


def test_mnist_written_as_idx_files_reads_back_identically(tmp_path, monkeypatch, mnist_offline):
    write_mnist(mnist_offline, tmp_path)
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    again = data.load_mnist("cpu", smoke=False, verbose=False)
    assert again.source == "local"
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(again, name), getattr(mnist_offline, name)), name


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="per-measurement peak RSS needs Linux")
def test_peak_memory_sees_a_block_that_allocates_and_frees_256_mb():
    with PeakMemory(torch.device("cpu")) as peak:
        block = torch.ones(64, 2**20)  # 256 MiB of float32, touched
        del block
    fields = peak.fields()
    assert fields["peak_memory_mb"] - fields["memory_at_start_mb"] >= 250
    assert "VmHWM" in fields["memory_kind"]
    with PeakMemory(torch.device("cpu")) as quiet:  # reset: the block above no longer counts
        pass
    assert quiet.fields()["peak_memory_mb"] - quiet.fields()["memory_at_start_mb"] < 50


def test_pipeline_benchmark_prints_one_json_line_per_measurement_and_ratio(tmp_path):
    env = {**os.environ, "LABKIT_OFFLINE": "1", "LABKIT_DATA": str(tmp_path), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "pipeline.py"),
            "--device",
            "cpu",
            "--epochs",
            "2",
            "--n-train",
            "256",
            "--models",
            "vae-classic",
            "--dcgan-steps",
            "1",
            "--dcgan-batch-size",
            "4",
            "--dcgan-workers",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(r["model"], r.get("pipeline")) for r in rows] == [
        ("vae-classic", "labkit"),
        ("vae-classic", "dataloader"),
        ("vae-classic", None),
        ("dcgan-64", "labkit"),
        ("dcgan-64", "imagefolder"),
        ("dcgan-64", None),
    ]
    assert rows[0]["n_train"] == 256 and rows[0]["batch_size"] == 128 and len(rows[0]["epochs_seconds"]) == 2
    assert rows[2]["ratio_dataloader_over_labkit"] > 0 and rows[5]["ratio_labkit_over_imagefolder_steps_per_second"] > 0
    assert rows[3]["dataset"].startswith("synthetic stand-in") and rows[3]["steps"] == 1
    assert all(r["peak_memory_mb"] >= r["memory_at_start_mb"] > 0 for r in rows if "pipeline" in r)


def test_the_gan_variants_benchmark_summarises_each_variant_over_its_seeds(tmp_path):
    out, data_root = tmp_path / "gan_variants.json", tmp_path / "data"
    data_root.mkdir()
    env = {**os.environ, "LABKIT_SMOKE": "1", "LABKIT_OFFLINE": "1", "LABKIT_DATA": str(data_root)}
    args = ["--epochs", "1", "--seeds", "0", "1", "--variants", "plain", "WGAN-GP", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gan_variants.py"), *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert list(result["variants"]) == ["plain", "WGAN-GP"] and len(result["runs"]) == 4
    for name, summary in result["variants"].items():
        fids = [r["fid_classifier"] for r in result["runs"] if r["variant"] == name]
        assert summary["fid_classifier"]["mean"] == pytest.approx(sum(fids) / 2)
        assert summary["fid_classifier"]["sd"] == pytest.approx(abs(fids[0] - fids[1]) / 2**0.5)
    assert result["variants"]["WGAN-GP"]["scores"] == "critic" and result["epochs"] == 1
    assert 0 < result["real_floor_fid_classifier"] < min(r["fid_classifier"] for r in result["runs"])


def test_time_to_quality_times_the_scripts_loop_and_labkits_training_inside_their_processes(tmp_path, mnist_offline):
    from dataclasses import replace

    from time_to_quality import first_epoch_at_most, labkit_vae
    from whole_process import run_examples

    assert first_epoch_at_most([140.0, 125.5, 121.0, 119.0], 121.0) == 3  # 1-based, "at most" includes it
    assert first_epoch_at_most([140.0, 130.0], 121.0) is None
    small = replace(mnist_offline, train_x=mnist_offline.train_x[:640], train_y=mnist_offline.train_y[:640])
    root = tmp_path / "data"
    write_mnist(small, root)
    script = run_examples(root, tmp_path / "script", 1, "cpu")
    assert 0 < script["loop_seconds"] < script["seconds"]  # the loop alone, timed inside the script's process
    labkit = labkit_vae(root, 2)
    assert len(labkit["test_neg_elbo"]) == len(labkit["seconds"]) == 2
    assert 0 < labkit["seconds"][0] < labkit["seconds"][1]  # seconds since fit began, after each epoch
    assert labkit["test_neg_elbo"][1] < labkit["test_neg_elbo"][0] < 250  # it trained on the 640 digits


def test_time_to_quality_compares_the_dcgans_distance_to_the_floor_before_and_after(tmp_path, monkeypatch):
    import time_to_quality

    def fake_run(model, work, seed, upsample, ema, epochs):  # distances 100 (before) and 40 (after) over a floor of 10
        swd = 100.0 if upsample == "transposed" else 40.0
        history = [{"seconds": (3.0 if upsample == "transposed" else 4.0)}] * epochs
        folder = work / upsample
        folder.mkdir(parents=True)
        (folder / "samples.png").write_bytes(b"png")
        final = {"sliced_wasserstein": swd, "sliced_wasserstein_real": 10.0}
        return {
            "final": final,
            "history": history,
            "dataset": {"name": "art", "source": "stand-in"},
            "folder": str(folder),
        }

    monkeypatch.setattr(time_to_quality, "train_recipe", fake_run)
    for name in ("DCGAN_BEFORE", "DCGAN_SMOKE_BEFORE"):  # 30 epochs of 3 s before, the defaults' epochs of 4 s after
        monkeypatch.setattr(time_to_quality, name, {"upsample": "transposed", "ema": 0.0, "epochs": 30})
    lines = []
    summary = time_to_quality.part_dcgan([0], tmp_path / "work", lines, tmp_path)
    assert summary["ratio_distance_to_floor_before_over_after"] == pytest.approx(90 / 30)
    assert lines[0]["seconds"] == 90.0 and lines[1]["seconds"] == 4.0 * lines[1]["epochs"]
    assert summary["met"] == (lines[1]["seconds"] <= 90.0)  # halved, and in no more training seconds
    assert (tmp_path / "dcgan_before_seed0.png").read_bytes() == b"png" and (
        tmp_path / "dcgan_after_seed0.png"
    ).exists()


def test_the_vae_defaults_benchmark_tables_every_setting_and_shows_what_each_lever_changes(tmp_path):
    out, data_root = tmp_path / "vae_defaults.json", tmp_path / "data"
    data_root.mkdir()
    env = {**os.environ, "LABKIT_SMOKE": "1", "LABKIT_OFFLINE": "1", "LABKIT_DATA": str(data_root)}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "vae_defaults.py"), "--epochs", "1", "--repeats", "1", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    from vae_defaults import SETTINGS

    assert [t["setting"] for t in result["table"]] == list(SETTINGS) and len(result["runs"]) == len(SETTINGS)
    runs = {r["setting"]: r for r in result["runs"]}
    default_adam, fused, mean_start = (runs[name] for name in list(SETTINGS)[1:4])
    # the fused Adam takes Adam's steps: the same loss up to rounding
    assert fused["final_test_neg_elbo"] == pytest.approx(default_adam["final_test_neg_elbo"], abs=0.5)
    # starting at the mean image: far lower after one epoch (on the smoke digits about 25 nats)
    assert mean_start["final_test_neg_elbo"] < fused["final_test_neg_elbo"] - 10
    assert f"| {list(SETTINGS)[3]} |" in done.stdout


def test_the_diffusion_steps_benchmark_measures_every_sampler_at_every_step_count(tmp_path):
    out, data_root = tmp_path / "diffusion_steps.json", tmp_path / "data"
    data_root.mkdir()
    env = {**os.environ, "LABKIT_SMOKE": "1", "LABKIT_OFFLINE": "1", "LABKIT_DATA": str(data_root)}
    args = ["--epochs", "1", "--steps", "1", "2", "--no-ddpm", "--work", str(tmp_path / "runs"), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "diffusion_steps.py"), *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    table = {(r["sampler"], r["sample_steps"], r["weights"]): r for r in result["measurements"]}
    expected = {(s, n, "average") for s in ("euler", "heun", "ddim") for n in (1, 2)}
    assert set(table) == expected | {("heun", 4, "trained"), ("ddim", 4, "trained")}  # smoke: 4 sampler steps
    heun = [table["heun", n, "average"]["network_evaluations"] for n in (1, 2)]
    assert heun == [1, 3]  # Heun: 2 per step but the last
    assert all(r["sampling_seconds_per_1000"] > 0 and r["fid_classifier"] > 0 for r in table.values())
    assert 0 < result["real_floor_fid_classifier"] < min(r["fid_classifier"] for r in table.values())
    assert set(result["models"]) == {"flow", "eps"} and result["models"]["flow"]["epochs"] == 1
    assert (tmp_path / "runs" / "diffusion" / "metrics.json").is_file()  # the runs are kept where --work says


def test_the_diffusion_budget_benchmark_measures_quality_after_each_number_of_steps(tmp_path):
    out, data_root = tmp_path / "diffusion_budget.json", tmp_path / "data"
    data_root.mkdir()
    env = {**os.environ, "LABKIT_SMOKE": "1", "LABKIT_OFFLINE": "1", "LABKIT_DATA": str(data_root)}
    config = json.dumps({"width": 8, "batch_size": 32, "mults": [1, 2]})
    args = ["--config", config, "--checks", "2", "5", "--samples", "32", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "diffusion_budget.py"), *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["measurements"]
    assert [r["step"] for r in rows] == [2, 5] and all(r["width"] == 8 and r["epoch"] == 1 for r in rows)
    assert all(r["training_seconds"] == pytest.approx(r["step"] * r["seconds_per_step"]) for r in rows)
    assert all(r["fid_classifier"] > 0 and 1 <= r["class_coverage"] <= 10 for r in rows)


def test_the_diffusion_budget_benchmark_measures_a_conditional_models_accuracy(tmp_path):
    out, data_root = tmp_path / "diffusion_budget.json", tmp_path / "data"
    data_root.mkdir()
    env = {**os.environ, "LABKIT_SMOKE": "1", "LABKIT_OFFLINE": "1", "LABKIT_DATA": str(data_root)}
    config = json.dumps({"width": 8, "batch_size": 32, "mults": [1, 2], "conditional": True})
    args = ["--config", config, "--checks", "2", "--samples", "20", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "diffusion_budget.py"), *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(out.read_text())["measurements"]
    assert row["conditional"] is True and 0 <= row["conditional_accuracy"] <= 1


def test_the_diffusion_budget_benchmark_times_both_memory_layouts_in_turn(tmp_path):
    out = tmp_path / "memory_format.json"
    config = json.dumps({"width": 8, "batch_size": 16, "mults": [1, 2]})
    args = ["--memory-formats", "--rounds", "2", "--config", config, "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "diffusion_budget.py"), *args],
        env={**os.environ, "LABKIT_SMOKE": "1"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = result["measurements"]
    assert [(r["round"], r["memory_format"]) for r in rows] == [
        (0, "contiguous"),
        (0, "channels_last"),
        (1, "contiguous"),
        (1, "channels_last"),
    ]
    median = result["median_seconds_per_step"]
    assert result["channels_last_over_contiguous"] == pytest.approx(median["channels_last"] / median["contiguous"])
    assert "data" not in result and result["machine"]["device"] == "cpu"  # random images: no dataset to name


def test_the_diffusion_ema_benchmark_judges_every_average_of_one_training(tmp_path):
    from diffusion_ema import VARIANTS

    out, data_root = tmp_path / "diffusion_ema.json", tmp_path / "data"
    data_root.mkdir()
    env = {**os.environ, "LABKIT_SMOKE": "1", "LABKIT_OFFLINE": "1", "LABKIT_DATA": str(data_root)}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "diffusion_ema.py"), "--samples", "32", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    fid = {r["average"]: r["fid_classifier"] for r in result["measurements"]}
    assert list(fid) == ["weights", *VARIANTS] and all(value > 0 for value in fid.values())
    # a few smoke steps: the cap (1 + n) / (10 + n) stays below 0.99, so capping the decay there changes nothing ...
    assert fid["k10"] == fid["k10_decay0.995"] == fid["k10_decay0.99"]
    assert len({fid["k3"], fid["k10"], fid["k40"], fid["weights"]}) == 4  # ... while another cap is another average


def test_time_to_quality_keeps_the_parts_an_earlier_run_measured_and_this_run_did_not():
    from time_to_quality import merge_runs

    header_a, header_b, header_c = ({"benchmark": "time_to_quality", "run": name} for name in "abc")
    kept = [
        header_a,
        {"part": "dcgan", "side": "before"},
        {"summary": "dcgan"},
        {"part": "vae", "process": "labkit"},
        {"summary": "vae"},
        header_b,  # measured the gan part only, which the new run measures again
        {"part": "gan", "seed": 0},
        {"summary": "gan"},
    ]
    new = [header_c, {"part": "vae", "process": "labkit", "new": True}, {"summary": "vae", "new": True}]
    merged = merge_runs(kept, new + [{"part": "gan", "seed": 0, "new": True}])
    assert merged[:3] == [header_a, {"part": "dcgan", "side": "before"}, {"summary": "dcgan"}]
    assert merged[3:] == new + [{"part": "gan", "seed": 0, "new": True}]  # run b had nothing left: its header goes
    assert merge_runs([], new) == new
