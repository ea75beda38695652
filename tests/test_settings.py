"""LABKIT_SMOKE and LABKIT_DATA: the environment interfaces other tools rely on."""

import pytest

from labkit.engine import environment


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", " Yes "])
def test_smoke_mode_on(monkeypatch, value):
    monkeypatch.setenv("LABKIT_SMOKE", value)
    assert environment.smoke_mode() is True
    assert environment.pick(full=20, smoke=2) == 2


@pytest.mark.parametrize("value", ["0", "", "false", "no"])
def test_smoke_mode_off(monkeypatch, value):
    monkeypatch.setenv("LABKIT_SMOKE", value)
    assert environment.smoke_mode() is False
    assert environment.pick(full=20, smoke=2) == 20


def test_smoke_mode_unset_is_off():
    assert environment.smoke_mode() is False


def test_smoke_mode_typo_is_an_error(monkeypatch):
    monkeypatch.setenv("LABKIT_SMOKE", "smoke")
    with pytest.raises(ValueError, match="LABKIT_SMOKE='smoke'"):
        environment.smoke_mode()


def test_data_root_follows_labkit_data(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    assert environment.data_root() == tmp_path


def test_data_root_missing_folder_names_it(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("LABKIT_DATA", str(missing))
    with pytest.raises(FileNotFoundError, match="nowhere.*mkdir"):
        environment.data_root()


@pytest.fixture
def no_platform(monkeypatch):
    for name in ("LABKIT_RUNS", "KAGGLE_KERNEL_RUN_TYPE", "COLAB_RELEASE_TAG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(__import__("sys").modules, "google.colab", raising=False)


def test_runs_go_to_kaggles_working_folder_on_kaggle(no_platform, monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setattr(environment, "KAGGLE_WORKING", tmp_path)
    assert environment.runs_root() == tmp_path / "runs"


def test_runs_go_to_google_drive_on_colab_when_it_is_mounted_and_warn_when_not(no_platform, monkeypatch, tmp_path):
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab")
    monkeypatch.setattr(environment, "COLAB_DRIVE", tmp_path / "MyDrive")
    path, why = environment.runs_location()
    assert "LOST when the runtime disconnects" in why and "drive.mount" in why
    (tmp_path / "MyDrive").mkdir()
    path, why = environment.runs_location()
    assert path == tmp_path / "MyDrive" / "labkit" / "runs" and "Google Drive" in why


def test_labkit_runs_wins_over_the_platform_and_the_checkout_is_the_default(no_platform, monkeypatch, tmp_path):
    assert environment.runs_root() == environment.project_root() / "runs"
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    monkeypatch.setenv("LABKIT_RUNS", str(tmp_path))
    assert environment.runs_location() == (tmp_path, "LABKIT_RUNS")
