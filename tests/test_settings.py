"""LABKIT_SMOKE and LABKIT_DATA: the environment interfaces other tools rely on."""
import pytest

from labkit import settings


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", " Yes "])
def test_smoke_mode_on(monkeypatch, value):
    monkeypatch.setenv("LABKIT_SMOKE", value)
    assert settings.smoke_mode() is True
    assert settings.pick(full=20, smoke=2) == 2


@pytest.mark.parametrize("value", ["0", "", "false", "no"])
def test_smoke_mode_off(monkeypatch, value):
    monkeypatch.setenv("LABKIT_SMOKE", value)
    assert settings.smoke_mode() is False
    assert settings.pick(full=20, smoke=2) == 20


def test_smoke_mode_unset_is_off():
    assert settings.smoke_mode() is False


def test_smoke_mode_typo_is_an_error(monkeypatch):
    monkeypatch.setenv("LABKIT_SMOKE", "smoke")
    with pytest.raises(ValueError, match="LABKIT_SMOKE='smoke'"):
        settings.smoke_mode()


def test_data_root_follows_labkit_data(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    assert settings.data_root() == tmp_path


def test_data_root_missing_folder_names_it(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("LABKIT_DATA", str(missing))
    with pytest.raises(FileNotFoundError, match="nowhere.*mkdir"):
        settings.data_root()
