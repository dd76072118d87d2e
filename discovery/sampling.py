"""Bounded, read-only samples of a table's columns, using each database's own sampling.

At most ``rows`` rows are read per table, in a read-only transaction:

- PostgreSQL: ``SET TRANSACTION READ ONLY``, then ``TABLESAMPLE SYSTEM (p) ... LIMIT n``
  with ``p`` from the catalog's row estimate (oversampled twice, as SYSTEM picks whole
  pages); a table estimated at no more than twice ``n`` rows is read with ``LIMIT n``.
- MySQL/MariaDB: ``START TRANSACTION READ ONLY``; SQLite: ``PRAGMA query_only`` (and the
  CLI opens the file ``?mode=ro``). With a single integer primary key, ``LIMIT n`` from a
  random key upwards (an index range, then wrapping round to the lowest keys), else
  ``LIMIT n`` from the start. Never a full scan, never ``ORDER BY RAND()``.

Values stay in memory for the caller to classify; they are never logged (the engine's
own row logging is filtered out while sampling), and driver errors are re-raised as
product errors without their message (``sql_errors``).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from connectors.sql.schema import sql_errors
from discovery.catalog import TableInfo

DEFAULT_ROWS = 1000
"""Rows sampled per table unless the caller asks otherwise."""

OVERSAMPLE = 2.0
"""TABLESAMPLE SYSTEM picks pages, not rows: ask for twice the rows LIMIT keeps."""

_STORE = "discovery"
_INTEGER = re.compile(r"^(TINY|SMALL|MEDIUM|BIG)?INT(EGER)?\b")

_SAMPLING: ContextVar[bool] = ContextVar("discovery_sampling", default=False)


class _WhileSampling(logging.Filter):
    """Drops an engine's records while this context samples: with ``sqlalchemy.engine`` at
    DEBUG, SQLAlchemy logs every row fetched, and sampled rows are personal data."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _SAMPLING.get()


_FILTER = _WhileSampling()


@contextmanager
def _unlogged(engine: Engine) -> Iterator[None]:
    """No engine log record (statement, parameters, row) escapes from this context."""
    own = engine.logger
    for logger in {logging.getLogger("sqlalchemy.engine.Engine"), getattr(own, "logger", own)}:
        if isinstance(logger, logging.Logger) and _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    token = _SAMPLING.set(True)
    try:
        yield
    finally:
        _SAMPLING.reset(token)


def _selectable(table: TableInfo, columns: Sequence[str]) -> tuple[sa.TableClause, list[Any]]:
    names = list(dict.fromkeys([*columns, *table.primary_key]))
    clause = sa.table(table.name, *(sa.column(n) for n in names), schema=table.schema)
    return clause, [clause.c[c] for c in columns]


def _postgres(conn: sa.Connection, table: TableInfo, columns: Sequence[str], rows: int) -> Any:
    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    clause, cols = _selectable(table, columns)
    estimate = table.row_estimate
    if estimate is None or estimate <= rows * OVERSAMPLE:
        return conn.execute(sa.select(*cols).select_from(clause).limit(rows))
    percent = min(100.0, 100.0 * rows * OVERSAMPLE / estimate)
    sampled = sa.tablesample(clause, sa.func.system(percent), name="s")
    found = list(conn.execute(sa.select(*(sampled.c[c] for c in columns)).limit(rows)))
    if found:
        return found
    # SYSTEM picked no page (a stale estimate, or bad luck on few pages): LIMIT is bounded too.
    return conn.execute(sa.select(*cols).select_from(clause).limit(rows))


def _integer_key(table: TableInfo) -> str | None:
    """The single integer primary-key column, if the table has one."""
    if len(table.primary_key) != 1:
        return None
    column = table.column(table.primary_key[0])
    integer = column is not None and _INTEGER.match(column.type_name.upper())
    return column.name if column is not None and integer else None


def _key_range(conn: sa.Connection, table: TableInfo, columns: Sequence[str], rows: int) -> Any:
    """LIMIT from a random key upwards, wrapping round to the lowest keys if short."""
    clause, cols = _selectable(table, columns)
    key_name = _integer_key(table)
    if key_name is None:
        return list(conn.execute(sa.select(*cols).select_from(clause).limit(rows)))
    key = clause.c[key_name]
    low, high = conn.execute(sa.select(sa.func.min(key), sa.func.max(key))).one()
    if low is None:
        return []
    start = random.randint(int(low), int(high))
    query = sa.select(*cols).select_from(clause)
    found = list(conn.execute(query.where(key >= start).order_by(key).limit(rows)))
    if len(found) < rows:
        rest = query.where(key < start).order_by(key).limit(rows - len(found))
        found += list(conn.execute(rest))
    return found


def sample_table(
    engine: Engine, table: TableInfo, columns: Sequence[str], rows: int = DEFAULT_ROWS
) -> dict[str, list[object]]:
    """At most ``rows`` values of each of ``columns`` of ``table``, read-only."""
    if not columns or rows <= 0:
        return {c: [] for c in columns}
    values: dict[str, list[object]] = {c: [] for c in columns}
    dialect = engine.dialect.name
    with _unlogged(engine), sql_errors(_STORE, "sample", table.name), engine.connect() as conn:
        try:
            if dialect == "postgresql":
                result = _postgres(conn, table, columns, rows)
            else:
                if dialect in ("mysql", "mariadb"):
                    conn.exec_driver_sql("START TRANSACTION READ ONLY")
                elif dialect == "sqlite":
                    conn.exec_driver_sql("PRAGMA query_only = ON")
                result = _key_range(conn, table, columns, rows)
            for row in result:
                for name, value in zip(columns, row, strict=True):
                    values[name].append(value)
        finally:
            conn.rollback()
            if dialect == "sqlite":  # pooled connections must not stay read-only
                conn.exec_driver_sql("PRAGMA query_only = OFF")
    return values
