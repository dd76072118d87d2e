"""SQLAlchemy engines configured the same way for the ledger and the SQL connector.

URLs name a backend; we pick the driver we ship (psycopg 3, PyMySQL) so that
``postgresql://`` and ``mysql://`` URLs work as operators write them. SQLite gets the
pragmas that make it a safe embedded default: WAL for concurrent readers, a busy
timeout instead of "database is locked" errors, ``secure_delete`` so erased values are
overwritten rather than left in free pages, and opt-in ``BEGIN IMMEDIATE`` for writers
that must serialize (the ledger's chain head).

Within one process, ``BEGIN IMMEDIATE`` writers of a SQLite file also queue on a lock of
their own (``writer_lock``), held until the transaction commits or rolls back: threads
writing at once (a request's stores run concurrently) then take turns as soon as the
previous writer is done, instead of each polling SQLite's busy handler, which sleeps up
to 100 ms between tries and let twenty writers take several times as long as one after
another. Other processes still wait on the busy timeout.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from core.errors import ConfigError
from core.private_files import create_private_file, private_dir

_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}

SQLITE_BUSY_TIMEOUT_S = 60
IMMEDIATE = "lifecycle_immediate"
"""Execution option: on SQLite, begin the transaction with ``BEGIN IMMEDIATE``."""


def normalize_url(url: str) -> URL:
    """Parse ``url`` and select the shipped driver for bare backend names."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise ConfigError(f"invalid database URL for backend '{url.split(':', 1)[0]}'") from e
    driver = _DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


_SECRET_PARAM = re.compile(r"pass|secret|token|key", re.IGNORECASE)
HIDDEN = "***"


def safe_url(url: str | URL) -> str:
    """The URL with its passwords hidden, for messages, ``config show`` and ``doctor``.

    Hidden: the password in the userinfo, and every query parameter whose name holds
    ``pass``, ``secret``, ``token`` or ``key`` (``?password=``, ``?sslpassword=``,
    ``?pass=``, ``?api_key=``), since drivers take credentials there too.
    """
    parsed = url if isinstance(url, URL) else normalize_url(url)
    shown = parsed.set(query={}).render_as_string(hide_password=True)
    params = [
        f"{quote_plus(name)}={HIDDEN if _SECRET_PARAM.search(name) else quote_plus(value)}"
        for name, values in sorted(parsed.query.items())  # sorted, as SQLAlchemy renders
        for value in ((values,) if isinstance(values, str) else values)
    ]
    return f"{shown}?{'&'.join(params)}" if params else shown


class _WriterLocks:
    """The process's writer locks by SQLite file; reset in a forked child, where the
    parent's threads, and any lock they held, are not."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.guard = threading.Lock()
        self.by_file: dict[str, threading.RLock] = {}


_writer_locks = _WriterLocks()
os.register_at_fork(after_in_child=_writer_locks.reset)
_HELD_WRITER_LOCK = "lifecycle_held_writer_lock"


def writer_lock(database: str | None) -> threading.RLock:
    """The lock this process's ``BEGIN IMMEDIATE`` writers of SQLite file ``database`` share
    (re-entrant: a thread's nested writer waits on SQLite, as it did without it)."""
    key = os.path.realpath(database) if database and database != ":memory:" else ""
    if not key:
        return threading.RLock()  # an in-memory database: one connection's alone
    with _writer_locks.guard:
        return _writer_locks.by_file.setdefault(key, threading.RLock())


def _install_sqlite_hooks(engine: Engine, database: str | None) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is deferred-only).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "secure_delete=ON",
            "foreign_keys=ON",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}",
        ):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if not conn.get_execution_options().get(IMMEDIATE, False):
            conn.exec_driver_sql("BEGIN")
            return
        lock = writer_lock(database)
        lock.acquire()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            lock.release()
            raise
        conn.info[_HELD_WRITER_LOCK] = lock

    # Released once COMMIT (or ROLLBACK) has completed, so the next writer never meets
    # SQLite's lock: the dialect's own methods for this engine, wrapped (the "commit" and
    # "rollback" events fire before the statement). The pool's reset on return rolls back
    # through do_rollback too, so a connection closed mid-transaction releases it.
    dialect = engine.dialect
    plain_commit, plain_rollback = dialect.do_commit, dialect.do_rollback

    def release(dbapi_connection: Any) -> None:
        try:
            info = dbapi_connection.info
        except NotImplementedError:  # the first connect's ad-hoc proxy: no transaction
            return
        lock = info.pop(_HELD_WRITER_LOCK, None)
        if lock is not None:
            lock.release()

    def do_commit(dbapi_connection: Any) -> None:
        try:
            plain_commit(dbapi_connection)
        finally:
            release(dbapi_connection)

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            plain_rollback(dbapi_connection)
        finally:
            release(dbapi_connection)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


def _create_private_sqlite(engine: Engine, database: str) -> None:
    """Folders now (mode 0700 where created); the file, mode 0600, when first connected.

    SQLite would create a missing file with the umask's mode (often 0644), and gives its
    ``-wal`` and ``-shm`` files the database file's mode: creating it 0600 first covers all
    three. Only at connect time, as SQLite would, so an engine never used creates no file.
    """
    path = Path(database)
    private_dir(path.parent)

    @event.listens_for(engine, "do_connect")
    def _before_connect(*_args: Any) -> None:
        create_private_file(path)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with this product's per-backend settings."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            **kwargs,
        )
        _install_sqlite_hooks(engine, parsed.database)
        if parsed.database and parsed.database != ":memory:" and "uri" not in parsed.query:
            _create_private_sqlite(engine, parsed.database)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


def checkpoint_wal(engine: Engine, *, vacuum: bool = False) -> None:
    """SQLite: copy the WAL into the database file and truncate it (``VACUUM`` first if asked).

    Old page images of erased or overwritten rows live in the WAL until a checkpoint. Runs
    on the raw DBAPI connection: the engine's "begin" hook wraps SQLAlchemy statements in
    BEGIN, and a checkpoint inside a transaction cannot truncate the WAL.
    """
    from core.errors import TransientError

    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if vacuum:
            cursor.execute("VACUUM")
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        row = cursor.fetchone()  # (busy, wal frames, frames checkpointed)
        cursor.close()
    finally:
        raw.close()
    if row is None or row[0]:
        raise TransientError("WAL checkpoint blocked by an open reader; retry")


def reclaim_storage(
    engine: Engine, tables: Sequence[Table], *, sqlite_vacuum: bool = False
) -> None:
    """Rewrite storage so old versions of deleted or overwritten rows are physically gone.

    SQLite: a WAL checkpoint (``secure_delete`` already zeroes freed content). PostgreSQL:
    ``VACUUM (ANALYZE)`` per table, in autocommit (dead tuples keep old values until then).
    MySQL/MariaDB: ``OPTIMIZE TABLE`` (rebuilds the table). Core has no construct for these
    statements; the names come from reflected or declared tables, quoted by the dialect.
    """
    backend = engine.dialect.name
    quote = engine.dialect.identifier_preparer.format_table
    if backend == "sqlite":
        checkpoint_wal(engine, vacuum=sqlite_vacuum)
    elif backend == "postgresql":
        with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            for table in tables:
                conn.exec_driver_sql(f"VACUUM (ANALYZE) {quote(table)}")
    elif backend in ("mysql", "mariadb"):
        with engine.connect() as conn:
            for table in tables:
                conn.exec_driver_sql(f"OPTIMIZE TABLE {quote(table)}").all()
            conn.commit()
