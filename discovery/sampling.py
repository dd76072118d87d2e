"""Bounded, read-only samples of a table's columns, using each database's own sampling.

At most ``rows`` rows are read per table, in a read-only transaction:

- PostgreSQL: ``SET TRANSACTION READ ONLY``, then ``TABLESAMPLE SYSTEM (p) ... LIMIT n``
  with ``p`` from the catalog's row estimate (oversampled twice, as SYSTEM picks whole
  pages); a table estimated at no more than twice ``n`` rows is read with ``LIMIT n``.
- MySQL/MariaDB: ``START TRANSACTION READ ONLY``; SQLite: ``PRAGMA query_only`` (and the
  CLI opens the file ``?mode=ro``). With a single integer primary key, ``LIMIT n`` from a
  random key upwards (an index range, then wrapping round to the lowest keys), else
  ``LIMIT n`` from the start. Never a full scan, never ``ORDER BY RAND()``.

A ``Sampler`` samples table after table on one connection, each read-only transaction
serving up to ``TABLES_PER_TRANSACTION`` tables (on PostgreSQL one statement per table);
``sample_table`` takes a ``Sampler`` or, for a single table, an engine.

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


def _postgres(
    conn: sa.Connection, table: TableInfo, columns: Sequence[str], rows: int
) -> Sequence[Any]:
    """One statement per table (the transaction is already read-only: ``Sampler``).

    Written out directly, identifiers quoted by the dialect and the two numbers (computed
    here, never a value from the database) as literals: a statement names its table, so
    SQLAlchemy's compiled cache would miss on every table of a draft."""
    quote = conn.dialect.identifier_preparer.quote
    named = quote(table.name)
    if table.schema:
        named = f"{conn.dialect.identifier_preparer.quote_schema(table.schema)}.{named}"
    head = f"SELECT {', '.join(quote(c) for c in columns)} FROM {named}"
    limit = f" LIMIT {int(rows)}"
    estimate = table.row_estimate
    if estimate is None or estimate <= rows * OVERSAMPLE:
        return _run(conn, head + limit)
    percent = min(100.0, 100.0 * rows * OVERSAMPLE / estimate)
    found = _run(conn, f"{head} TABLESAMPLE SYSTEM ({percent!r}){limit}")
    if found:
        return found
    # SYSTEM picked no page (a stale estimate, or bad luck on few pages): LIMIT is bounded too.
    return _run(conn, head + limit)


def _run(conn: sa.Connection, statement: str) -> Sequence[Any]:
    """Every row of ``statement``, sent as SQLAlchemy sends a compiled one: with (empty)
    parameters, so the driver reads back the ``%%`` the preparer writes for a ``%``."""
    return conn.exec_driver_sql(statement).all()


def _integer_key(table: TableInfo) -> str | None:
    """The single integer primary-key column, if the table has one."""
    if len(table.primary_key) != 1:
        return None
    column = table.column(table.primary_key[0])
    integer = column is not None and _INTEGER.match(column.type_name.upper())
    return column.name if column is not None and integer else None


def _key_range(
    conn: sa.Connection, table: TableInfo, columns: Sequence[str], rows: int
) -> Sequence[Any]:
    """LIMIT from a random key upwards, wrapping round to the lowest keys if short."""
    clause, cols = _selectable(table, columns)
    key_name = _integer_key(table)
    if key_name is None:
        return conn.execute(sa.select(*cols).select_from(clause).limit(rows)).all()
    key = clause.c[key_name]
    low, high = conn.execute(sa.select(sa.func.min(key), sa.func.max(key))).one()
    if low is None:
        return []
    start = random.randint(int(low), int(high))
    query = sa.select(*cols).select_from(clause)
    found = list(conn.execute(query.where(key >= start).order_by(key).limit(rows)).all())
    if len(found) < rows:
        rest = query.where(key < start).order_by(key).limit(rows - len(found))
        found += conn.execute(rest).all()
    return found


TABLES_PER_TRANSACTION = 20
"""Tables sampled in one read-only transaction before it ends: few round trips per table,
and the locks a transaction holds on what it read (which hold back DDL on those tables,
and fill PostgreSQL's lock table on a schema of thousands) stay few and short-lived."""


class Sampler:
    """One connection sampling table after table, read-only.

    Its transactions are made read-only once each (``SET TRANSACTION READ ONLY``,
    ``START TRANSACTION READ ONLY``; SQLite's ``PRAGMA query_only`` for the whole
    session) and end, rolled back, after ``TABLES_PER_TRANSACTION`` tables, so a table
    costs one statement on PostgreSQL. Use it as a context manager (``sampler(engine)``).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: sa.Connection | None = None
        self._in_transaction = 0  # tables sampled in the current transaction

    def __enter__(self) -> Sampler:
        with _unlogged(self.engine), sql_errors(_STORE, "sample"):
            self._conn = self.engine.connect()
            if self.engine.dialect.name == "sqlite":
                try:
                    self._conn.exec_driver_sql("PRAGMA query_only = ON")
                except BaseException:
                    self._conn.close()
                    raise
        return self

    def __exit__(self, *_exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with _unlogged(self.engine), sql_errors(_STORE, "sample"):
            try:
                conn.rollback()
                if self.engine.dialect.name == "sqlite":  # pooled connections stay writable
                    conn.exec_driver_sql("PRAGMA query_only = OFF")
            except BaseException:
                conn.invalidate()  # not back to the pool half reset (read-only, say)
                raise
            finally:
                conn.close()

    def _begin(self, conn: sa.Connection) -> None:
        """A read-only transaction, unless the current one is."""
        if self._in_transaction >= TABLES_PER_TRANSACTION:
            conn.rollback()
            self._in_transaction = 0
        if self._in_transaction == 0:
            dialect = self.engine.dialect.name
            if dialect == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            elif dialect in ("mysql", "mariadb"):
                conn.exec_driver_sql("START TRANSACTION READ ONLY")
        self._in_transaction += 1

    def sample(
        self, table: TableInfo, columns: Sequence[str], rows: int = DEFAULT_ROWS
    ) -> dict[str, list[object]]:
        """At most ``rows`` values of each of ``columns`` of ``table``, read-only."""
        values: dict[str, list[object]] = {c: [] for c in columns}
        if not columns or rows <= 0:
            return values
        conn = self._conn
        if conn is None:
            raise RuntimeError("Sampler used outside its with block")
        with _unlogged(self.engine), sql_errors(_STORE, "sample", table.name):
            try:
                self._begin(conn)
                if self.engine.dialect.name == "postgresql":
                    result = _postgres(conn, table, columns, rows)
                else:
                    result = _key_range(conn, table, columns, rows)
                if result:
                    for name, column in zip(columns, zip(*result, strict=True), strict=True):
                        values[name] = list(column)
            except BaseException:
                self._in_transaction = 0
                conn.rollback()  # a failed statement ends its transaction
                raise
        return values


def sampler(engine: Engine) -> Sampler:
    """A sampling session on ``engine``: ``with sampler(engine) as s: s.sample(...)``."""
    return Sampler(engine)


def sample_table(
    source: Engine | Sampler,
    table: TableInfo,
    columns: Sequence[str],
    rows: int = DEFAULT_ROWS,
) -> dict[str, list[object]]:
    """At most ``rows`` values of each of ``columns`` of ``table``, read-only: through an
    open ``Sampler`` (its connection and transaction), or on a connection of its own."""
    if isinstance(source, Sampler):
        return source.sample(table, columns, rows)
    if not columns or rows <= 0:
        return {c: [] for c in columns}
    with Sampler(source) as session:
        return session.sample(table, columns, rows)
