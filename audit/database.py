"""The audit database engine: one per URL per process, migrated on first use.

Migrating once per URL keeps ``Ledger.open()`` cheap enough to call from every task
while guaranteeing the tables (and the append-only triggers) exist before any write.
"""

from __future__ import annotations

import threading

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from audit.migrate import upgrade
from config.settings import get_settings
from core.engines import make_engine, normalize_url, safe_url
from core.errors import ConfigError, LifecycleError, TerminalError, TransientError

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def audit_engine(url: str | None = None) -> Engine:
    """The migrated engine for ``url`` (default: the configured audit database)."""
    if url is None:
        settings = get_settings()
        settings.private_data_dir()  # the default ledger lives there, keys and exports too
        url = settings.resolved_audit_url()
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        # Each connection to an in-memory SQLite database is a different, empty database.
        raise ConfigError("the audit ledger needs a database file; in-memory SQLite is not usable")
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        engine = make_engine(url)
        try:
            upgrade(engine)
        except SQLAlchemyError as e:
            engine.dispose()
            raise translate_db_error(e, f"migrating the audit database at {safe_url(url)}") from e
        except BaseException:
            engine.dispose()
            raise
        _engines[url] = engine
        return engine


def cached_engine(url: str) -> Engine | None:
    """The engine ``audit_engine(url)`` made earlier in this process (migrated), if any."""
    with _lock:
        return _engines.get(url)


def translate_db_error(error: SQLAlchemyError, doing: str) -> LifecycleError:
    """The product error for a database failure while ``doing`` something.

    Lost connections, lock timeouts, deadlocks and "database is locked" may clear on
    retry; anything else (a refused statement, a constraint) will not. The driver's
    message is left out: it can quote row values.
    """
    cause = type(error).__name__
    if isinstance(error, OperationalError | PoolTimeoutError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    ):
        return TransientError(f"{doing} failed: database busy or unreachable", cause=cause)
    return TerminalError(f"{doing} failed ({cause})", cause=cause)


def dispose_engines() -> None:
    """Close every cached engine (tests and short-lived tools call this when done)."""
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()
