"""``python -m labkit doctor``: every check passes on this CPU under CUDA's rules, a failing check is a
FAIL row with its reason and a non-zero exit, and what cannot run here is skipped with the reason."""

import pytest

from labkit import doctor


@pytest.mark.gpu_emulation
def test_the_doctor_passes_every_check_on_this_cpu_under_cudas_rules(cuda_autocast_rules, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    lines = []
    assert doctor.main("cpu", out=lines.append) == 0, "\n".join(lines)
    table, text = lines, "\n".join(lines)
    every = ("ae", "vae", "cvae", "vqvae", "gan", "gan-wgan-gp", "cgan", "dcgan", "dcgan-wgan-gp-sn", "classifier")
    for model in every:
        assert f"{model}: one epoch, precision auto (fp32)" in text
        assert any(
            line.startswith(f"{model}: one epoch, float16 forced") and " pass " in line and "fp16:" in line
            for line in table
        ), model
    for check in ("resume from a checkpoint", "notebook 04 reuses a run", "dcgan: compiled, two epochs"):
        assert any(line.startswith(check) and " pass " in line for line in table), check
    assert any(
        line.startswith("2-process DDP") and "skip" in line and "needs 2 GPUs, 0 visible" in line for line in table
    )
    assert "precision 'auto' picks        fp32" in text and "device used                   cpu" in text
    for model in ("diffusion-eps", "diffusion-flow-cond"):  # float16 convolutions on a CPU take minutes
        assert any(line.startswith(f"{model}: one epoch, precision auto") and " pass " in line for line in table)
        assert any(line.startswith(f"{model}: one epoch, float16 forced") and " skip " in line for line in table)
    assert "25 passed, 0 failed, 3 skipped" in text


def test_a_failing_check_is_a_fail_row_with_its_reason_and_the_exit_status_says_so(monkeypatch):
    def broken():
        raise RuntimeError("no kernel image is available for execution on the device")

    rows = [("works", lambda: "fine"), ("breaks", broken), ("cannot run here", "needs 2 GPUs, 1 visible")]
    monkeypatch.setattr(doctor, "Doctor", lambda device: None)
    monkeypatch.setattr(doctor, "checks", lambda d: rows)
    lines = []
    assert doctor.main("cpu", out=lines.append) == 1
    text = "\n".join(lines)
    assert [line.split()[0] for line in lines if line.startswith(("works", "breaks", "cannot"))] == [
        "works",
        "breaks",
        "cannot",
    ]
    assert "FAIL" in next(line for line in lines if line.startswith("breaks"))
    assert "RuntimeError: no kernel image is available for execution on the device (test_doctor.py:" in text
    assert "1 passed, 1 failed, 1 skipped" in text and "Failed: breaks." in text
