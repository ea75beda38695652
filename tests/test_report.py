"""REPORT.md: every section and figure from the runs, and the student's discussion survives a rebuild."""

import json

import pytest

from labkit import ae, report, vae


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Real smoke runs of the AE and the latent-2 VAE (one epoch each, offline data)."""
    import os

    runs = tmp_path_factory.mktemp("runs")
    old = {k: os.environ.get(k) for k in ("LABKIT_SMOKE", "LABKIT_OFFLINE")}
    os.environ.update(LABKIT_SMOKE="1", LABKIT_OFFLINE="1")
    try:
        ae.run_ae(ae.AESettings(epochs=1), out=runs / "ae", device="cpu", progress=False)
        vae.run_vae(
            vae.VAESettings(epochs=1, variant="latent2"), out=runs / "vae-latent2", device="cpu", progress=False
        )
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return runs


def test_report_has_every_section_and_links_existing_figures(smoke_runs, tmp_path):
    out = report.build_report(smoke_runs, tmp_path / "REPORT.md")
    text = out.read_text()
    for part in report.PARTS:
        assert f"## {part.title}" in text
    assert "## Environment" in text and "## Instructor checklist" in text
    assert "offline-subset" in text and "MNIST offline subset" in text
    metrics = json.loads((smoke_runs / "ae" / "metrics.json").read_text())
    assert f"{metrics['final']['test_mse']:.4g}" in text  # the number comes from the run
    links = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(links) == len(metrics["figures"]) + len(
        json.loads((smoke_runs / "vae-latent2" / "metrics.json").read_text())["figures"]
    )
    for link in links:
        assert (tmp_path / link).is_file() and not link.startswith("/")


def test_checklist_marks_present_and_missing(smoke_runs, tmp_path):
    text = report.build_report(smoke_runs, tmp_path / "REPORT.md").read_text()
    assert "| ae | AE test MSE per pixel | present (smoke run) |" in text
    assert "| vae | decoded manifold of the latent-2 VAE | present (smoke run) |" in text
    assert "| vae | VAE test -ELBO (nats) | missing (run `vae`) |" in text
    assert "| ae | discussion written | missing |" in text


def test_student_discussion_survives_a_rebuild(smoke_runs, tmp_path):
    path = report.build_report(smoke_runs, tmp_path / "REPORT.md")
    mine = "The AE beat PCA because ReLU layers bend.\n\nSecond paragraph | with a pipe."
    path.write_text(path.read_text().replace(report.PLACEHOLDER, mine, 1))
    rebuilt = report.build_report(smoke_runs, path).read_text()
    assert mine in rebuilt
    assert rebuilt.count(report.PLACEHOLDER) == len(report.PARTS) - 1
    assert "| ae | discussion written | present |" in rebuilt


def test_missing_runs_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs folder"):
        report.build_report(tmp_path / "nothing", tmp_path / "REPORT.md")
