"""REPORT.md: every section and figure from the runs, and the student's discussion survives a rebuild."""

import json
import shutil

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


def _variants_result(**overrides) -> dict:
    measure = {"mean": 1.0, "sd": 0.0}
    variant = {k: dict(measure) for k in ("class_coverage", "class_kl_from_uniform", "d_real", "d_fake")}
    variant["seconds_per_epoch"] = {"mean": 1.5, "sd": 0.25}
    result = {
        "benchmark": "benchmarks/gan_variants.py",
        "data": {"name": "MNIST offline subset"},
        "epochs": 100,
        "seeds": [0, 1, 2],
        "samples": 1000,
        "real_floor_fid_classifier": 3.3,
        "machine": {"device": "cpu", "cpu_cores": 2},
        "minutes": 50.0,
        "variants": {
            "plain": {**variant, "fid_classifier": {"mean": 20.44, "sd": 1.96}},
            "WGAN-GP": {**variant, "fid_classifier": {"mean": 10.0, "sd": 0.5}},
        },
    }
    return {**result, **overrides}


def test_the_gan_variants_benchmark_is_a_table_of_means_and_spreads_in_part_3(smoke_runs, tmp_path):
    (smoke_runs / report.GAN_VARIANTS_FILE).write_text(json.dumps(_variants_result()))
    try:
        text = report.build_report(smoke_runs, tmp_path / "REPORT.md").read_text()
    finally:
        (smoke_runs / report.GAN_VARIANTS_FILE).unlink()
    part3 = text.split("## Part 3", 1)[1].split("## Part 4", 1)[0]
    assert "### The MNIST GAN's variants over 3 seeds" in part3
    assert "| plain | 20.4 ± 2.0 | 1.0 ± 0.0 |" in part3 and "| WGAN-GP | 10.0 ± 0.5 |" in part3
    assert "1.50 ± 0.25 |" in part3 and "real training digits score 3.30" in part3


@pytest.mark.parametrize(
    "content, says",
    [
        ('{"benchmark": "benchmarks/gan_variants.py", "seeds": [0, 1', "JSONDecodeError"),
        (json.dumps(["not", "a", "result"]), "AttributeError"),
        (json.dumps(_variants_result(variants={"plain": {"fid_classifier": 3}})), "TypeError"),
        (json.dumps({k: v for k, v in _variants_result().items() if k != "seeds"}), "KeyError: 'seeds'"),
    ],
)
def test_a_gan_variants_result_that_cannot_be_read_leaves_its_table_out_and_the_report_is_built(
    smoke_runs, tmp_path, capsys, content, says
):
    (smoke_runs / report.GAN_VARIANTS_FILE).write_text(content)
    try:
        text = report.build_report(smoke_runs, tmp_path / "REPORT.md").read_text()
    finally:
        (smoke_runs / report.GAN_VARIANTS_FILE).unlink()
    part3 = text.split("## Part 3", 1)[1].split("## Part 4", 1)[0]
    assert f"Left out: `{report.GAN_VARIANTS_FILE}` could not be read ({says}" in part3
    assert "Run `python benchmarks/gan_variants.py` to write it again" in part3
    assert "## Part 5" in text  # the rest of the report is there
    assert f"{report.GAN_VARIANTS_FILE} could not be read ({says}" in capsys.readouterr().out


def test_runs_of_a_parts_model_with_a_suffix_join_that_part(smoke_runs, tmp_path):
    renamed = smoke_runs.parent / "suffixed"
    import shutil

    shutil.copytree(smoke_runs / "ae", renamed / "ae-latent8")
    (renamed / "gan-wgan-gp").mkdir()
    (renamed / "gan-wgan-gp" / "metrics.json").write_text(json.dumps({"model": "gan", "epochs": 1, "final": {}}))
    text = report.build_report(renamed, tmp_path / "REPORT.md").read_text()
    part1, part3 = text.split("## Part 1", 1)[1].split("## Part 2")[0], text.split("## Part 3", 1)[1]
    assert "### Run `ae-latent8`" in part1 and "### Run `gan-wgan-gp`" in part3.split("## Part 4")[0]


def _diffusion_record(final: dict, figures: dict) -> dict:
    """A diffusion run's metrics.json as ``labkit.diffusion.recipe.run_diffusion`` writes it, numbers made up."""
    return {"model": "diffusion", "epochs": 1, "seed": 0, "smoke": False, "final": final, "figures": figures}


def test_diffusion_runs_have_their_part_with_questions_and_checklist(smoke_runs, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(smoke_runs / "ae", runs / "ae")
    flow = {"fid_classifier": 12.5, "class_coverage": 10, "memorised_fraction": 0.008}
    figures = {"samples": "samples.png", "progression": "progression.png", "trajectory": "trajectory.png"}
    (runs / "diffusion").mkdir()
    (runs / "diffusion" / "metrics.json").write_text(json.dumps(_diffusion_record(flow, figures)))
    for filename in figures.values():
        shutil.copy(smoke_runs / "ae" / "reconstructions.png", runs / "diffusion" / filename)
    cond = {"fid_classifier": 20.25, "conditional_accuracy": 0.875, "memorised_fraction": 0.0}
    (runs / "diffusion-cond").mkdir()
    (runs / "diffusion-cond" / "metrics.json").write_text(json.dumps(_diffusion_record(cond, {})))
    (runs / "diffusion-eps-cond").mkdir()  # a variant the part does not name joins it too
    (runs / "diffusion-eps-cond" / "metrics.json").write_text(json.dumps(_diffusion_record(cond, {})))

    text = report.build_report(runs, tmp_path / "REPORT.md").read_text()
    part5 = text.split("## Part 5: Diffusion and flow matching (notebook 05)", 1)[1].split("## Instructor", 1)[0]
    assert "### Run `diffusion`: diffusion, 1 epochs" in part5 and "| fid_classifier | 12.5 |" in part5
    assert "### Run `diffusion-cond`" in part5 and "| conditional_accuracy | 0.875 |" in part5
    assert "### Run `diffusion-eps-cond`" in part5
    assert "![diffusion: trajectory](REPORT_files/diffusion/trajectory.png)" in part5
    assert (tmp_path / "REPORT_files" / "diffusion" / "trajectory.png").is_file()
    diffusion = next(p for p in report.PARTS if p.key == "diffusion")
    assert all(f"- {q}" in part5 for q in diffusion.questions) and "<!-- discussion:diffusion:start -->" in part5
    assert "### Run `diffusion" not in text.split("## Part 1", 1)[1].split("## Part 5", 1)[0]  # in no other part
    checklist = text.split("## Instructor checklist", 1)[1]
    assert "| diffusion | flow matching classifier Fréchet distance | present |" in checklist
    assert "| diffusion | flow matching memorised fraction | present |" in checklist
    assert "| diffusion | flow matching path from noise to digit | present |" in checklist
    assert "| diffusion | flow matching seconds per 1,000 samples | missing (run `diffusion`) |" in checklist
    assert "| diffusion | conditional diffusion conditional accuracy | present |" in checklist
    grid = "| diffusion | conditional diffusion samples, one row per digit | missing (run `diffusion-cond`) |"
    assert grid in checklist
    assert "| diffusion | DDPM classifier Fréchet distance | missing (run `diffusion-eps`) |" in checklist
    assert "| diffusion | discussion written | missing |" in checklist
