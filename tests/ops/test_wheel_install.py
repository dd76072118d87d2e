"""Installed, not only from the checkout: a wheel built from the repository, installed into a
fresh venv outside it, runs ``lifecycle demo`` in an empty working directory.

The wheel is built and installed once per session with uv (a dev dependency, in the venv
beside this interpreter, as the Makefile installs it), pinned to uv.lock's versions
(``uv export``); uv's cache makes the install take seconds. The demo writes its data to
``var/`` in the working directory and nothing inside the venv (Python's own ``__pycache__``
aside). ``lifecycle server start`` needs the checkout's prefect.yaml and says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT
from ops import serve_env as se
from ops.server import Instance, ServeError, _require_checkout

# What the caller may have set that would point the installed product at the checkout's
# data or code, or at another Prefect or S3: not passed to the installed `lifecycle`.
_DROP_PREFIXES = ("LIFECYCLE_", "PREFECT_", "AWS_", "UV_")
_DROP = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


def _uv() -> str:
    """uv: beside this interpreter (the Makefile installs it into .venv), else on PATH."""
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.is_file() else shutil.which("uv")
    if found is None:
        pytest.fail("uv is not installed: run `make venv` (it is a dev dependency)")
    return found


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args[:3]} failed:\n{result.stdout[-3000:]}{result.stderr}"
    return result.stdout


@dataclass(frozen=True)
class Installed:
    venv: Path
    site_packages: Path

    @property
    def lifecycle(self) -> str:
        return str(self.venv / "bin" / "lifecycle")


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel built from the repository, installed into a fresh venv outside it."""
    uv, root = _uv(), tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") and k != "VIRTUAL_ENV"}
    env["UV_NO_PROGRESS"] = "1"
    dist, venv, reqs = root / "dist", root / "venv", root / "requirements.txt"
    _run([uv, "build", "--wheel", "--out-dir", str(dist), str(PROJECT_ROOT)], root, env)
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels
    lock = [uv, "export", "--frozen", "--no-hashes", "--no-dev", "--no-emit-project"]
    _run([*lock, "--project", str(PROJECT_ROOT), "--output-file", str(reqs)], root, env)
    _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], root, env)
    python = str(venv / "bin" / "python")
    _run([uv, "pip", "install", "--python", python, "-c", str(reqs), str(wheels[0])], root, env)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([python, "-c", purelib], root).strip())
    assert (site / "config" / "demo" / "policy.yaml").is_file()
    assert not site.is_relative_to(PROJECT_ROOT)
    return Installed(venv=venv, site_packages=site)


def _clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES) and k not in _DROP
    }
    env["PREFECT_HOME"] = str(home)  # the temporary server's database: not ~/.prefect
    # No shared local API left running after the test (ops.api_target): the temporary one.
    env["LIFECYCLE_LOCAL_API_IDLE_MINUTES"] = "0"
    return env


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` (``__pycache__`` aside): its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_installed_wheel_runs_the_demo_outside_the_checkout(
    installed: Installed, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    before = _files(installed.venv)
    out = _run(
        [installed.lifecycle, "demo"], work, _clean_env(tmp_path / "prefect-home"), timeout=840
    )
    assert "ledger verified" in out and "intact" in out, out[-3000:]
    var = work / "var"
    for name in ("audit.db", "crm.db", "master.key"):
        assert (var / name).is_file(), name
    assert (var / "anchors" / "demo-checkpoint.json").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["var"]  # nothing else in the cwd
    assert _files(installed.venv) == before  # nothing written inside the venv
    assert not (installed.site_packages / "var").exists()


@pytest.mark.slow
def test_the_installed_server_start_asks_for_the_checkout(
    installed: Installed, tmp_path: Path
) -> None:
    result = subprocess.run(
        [installed.lifecycle, "server", "start"],
        cwd=tmp_path,
        env=_clean_env(tmp_path / "prefect-home"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "needs the project's checkout" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "var").exists()  # refused before creating anything


def test_start_needs_prefect_yaml_beside_the_code(tmp_path: Path) -> None:
    paths = se.ServePaths(tmp_path / "serve")
    _require_checkout(Instance(paths=paths, port=1, s3_port=2, repo=PROJECT_ROOT))
    with pytest.raises(ServeError, match="needs the project's checkout"):
        _require_checkout(Instance(paths=paths, port=1, s3_port=2, repo=tmp_path))
    assert not paths.root.exists()


def test_every_top_level_package_is_in_the_wheel() -> None:
    # A package missing from the list installs without it: the checkout works, the
    # installed product fails on the first import (incidents/ was once left out).
    import tomllib

    listed = set(
        tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
            "targets"
        ]["wheel"]["packages"]
    )
    found = {
        p.parent.name
        for p in PROJECT_ROOT.glob("*/__init__.py")
        if p.parent.name not in {"tests", "benchmarks"}
    }
    assert found - listed == set()
