"""Submitting and grading a class: real runs made here, packed by ``labkit submit``, then a class of
honest and dishonest submissions and hostile archives graded by ``labkit grade``."""

import csv
import io
import json
import os
import pickle
import shutil
import zipfile
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from labkit import ae, grade, report, submit, vae
from labkit.data import load_mnist
from labkit.diffusion.recipe import DiffusionSettings, run_diffusion
from labkit.engine.loop import fit
from labkit.experiments import RECIPES
from labkit.gan.recipe import CGANSettings, GANSettings, run_cgan, run_gan
from labkit.grade.grading import _data_key
from labkit.vae.cvae import CVAESettings, run_cvae
from labkit.vae.vqvae import VQVAESettings, run_vqvae

PARTS = [p.key for p in report.PARTS]
HONEST = {
    "alice": "The autoencoder beat PCA on my run; thin strokes of sevens came back thicker than drawn.",
    "bob": "Reconstruction cost most nats while the KL stayed small, so codes carry little information.",
    "carol": "Generator loss oscillated; fixed noise grids showed blobs first and edges only later on.",
}


def _set_env(**values):
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return old


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """One real course folder (AE, VAE and MNIST GAN runs of one epoch on the offline digits at full
    data, and REPORT.md), and the checkpoint of a second AE trained for two epochs (for swapping)."""
    root = tmp_path_factory.mktemp("course")
    old = _set_env(LABKIT_SMOKE=None, LABKIT_OFFLINE="1", LABKIT_RUNS=str(root / "runs"))
    try:
        ae.run_ae(ae.AESettings(epochs=1), device="cpu", progress=False)
        vae.run_vae(vae.VAESettings(epochs=1), device="cpu", progress=False)
        run_gan(GANSettings(epochs=1), device="cpu", progress=False)
        run_cgan(CGANSettings(epochs=1), device="cpu", progress=False)
        run_cvae(CVAESettings(epochs=1), device="cpu", progress=False)
        run_vqvae(VQVAESettings(epochs=1), device="cpu", progress=False)
        report.build_report(root / "runs")
        other = root / "other-ae"
        cfg = ae.AESettings(epochs=2)
        data = load_mnist("cpu", verbose=False)
        torch.manual_seed(5)
        fit(
            cfg.training("cpu"),
            data.train_x,
            data.test_x,
            epochs=2,
            batch_size=32,
            progress=False,
            checkpoint=other,
            config=asdict(cfg),
        )
    finally:
        _set_env(**old)
    return root


def _student_folder(course: Path, tmp: Path, name: str, discussion: str | None) -> Path:
    folder = tmp / "work" / name
    shutil.copytree(course / "runs", folder / "runs")
    shutil.copytree(course / "REPORT_files", folder / "REPORT_files")
    text = (course / "REPORT.md").read_text()
    if discussion is not None:
        for key in PARTS:
            start, end = report.discussion_markers(key)
            text = text.replace(f"{start}\n{report.PLACEHOLDER}\n{end}", f"{start}\n{discussion} ({key})\n{end}")
    (folder / "REPORT.md").write_text(text)
    return folder


def _submit(folder: Path, out: Path) -> Path:
    path, _ = submit.build_submission(folder / "runs", out, allow_smoke=False)
    return path


def _rewrite_member(archive: Path, name: str, data: bytes, fix_manifest: bool = True) -> None:
    """Replace one member of a submission; with ``fix_manifest`` also its hash (a careful cheat)."""
    with zipfile.ZipFile(archive) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[name] = data
    if fix_manifest:
        manifest = json.loads(members[submit.MANIFEST])
        manifest["files"][name] = submit.sha256(data)
        members[submit.MANIFEST] = json.dumps(manifest).encode()
    with zipfile.ZipFile(archive, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)


class MakesAFolder:
    """A pickle that creates a folder when it is loaded: what an unsafe loader would run."""

    target = ""

    def __reduce__(self):
        return (os.mkdir, (self.target,))


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("class")
    inbox = tmp / "submissions"
    inbox.mkdir()
    for name, text in HONEST.items():
        _submit(_student_folder(course, tmp, name, text), inbox / f"{name}.zip")

    dave = _student_folder(course, tmp, "dave", "My model had a remarkably low error, better than everybody.")
    text = (dave / "REPORT.md").read_text()
    mse = report.table_cell(json.loads((course / "runs" / "ae" / "metrics.json").read_text())["final"]["test_mse"])
    (dave / "REPORT.md").write_text(text.replace(f"| test_mse | {mse} |", "| test_mse | 0.001 |", 1))
    _submit(dave, inbox / "dave.zip")

    erin = _student_folder(course, tmp, "erin", "Training was smooth and the codes cluster by digit as hoped.")
    shutil.copy(course / "other-ae" / "checkpoint.pt", erin / "runs" / "ae" / "checkpoint.pt")
    _submit(erin, inbox / "erin.zip")

    copied = "We think the KL term acts as a regulariser that pulls every code towards the prior mean."
    for name in ("frank", "grace"):
        _submit(_student_folder(course, tmp, name, copied), inbox / f"{name}.zip")

    shutil.copy(inbox / "alice.zip", inbox / "mallory.zip")
    with zipfile.ZipFile(inbox / "mallory.zip", "a") as z:
        z.writestr("../escaped.txt", "written outside the grader's folder")

    whole = (inbox / "alice.zip").read_bytes()
    (inbox / "trent.zip").write_bytes(whole[: len(whole) // 2])

    evil = tmp / "created-by-a-pickle"
    MakesAFolder.target = str(evil)
    shutil.copy(inbox / "alice.zip", inbox / "oscar.zip")
    _rewrite_member(inbox / "oscar.zip", "runs/ae/weights.pt", pickle.dumps({"modules": MakesAFolder()}, protocol=2))
    oscar_report = zipfile.ZipFile(inbox / "oscar.zip").read("REPORT.md").decode()
    _rewrite_member(
        inbox / "oscar.zip",
        "REPORT.md",
        oscar_report.replace(
            HONEST["alice"],
            "Oscar's own words on autoencoders: a bottleneck forces compression, the decoder learns a prior shape.",
        ).encode(),
    )

    out = tmp / "grades"
    book, class_report = grade.grade(inbox, out, reference=course / "runs")
    rows = {r["student"]: r for r in csv.DictReader(open(book))}
    return {"rows": rows, "out": out, "tmp": tmp, "evil": evil, "class_report": class_report}


def test_a_submission_holds_the_report_figures_metrics_and_half_precision_weights(course, tmp_path):
    folder = _student_folder(course, tmp_path, "alice", HONEST["alice"])
    path, warnings = submit.build_submission(folder / "runs", tmp_path / "alice.zip")
    names = zipfile.ZipFile(path).namelist()
    assert {
        "manifest.json",
        "REPORT.md",
        "environment.json",
        "runs/ae/metrics.json",
        "runs/ae/weights.pt",
        "runs/gan/weights.pt",
        "REPORT_files/gan/progression.gif",
    } <= set(names)
    assert not [n for n in names if n.endswith("checkpoint.pt")]  # no optimiser state
    weights = torch.load(io.BytesIO(zipfile.ZipFile(path).read("runs/ae/weights.pt")), weights_only=True)
    assert {t.dtype for t in weights["modules"]["model"].values()} == {torch.float16}
    assert warnings == []
    manifest = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    assert set(manifest["files"]) == set(names) - {"manifest.json"}


def test_submit_refuses_smoke_runs_unless_told_and_warns_about_unwritten_discussions(course, tmp_path):
    folder = _student_folder(course, tmp_path, "sam", None)
    record = json.loads((folder / "runs" / "ae" / "metrics.json").read_text())
    record["smoke"] = True
    (folder / "runs" / "ae" / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="ae were made in smoke mode.*--allow-smoke"):
        submit.build_submission(folder / "runs", tmp_path / "sam.zip")
    _, warnings = submit.build_submission(folder / "runs", tmp_path / "sam.zip", allow_smoke=True)
    assert len([w for w in warnings if "is not written yet" in w]) == len(report.PARTS)


def test_progression_gifs_are_trimmed_to_a_few_frames(tmp_path):
    from PIL import Image

    frames = [Image.new("RGB", (40, 40), (i * 6, 0, 0)) for i in range(40)]
    frames[0].save(tmp_path / "p.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    trimmed = Image.open(io.BytesIO(submit.trimmed_gif(tmp_path / "p.gif")))
    assert trimmed.n_frames == submit.GIF_FRAMES


def test_honest_submissions_are_graded_without_flags_and_their_numbers_verified(graded):
    for name in HONEST:
        row = graded["rows"][name]
        assert row["status"] == "graded" and row["flags"] == "", row["flags"]
        verified = set(row["verified"].split("; "))
        assert {"ae test_mse", "vae test_neg_elbo_nats", "gan fid_classifier"} <= verified
        assert {"cvae test_neg_elbo_nats", "vqvae test_mse", "cgan fid_classifier, conditional_accuracy"} <= verified
        assert row["ae AE test MSE per pixel"] == "present" and row["compare measured comparison table"] == "missing"
        assert float(row["ae_test_mse"]) > 0 and int(row["words_ae"]) > 10


def test_a_number_edited_in_the_report_is_flagged(graded):
    flags = graded["rows"]["dave"]["flags"]
    assert "REPORT.md says ae test_mse = 0.001 but its metrics.json says" in flags and "edited by hand" in flags


def test_a_number_written_another_way_is_the_same_number_and_not_flagged(tmp_path):
    """The report writes 232.0 as "232"; a student's "232.0" is the same number, not an edit. Compared as text,
    it was flagged as edited by hand (a smoke-mode Fréchet distance of 464.0, halved, hit it)."""
    runs = {"diffusion-cond": {"final": {"fid_classifier": 232.0, "conditional_accuracy": 0.5}}}
    section = "### Run `diffusion-cond`: diffusion, 1 epochs\n\nMeasured:\n\n| metric | value |\n|---|---|\n"
    for written, flagged in (("232", False), ("232.0", False), ("2.32e2", False), ("231", True), ("nan", True)):
        (tmp_path / "REPORT.md").write_text(
            section + f"| fid_classifier | {written} |\n| conditional_accuracy | 0.5 |\n"
        )
        flags = grade.report_flags(tmp_path, runs)
        assert bool(flags) == flagged, (written, flags)
        if flagged:
            assert flags == [
                f"REPORT.md says diffusion-cond fid_classifier = {written} but its metrics.json says 232 "
                "(edited by hand?)"
            ]


def test_a_swapped_checkpoint_does_not_reproduce_its_metrics(graded):
    flags = graded["rows"]["erin"]["flags"]
    assert "ae: its weights give test_mse = " in flags and "not the weights that made these numbers" in flags
    assert "vae" not in flags and "gan" not in flags


def test_a_conditional_accuracy_its_weights_do_not_give_is_flagged(course, tmp_path):
    """A cGAN after one epoch draws the asked-for digit far less often than 0.99: a metrics.json (and
    REPORT.md) claiming 0.99 is caught by running the generator again."""
    folder = _student_folder(course, tmp_path, "heidi", "My conditional GAN draws the digit it is asked for.")
    metrics_path = folder / "runs" / "cgan" / "metrics.json"
    record = json.loads(metrics_path.read_text())
    true_value = record["final"]["conditional_accuracy"]
    assert true_value < 0.8
    record["final"]["conditional_accuracy"] = 0.99
    metrics_path.write_text(json.dumps(record))
    text = (folder / "REPORT.md").read_text()
    (folder / "REPORT.md").write_text(
        text.replace(f"| conditional_accuracy | {report.table_cell(true_value)} |", "| conditional_accuracy | 0.99 |")
    )
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _submit(folder, inbox / "heidi.zip")
    book, _ = grade.grade(inbox, tmp_path / "grades", reference=course / "runs")
    row = next(csv.DictReader(open(book)))
    assert "cgan: its weights give conditional_accuracy = " in row["flags"] and "says 0.99" in row["flags"]
    assert "REPORT.md says cgan" not in row["flags"]  # the report was edited consistently: only the weights tell
    assert "cgan fid_classifier" not in row["verified"] and "ae test_mse" in row["verified"]


@pytest.mark.parametrize(
    "model, make_settings, added",
    [
        ("gan", lambda: GANSettings(epochs=1, ema=0.0), "ema"),  # before the average of G's weights
        ("cgan", lambda: CGANSettings(epochs=1, ema=0.0, d_conditioning="concat"), "d_conditioning"),  # projection
    ],
)
def test_a_gan_run_from_before_a_setting_was_added_is_graded_as_it_trained(
    course, tmp_path, model, make_settings, added
):
    """A GAN run made before the GANs sampled from the average of G's weights has no ``ema`` among its
    settings and no average among its weights; a cGAN run made before its D was told the label by projection has
    no ``d_conditioning`` and the weights of the concat D. The grader rebuilds each as it trained (the values of
    ``labkit.engine.checkpoint.ADDED_SETTINGS``), instead of calling its weights unfit."""
    folder = _student_folder(course, tmp_path, "kim", "My GAN drew digits of every kind after one epoch.")
    shutil.rmtree(folder / "runs" / model)
    old = _set_env(LABKIT_SMOKE=None, LABKIT_OFFLINE="1", LABKIT_RUNS=str(folder / "runs"))
    try:
        RECIPES[model].run(make_settings(), out=folder / "runs" / model, device="cpu", progress=False)
    finally:
        _set_env(**old)
    metrics_path = folder / "runs" / model / "metrics.json"
    record = json.loads(metrics_path.read_text())
    for name in {"ema", added}:
        del record["hyperparameters"][name]  # as such a run wrote it
    metrics_path.write_text(json.dumps(record))
    report.build_report(folder / "runs")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _submit(folder, inbox / "kim.zip")
    book, _ = grade.grade(inbox, tmp_path / "grades", reference=course / "runs")
    row = next(csv.DictReader(open(book)))
    assert f"{model} fid_classifier" in row["verified"] and "do not fit" not in row["flags"], row["flags"]


@pytest.fixture(scope="module")
def diffusion_course(tmp_path_factory):
    """A real conditional diffusion run in smoke mode (a UNet of width 8, one epoch, two Euler steps per
    sample, on the offline digits) and its REPORT.md: the family the grader re-evaluates with ``draw``."""
    root = tmp_path_factory.mktemp("diffusion-course")
    old = _set_env(LABKIT_SMOKE="1", LABKIT_OFFLINE="1", LABKIT_RUNS=str(root / "runs"))
    try:
        cfg = DiffusionSettings(width=8, mults=(1, 2), epochs=1, sample_steps=2, conditional=True)
        run_diffusion(cfg, device="cpu", progress=False)
        report.build_report(root / "runs")
    finally:
        _set_env(**old)
    return root


def test_a_diffusion_run_is_verified_from_its_weights_and_an_edited_frechet_distance_is_flagged(
    diffusion_course, tmp_path
):
    """The grader draws from a submitted diffusion model again, as it does from a GAN (its sampler, its
    seed, the classes in turn), and judges the samples: an honest run's Fréchet distance and conditional
    accuracy are verified, and a metrics.json (and REPORT.md) claiming half its Fréchet distance is caught."""
    record = json.loads((diffusion_course / "runs" / "diffusion-cond" / "metrics.json").read_text())
    asked = {item for part, _, _, item, _ in report.CHECKLIST if part == "diffusion"}
    assert asked <= set(record["final"]) | set(record["figures"])  # the checklist asks for what the recipe records
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    ivan = _student_folder(diffusion_course, tmp_path, "ivan", "Two Euler steps drew blurry digits of a few kinds.")
    submit.build_submission(ivan / "runs", inbox / "ivan.zip", allow_smoke=True)

    judy = _student_folder(diffusion_course, tmp_path, "judy", "My flow matching model drew sharp digits of all kinds.")
    true_value = record["final"]["fid_classifier"]
    record["final"]["fid_classifier"] = claimed = round(true_value / 2, 1)
    (judy / "runs" / "diffusion-cond" / "metrics.json").write_text(json.dumps(record))
    text = (judy / "REPORT.md").read_text()
    edited = text.replace(f"| fid_classifier | {report.table_cell(true_value)} |", f"| fid_classifier | {claimed} |")
    assert edited != text
    (judy / "REPORT.md").write_text(edited)
    submit.build_submission(judy / "runs", inbox / "judy.zip", allow_smoke=True)

    book, _ = grade.grade(inbox, tmp_path / "grades")
    rows = {r["student"]: r for r in csv.DictReader(open(book))}
    assert rows["ivan"]["verified"] == "diffusion-cond fid_classifier, conditional_accuracy"
    assert "its weights" not in rows["ivan"]["flags"] and "diffusion-cond: a smoke-mode run" in rows["ivan"]["flags"]
    assert rows["ivan"]["diffusion conditional diffusion samples, one row per digit"] == "present"
    flags = rows["judy"]["flags"]
    assert "diffusion-cond: its weights give fid_classifier = " in flags
    assert f"its metrics.json says {report.format_value(claimed)} (beyond 15%" in flags
    assert "REPORT.md says" not in flags and rows["judy"]["verified"] == ""


def test_runs_that_draw_are_judged_on_as_many_samples_as_their_recipes_judged():
    from labkit.diffusion.recipe import N_SAMPLES
    from labkit.gan.recipe import N_DIVERSITY

    assert grade.SAMPLES_JUDGED == N_DIVERSITY == N_SAMPLES


def test_two_students_with_the_same_discussion_are_both_flagged(graded):
    for a, b in (("frank", "grace"), ("grace", "frank")):
        assert f"discussion of vae nearly the same as {b}'s (similarity 1.00)" in graded["rows"][a]["flags"]
    assert "nearly the same" not in graded["rows"]["alice"]["flags"]


def test_hostile_and_broken_archives_are_refused_and_the_rest_of_the_class_is_graded(graded):
    rows = graded["rows"]
    assert rows["mallory"]["status"].startswith("refused: refused to unpack: member '../escaped.txt'")
    assert not (graded["out"] / "escaped.txt").exists() and not (graded["out"] / "submissions" / "escaped.txt").exists()
    assert not list(graded["tmp"].rglob("escaped.txt"))
    assert rows["trent"]["status"].startswith("refused: not a zip archive, or a damaged one")
    assert len(rows) == 10 and sum(r["status"] == "graded" for r in rows.values()) == 8


def test_a_pickled_checkpoint_is_refused_without_running_it(graded):
    flags = graded["rows"]["oscar"]["flags"]
    assert "ae: weights.pt refused" in flags and "only loads plain weights" in flags
    assert not graded["evil"].exists()


def test_the_class_report_shows_the_distributions_and_lists_flags_and_refusals(graded):
    text = graded["class_report"].read_text()
    assert "10 submission(s): 8 graded, 2 refused" in text
    assert "![ae test_mse](class_report_files/ae_test_mse.png)" in text
    assert (graded["out"] / "class_report_files" / "ae_test_mse.png").is_file()
    assert "reference run" in text and "- **dave**:" in text and "- **mallory**:" in text
    assert "- **alice**" not in text


@pytest.mark.parametrize("member, reason", [("../x", "'..'"), ("/etc/x", "absolute path"), ("a/../../x", "'..'")])
def test_unpack_refuses_members_that_point_outside(tmp_path, member, reason):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(member, "x")
    with pytest.raises(submit.Refused, match=reason):
        submit.unpack(archive, tmp_path / "dest")


def test_unpack_refuses_links_and_stops_a_zip_bomb(tmp_path, monkeypatch):
    link = zipfile.ZipInfo("link")
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as z:
        z.writestr(link, "/etc/passwd")
    with pytest.raises(submit.Refused, match="symbolic link"):
        submit.unpack(tmp_path / "link.zip", tmp_path / "d1")
    monkeypatch.setattr(submit, "MAX_MEMBER_BYTES", 1 << 20)
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.bin", b"\0" * (5 << 20))  # 5 MB of zeros, a few kB packed
    assert (tmp_path / "bomb.zip").stat().st_size < 50_000
    with pytest.raises(submit.Refused, match="expands past the size limit"):
        submit.unpack(tmp_path / "bomb.zip", tmp_path / "d2")
    assert sum(p.stat().st_size for p in (tmp_path / "d2").rglob("*") if p.is_file()) <= 2 << 20


def test_implausible_values_are_flagged():
    record = {
        "epochs": 3,
        "history": [{}, {}],
        "hyperparameters": {"epochs": 5},
        "dataset": {"name": "MNIST"},
        "final": {
            "class_coverage": 12,
            "fid_classifier": 0.5,
            "test_mse": -1.0,
            "vae_test_neg_elbo_nats": 90.0,
            "vae_iwae_k64_nats": 95.0,
        },
    }
    flags = grade.plausibility_flags({"gan": record}, {_data_key(record): 3.3})
    text = "; ".join(flags)
    assert "history holds 2" in text and "trained 3 of the 5 epochs" in text
    assert "class_coverage = 12, but there are 10 digits" in text and "below the real-data floor" in text
    assert "is below the importance-weighted bound" in text and "test_mse = -1.0 is negative" in text


def test_settings_other_than_the_course_fixed_are_flagged():
    runs = {"ae": {"hyperparameters": {"epochs": 5, "lr": 0.001}, "smoke": True}}
    flags = grade.settings_flags(runs, {"ae": {"epochs": 20, "lr": 0.001}})
    assert flags == ["ae: a smoke-mode run (reduced epochs and data)", "ae: epochs = 5, the course fixed 20"]


def test_a_submitted_folder_with_a_link_is_refused_and_nothing_is_read_through_it(tmp_path):
    folder = tmp_path / "eve"
    (folder / "runs" / "ae").mkdir(parents=True)
    (folder / "runs" / "ae" / "metrics.json").symlink_to("/etc/passwd")
    with pytest.raises(submit.Refused, match="symbolic link"):
        submit.open_submission(folder, tmp_path / "work")
