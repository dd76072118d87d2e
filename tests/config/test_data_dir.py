"""The data folder: ``var/`` in the working directory unless ``LIFECYCLE_DATA_DIR`` says
otherwise, never inside the installed code; and every path derived from it follows."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import interpolation_env
from config.settings import PROJECT_ROOT, Settings, data_dir_from, get_settings
from ops import serve_env as se
from ops.intake.signing import SECRET_ENV, SECRET_FILE
from ops.server import secret_location


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory of its own, without ``LIFECYCLE_DATA_DIR``."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("LIFECYCLE_DATA_DIR", raising=False)
    monkeypatch.delenv("LIFECYCLE_KEY_FILE", raising=False)
    get_settings.cache_clear()
    return folder


def test_default_is_var_in_the_working_directory(cwd: Path) -> None:
    settings = get_settings()
    assert settings.data_dir == cwd / "var"
    assert settings.data_dir.is_absolute()
    assert not settings.data_dir.is_relative_to(PROJECT_ROOT)  # not next to the code
    assert settings.resolved_audit_url() == f"sqlite:///{cwd / 'var' / 'audit.db'}"
    assert settings.resolved_key_file() == cwd / "var" / "master.key"
    assert data_dir_from({}) == cwd.resolve() / "var"


def test_default_is_taken_when_the_settings_are_read(
    cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = cwd / "elsewhere"
    other.mkdir()
    first = Settings()
    monkeypatch.chdir(other)
    assert Settings().data_dir == other / "var"
    assert first.data_dir == cwd / "var"  # a settings object keeps the folder it was made with


def test_the_variable_wins(cwd: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("LIFECYCLE_DATA_DIR", str(data))
    assert Settings().data_dir == data
    assert Settings().resolved_audit_url() == f"sqlite:///{data / 'audit.db'}"
    assert data_dir_from({"LIFECYCLE_DATA_DIR": str(data)}) == data.resolve()


def test_home_is_expanded_and_empty_means_the_default(
    cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFECYCLE_DATA_DIR", "~/lc-data")
    assert Settings().data_dir == Path.home() / "lc-data"
    assert data_dir_from({"LIFECYCLE_DATA_DIR": "~/lc-data"}) == (Path.home() / "lc-data").resolve()
    monkeypatch.setenv("LIFECYCLE_DATA_DIR", " ")
    assert Settings().data_dir == cwd / "var"
    assert data_dir_from({"LIFECYCLE_DATA_DIR": ""}) == cwd.resolve() / "var"


def test_config_interpolation_uses_the_settings_folder(
    cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert interpolation_env()["LIFECYCLE_DATA_DIR"] == str(cwd / "var")
    monkeypatch.setenv("LIFECYCLE_DATA_DIR", "~/lc-data")
    get_settings.cache_clear()
    # Expanded as the settings have it: the demo's SQLite URL names the same folder.
    assert interpolation_env()["LIFECYCLE_DATA_DIR"] == str(Path.home() / "lc-data")


def test_service_paths_follow_the_data_folder(cwd: Path, tmp_path: Path) -> None:
    var = cwd.resolve() / "var"
    assert se.serve_paths({}).root == var / "prefect-serve"
    assert secret_location({}) == (str(var / SECRET_FILE), var / SECRET_FILE)
    data = tmp_path / "data"
    environ = {"LIFECYCLE_DATA_DIR": str(data)}
    assert se.serve_paths(environ).root == data.resolve() / "prefect-serve"
    assert secret_location(environ)[1] == data.resolve() / SECRET_FILE
    assert secret_location({**environ, SECRET_ENV: "s"}) == (SECRET_ENV, None)
    serve_dir = tmp_path / "serve"
    assert se.serve_paths({**environ, se.SERVE_DIR_ENV: str(serve_dir)}).root == serve_dir
