"""Shared fixtures: isolated settings for every test and real databases per backend.

Service tests need the local PostgreSQL and MariaDB. Under ``CI=true`` an unreachable
server fails the test (CI must not pass by skipping); elsewhere it skips with a message.
Each service test gets a database of its own, created and dropped around it.

``local_s3`` (opt-in) is a real S3 endpoint over HTTP (moto's server, one per session,
started on first use) holding the two empty buckets of the demo inventory's ``files`` store,
with ``LIFECYCLE_S3_ENDPOINT`` and dummy ``AWS_*`` credentials set for the test (and so for
any subprocess that inherits the environment).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text
from sqlalchemy.engine import make_url

from config.settings import get_settings
from core.engines import make_engine

if TYPE_CHECKING:
    from demo.s3_server import LocalS3

# Property tests judge what is generated, not how fast: on a shared, busy machine example
# generation can trip Hypothesis' speed health check, so the suite ignores it.
hypothesis_settings.register_profile("suite", suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("suite")


TEST_MASTER_KEY = base64.b64encode(b"k" * 32).decode()
PG_ADMIN_URL = os.environ.get("LIFECYCLE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN_URL = os.environ.get("LIFECYCLE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
BACKENDS = ["sqlite", "postgresql", "mariadb"]


@pytest.fixture(scope="session")
def demo_provider_env() -> Iterator[dict[str, str]]:
    """The demo inventory's provider (store ``newsletter``) as a local stub holding nothing.

    The demo configuration (the default one) declares a provider reached over signed HTTPS;
    every test's requests on it reach this stub, which finds no data for anyone. Tests of
    the provider itself start their own stub, with records (``demo.provider``).
    """
    from config.loader import load_config
    from config.settings import PROJECT_ROOT
    from demo.provider import LocalProvider, provider_store

    store = provider_store(load_config(PROJECT_ROOT / "config" / "demo"))
    if store is None:
        yield {}
        return
    with LocalProvider(store, []) as provider:
        yield provider.env()


@pytest.fixture(autouse=True)
def isolated_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_provider_env: dict[str, str]
) -> Iterator[Path]:
    """Every test gets its own data folder and a fixed test key; nothing touches var/; the
    demo's provider variables point at an empty stub (``demo_provider_env``)."""
    data_dir = tmp_path / "data"
    for name, value in demo_provider_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LIFECYCLE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LIFECYCLE_MASTER_KEY", TEST_MASTER_KEY)
    # No shared local Prefect API (ops.local_api) outliving a test, in it or its subprocesses:
    # commands without PREFECT_API_URL get Prefect's temporary server, as tests expect.
    monkeypatch.setenv("LIFECYCLE_LOCAL_API_IDLE_MINUTES", "0")
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
            conn.execute(text(f"CREATE DATABASE {conn.dialect.identifier_preparer.quote(name)}"))
    except Exception as err:
        admin.dispose()
        _unreachable(backend, err)
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        try:
            with admin.connect() as conn:
                force = " WITH (FORCE)" if backend == "postgresql" else ""
                quoted = conn.dialect.identifier_preparer.quote(name)
                conn.execute(text(f"DROP DATABASE IF EXISTS {quoted}{force}"))
        finally:
            # Close the admin connections even if the drop failed: a pymysql connection
            # left to the garbage collector warns in __del__, an error under -W error.
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


@pytest.fixture(scope="session")
def _local_s3_server() -> Iterator[LocalS3]:
    """One moto S3 server for the session, started when a test first asks for it."""
    from demo.s3_server import LocalS3

    with LocalS3() as server:
        yield server


@pytest.fixture
def local_s3(_local_s3_server: LocalS3, monkeypatch: pytest.MonkeyPatch) -> LocalS3:
    """The session's local S3 with the demo buckets empty; its variables set for this test.

    moto's state is process-wide: another test's ``mock_aws`` or ``LocalS3()`` may have reset
    it, and an earlier test may have left objects (locked ones cannot be deleted). So every
    test starts from a reset server with the archive (Object Lock) and the versioned
    attachments bucket created again.
    """
    from demo.seed_s3 import ARCHIVE_BUCKET, TICKETS_BUCKET

    server = _local_s3_server
    server.reset()
    client = server.client()
    for bucket, lock in ((TICKETS_BUCKET, False), (ARCHIVE_BUCKET, True)):
        client.create_bucket(
            Bucket=bucket,
            CreateBucketConfiguration={"LocationConstraint": server.region},  # type: ignore[typeddict-item]
            ObjectLockEnabledForBucket=lock,
        )
        if not lock:  # Object Lock turns versioning on by itself
            client.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
            )
    client.close()
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    return server


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A throwaway Prefect server and database, isolated from the user's Prefect home: one
    for the whole session (it takes seconds to start), for every folder's flow tests."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    # The server's usage statistics race its own SQLite writes ("database is locked").
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield
