"""``python -m ops.prefect_sqlite server start ...``: ``prefect``, with SQLite's secure_delete on.

Prefect's server keeps flow runs, parameters, logs, events and run input in its own database,
SQLite in the state folder by default (``ops.serve_env``). Deleted rows must not stay
readable in the file (design principle 4; Prefect's own retention and our parameter
overwrites delete and rewrite rows there), so every SQLite connection the server opens runs
``PRAGMA secure_delete = ON``: SQLite then zeroes deleted content and freed pages.

Prefect 3.9 offers no setting for it: its SQLite engine takes only a timeout as connect
arguments and issues its own fixed PRAGMAs on connect
(``prefect.server.database.configurations.AioSqliteConfiguration.setup_sqlite``). So this
module registers one SQLAlchemy ``connect`` listener on the ``Pool`` class (``install``),
which applies to every engine the process creates, then hands the command line to
Prefect's own CLI. ``prefect server start`` runs uvicorn in this same process (one worker),
so its engine, migrations included, gets the listener; PostgreSQL connections are left
alone. ``lifecycle server start`` starts the server through this module.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event
from sqlalchemy.pool import Pool


def _is_sqlite(dbapi_connection: Any) -> bool:
    if isinstance(dbapi_connection, sqlite3.Connection):
        return True
    try:
        from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection
    except ImportError:  # aiosqlite is not installed: no async SQLite connection exists
        return False
    return isinstance(dbapi_connection, AsyncAdapt_aiosqlite_connection)


def secure_delete_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """``PRAGMA secure_delete = ON`` on a new SQLite connection (others are left alone)."""
    if not _is_sqlite(dbapi_connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA secure_delete = ON")
    finally:
        cursor.close()


def install() -> None:
    """Turn secure_delete on for every SQLite connection any engine of this process opens."""
    if not event.contains(Pool, "connect", secure_delete_on_connect):
        event.listen(Pool, "connect", secure_delete_on_connect)


def uninstall() -> None:
    """Undo ``install`` (tests)."""
    if event.contains(Pool, "connect", secure_delete_on_connect):
        event.remove(Pool, "connect", secure_delete_on_connect)


def main(argv: Sequence[str] | None = None) -> int:
    """Run Prefect's CLI with ``argv`` (default: this process's arguments) after ``install``.

    Prefect's entry point reads ``sys.argv`` and ends with SystemExit, as ``prefect`` does.
    """
    install()
    from prefect.cli import app

    if argv is not None:
        sys.argv = ["prefect", *argv]
    app()
    return 0


if __name__ == "__main__":
    sys.exit(main())
