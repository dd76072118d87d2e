"""The settings of several workers, the pool's run limit and the server's PostgreSQL
(``ops.serve_env``), without starting anything; the stack itself runs in
``tests.ops.test_several_workers``."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from ops import serve_env as se
from ops.server import WORKER, stop, worker_proc, worker_procs


@pytest.mark.parametrize(("raw", "count"), [("", 1), ("1", 1), (" 3 ", 3), ("32", 32)])
def test_worker_count(raw: str, count: int) -> None:
    assert se.worker_count({se.WORKERS_ENV: raw}) == count
    assert se.worker_count({}) == 1


@pytest.mark.parametrize("raw", ["0", "33", "-1", "two", "1.5"])
def test_worker_count_out_of_range_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="LIFECYCLE_SERVE_WORKERS") as caught:
        se.worker_count({se.WORKERS_ENV: raw})
    assert "1 to 32" in str(caught.value)


def test_run_limit() -> None:
    assert se.run_limit({}) is None
    assert se.run_limit({se.RUN_LIMIT_ENV: "6"}) == 6
    with pytest.raises(ConfigError, match="LIFECYCLE_SERVE_RUN_LIMIT"):
        se.run_limit({se.RUN_LIMIT_ENV: "0"})


def test_store_limit() -> None:
    assert se.store_limit({}) is None
    assert se.store_limit({se.STORE_LIMIT_ENV: "2"}) == 2
    with pytest.raises(ConfigError, match="LIFECYCLE_SERVE_STORE_LIMIT"):
        se.store_limit({se.STORE_LIMIT_ENV: "many"})


def test_workers_have_distinct_names_pid_files_and_markers(tmp_path: Path) -> None:
    assert worker_proc(1) == WORKER  # the single worker keeps its files and name
    assert (WORKER.name, se.worker_name(1)) == ("worker", "lifecycle-local-worker")
    assert (se.worker_proc(3), se.worker_name(3)) == ("worker-3", "lifecycle-local-worker-3")
    assert worker_proc(2).marker[-2:] == ("--name", "lifecycle-local-worker-2")
    for name in ("worker.pid", "worker-3.pid", "worker-x.pid", "worker-03.pid", "server.pid"):
        (tmp_path / name).write_text("999999999\n")
    assert se.recorded_workers(se.ServePaths(tmp_path)) == [1, 3]
    env = {se.SERVE_DIR_ENV: str(tmp_path), se.WORKERS_ENV: "2"}
    assert [p.name for p in worker_procs(env)] == ["worker", "worker-2", "worker-3"]
    assert stop(env) == {}  # stale pid files: nothing signalled, the files removed
    assert se.recorded_workers(se.ServePaths(tmp_path)) == []


def test_serve_database_is_postgresql_with_asyncpg(tmp_path: Path) -> None:
    short = "postgresql://prefect:pw@db.example.com:5432/prefect"
    assert se.database_url({se.DATABASE_ENV: short}) == (
        "postgresql+asyncpg://prefect:pw@db.example.com:5432/prefect"
    )
    assert se.database_url({}) is None
    full = "postgresql+asyncpg://h/db"
    assert se.database_url({se.PREFECT_DATABASE_URL: full}) == full
    with pytest.raises(ConfigError, match="not both"):
        se.database_url({se.DATABASE_ENV: short, se.PREFECT_DATABASE_URL: full})
    for wrong in ("mysql://h/db", "sqlite:///x.db", "h/db"):
        with pytest.raises(ConfigError, match="LIFECYCLE_SERVE_DATABASE"):
            se.database_url({se.DATABASE_ENV: wrong})
    paths = se.ServePaths(tmp_path)
    label = se.database_label({se.DATABASE_ENV: short}, paths)
    assert "pw" not in label and "db.example.com:5432/prefect" in label
    assert se.database_label({}, paths).startswith("sqlite")


def test_server_gets_the_database_and_workers_their_polling(tmp_path: Path) -> None:
    paths = se.ServePaths(tmp_path)
    creds = se.Credentials("admin", "secret", tmp_path / "credentials")
    environ = {
        se.DATABASE_ENV: "postgresql://prefect@127.0.0.1/prefect",
        se.WORKERS_ENV: "3",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_API_KEY": "stray",
    }
    server = se.server_env(environ, paths, 4200, creds)
    assert server[se.PREFECT_DATABASE_URL] == "postgresql+asyncpg://prefect@127.0.0.1/prefect"
    assert se.DATABASE_ENV not in server and se.WORKERS_ENV not in server
    client = se.client_env(environ, paths, 4200, creds)
    assert client["PREFECT_WORKER_QUERY_SECONDS"] == "1"
    assert "PREFECT_API_KEY" not in client and se.PREFECT_DATABASE_URL not in client
    assert se.WORKERS_ENV not in client
