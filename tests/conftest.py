"""Shared fixtures: isolated settings for every test and real databases per backend.

Service tests need the local PostgreSQL and MariaDB. Under ``CI=true`` an unreachable
server fails the test (CI must not pass by skipping); elsewhere it skips with a message.
Each service test gets a database of its own, created and dropped around it.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from config.settings import get_settings
from core.engines import make_engine

TEST_MASTER_KEY = base64.b64encode(b"k" * 32).decode()
PG_ADMIN_URL = os.environ.get("LIFECYCLE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN_URL = os.environ.get("LIFECYCLE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
BACKENDS = ["sqlite", "postgresql", "mariadb"]


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own data folder and a fixed test key; nothing touches var/."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("LIFECYCLE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LIFECYCLE_MASTER_KEY", TEST_MASTER_KEY)
    monkeypatch.delenv("LIFECYCLE_AUDIT_URL", raising=False)
    monkeypatch.delenv("LIFECYCLE_CONFIG_DIR", raising=False)
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


def _unreachable(name: str, err: Exception) -> None:
    message = f"{name} is not reachable ({type(err).__name__}); service tests need it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _fresh_database(backend: str) -> Iterator[str]:
    name = f"lc_t_{uuid.uuid4().hex[:12]}"
    admin_url = PG_ADMIN_URL if backend == "postgresql" else MYSQL_ADMIN_URL
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as err:
        admin.dispose()
        _unreachable(backend, err)
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if backend == "postgresql" else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database, once per backend (SQLite, PostgreSQL, MariaDB)."""
    backend = str(request.param)
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite'}"
        return
    request.applymarker(pytest.mark.service)
    yield from _fresh_database(backend)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL to an empty PostgreSQL database."""
    yield from _fresh_database("postgresql")


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A URL to an empty MariaDB database."""
    yield from _fresh_database("mariadb")
