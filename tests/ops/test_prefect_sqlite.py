"""Prefect's own SQLite database runs with ``secure_delete``: what it deletes is zeroed.

The served Prefect server is started through ``ops.prefect_sqlite`` (``se.server_command``),
which registers a connect listener before Prefect's CLI runs. These tests open Prefect's
database the way its server does (``AioSqliteConfiguration.engine()``, with its own PRAGMAs)
and read ``PRAGMA secure_delete`` and the file's bytes through it.

Many SQLite builds (Debian's among them) turn secure_delete on at compile time, which
would make a check of the default meaningless. So a listener registered first turns it
*off*, as a build without that option has it; ``install`` must turn it on again.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.server.database.configurations import AioSqliteConfiguration
from sqlalchemy import event, text
from sqlalchemy.pool import Pool

from ops import prefect_sqlite
from ops import serve_env as se

MARKER = b"flow-run-parameter-marker-7f3a9c"


def _off(dbapi_connection: Any, _record: Any) -> None:
    """What a SQLite built without SQLITE_SECURE_DELETE starts with."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete = OFF")
    cursor.close()


@pytest.fixture
def default_off() -> Iterator[None]:
    event.listen(Pool, "connect", _off)
    try:
        yield
    finally:
        event.remove(Pool, "connect", _off)
        prefect_sqlite.uninstall()


def _through_prefect(db: Path, statements: list[str]) -> list[Any]:
    """Run ``statements`` on Prefect's server engine for ``db``; their scalar results."""

    async def run() -> list[Any]:
        config = AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{db}")
        engine = await config.engine()
        results: list[Any] = []
        try:
            async with engine.connect() as conn:
                for statement in statements:
                    result = await conn.execute(text(statement))
                    results.append(result.scalar() if result.returns_rows else None)
        finally:
            await engine.dispose()  # the last connection closes: the WAL is checkpointed
        return results

    return asyncio.run(run())


def _file_bytes(db: Path) -> bytes:
    wal = db.with_name(db.name + "-wal")
    return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def _write_and_delete(db: Path) -> list[Any]:
    return _through_prefect(
        db,
        [
            "PRAGMA secure_delete",
            "PRAGMA journal_mode",
            "CREATE TABLE parameters (id INTEGER PRIMARY KEY, value TEXT)",
            *(f"INSERT INTO parameters (value) VALUES ('{MARKER.decode()} {n}')" for n in range(5)),
            "INSERT INTO parameters (value) VALUES ('something that stays')",
            f"DELETE FROM parameters WHERE value LIKE '{MARKER.decode()}%'",
        ],
    )


@pytest.mark.usefixtures("default_off")
def test_prefect_database_reads_secure_delete_on_and_keeps_no_deleted_bytes(
    tmp_path: Path,
) -> None:
    prefect_sqlite.install()
    db = tmp_path / "prefect.db"
    results = _write_and_delete(db)
    assert results[:2] == [1, "wal"]  # Prefect's engine, Prefect's WAL, and secure_delete
    data = _file_bytes(db)
    assert MARKER not in data
    assert b"something that stays" in data  # the search finds what is still there


@pytest.mark.usefixtures("default_off")
def test_control_without_the_listener_the_deleted_bytes_stay(tmp_path: Path) -> None:
    db = tmp_path / "prefect.db"
    results = _write_and_delete(db)
    assert results[0] == 0
    assert MARKER in _file_bytes(db)  # what install() prevents


def test_the_listener_leaves_other_databases_alone() -> None:
    plain = sqlite3.connect(":memory:")
    plain.execute("PRAGMA secure_delete = OFF")
    prefect_sqlite.secure_delete_on_connect(plain, None)
    assert plain.execute("PRAGMA secure_delete").fetchone() == (1,)
    plain.close()
    not_sqlite = object()  # a PostgreSQL connection, say: never given a cursor call
    prefect_sqlite.secure_delete_on_connect(not_sqlite, None)


def test_install_is_idempotent_and_undone() -> None:
    prefect_sqlite.install()
    prefect_sqlite.install()
    assert event.contains(Pool, "connect", prefect_sqlite.secure_delete_on_connect)
    prefect_sqlite.uninstall()
    assert not event.contains(Pool, "connect", prefect_sqlite.secure_delete_on_connect)


def test_the_served_server_starts_through_the_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    args = se.server_command(sys.executable, 4300)
    assert args[:3] == [sys.executable, "-m", "ops.prefect_sqlite"]
    assert args[3:] == ["server", "start", "--host", "127.0.0.1", "--port", "4300"]

    seen: list[tuple[list[str], bool]] = []

    def fake_prefect() -> None:
        listening = event.contains(Pool, "connect", prefect_sqlite.secure_delete_on_connect)
        seen.append((sys.argv[1:], listening))

    monkeypatch.setattr("prefect.cli.app", fake_prefect)
    monkeypatch.setattr(sys, "argv", ["x"])
    try:
        assert prefect_sqlite.main(args[3:]) == 0
    finally:
        prefect_sqlite.uninstall()
    assert seen == [(args[3:], True)]  # Prefect's CLI ran with the listener in place
