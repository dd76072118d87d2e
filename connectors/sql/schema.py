"""A SQL store's reflected schema, checked against the inventory before anything runs.

``reflect_store`` reflects only the declared tables and checks every identifier the
inventory names (tables; identity, derives, fields, references, primary key and
timestamp columns; reference arity and column types). All problems are collected and
raised together as one ``ConfigError``, one line each, naming store, table and column.

The reference graph is the union of the foreign keys the database enforces (among the
declared tables) and the ``references`` declared in config. Row keys are the configured
primary key, else the reflected one; a table with neither is keyed by the columns it is
matched on (its identity column, or the columns of its one reference): every row sharing
those values was matched by them, so it belongs to the same subject.

Also here, for every module of the connector: keys as JSON scalars and their conversion
back to column types (``json_key``, ``coerce``, ``key_clause``, ``batches``), and the
translation of SQLAlchemy errors into the product's error tree without ``str(e)``, which
carries bound parameters (``translate``, ``sql_errors``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Engine, MetaData
from sqlalchemy.exc import SQLAlchemyError

from config.schema import Table
from connectors.base import JsonScalar, Key
from connectors.sql.config import SqlStore
from connectors.sql.edges import Edge
from connectors.sql.graph import resolve_follow, subject_tables
from core.errors import ConfigError, TerminalError, TransientError

_T = TypeVar("_T")


@dataclass(frozen=True)
class StoreSchema:
    """The declared tables of one store as reflected, their row keys and reference edges."""

    store: str
    backend: str  # "sqlite" | "postgresql" | "mysql" | "mariadb" (engine dialect name)
    tables: Mapping[str, sa.Table]  # every table declared in config, reflected
    keys: Mapping[str, tuple[str, ...]]  # row-key columns per table
    edges: tuple[Edge, ...]
    unkeyed: frozenset[str] = field(default_factory=frozenset)
    """Tables without a primary key, keyed by the columns they are matched on."""
    subjects: frozenset[str] = field(default_factory=frozenset)
    """Tables with identity columns of their own (entered only through them)."""

    def edges_from(self, child: str) -> tuple[Edge, ...]:
        """Edges whose child is ``child`` (the references it holds)."""
        return tuple(e for e in self.edges if e.child == child)

    def edges_into(self, parent: str) -> tuple[Edge, ...]:
        """Edges pointing at ``parent`` (the tables referencing it)."""
        return tuple(e for e in self.edges if e.parent == parent)

    @property
    def is_mysql(self) -> bool:
        """MySQL or MariaDB (SQLAlchemy names the dialect either way)."""
        return self.backend in ("mysql", "mariadb")


def type_family(column: sa.Column[Any]) -> str:
    """A coarse type class for comparing referencing and referenced columns."""
    typ = column.type
    checks: tuple[tuple[type[sa.types.TypeEngine[Any]], str], ...] = (
        (sa.Boolean, "boolean"),
        (sa.Integer, "integer"),
        (sa.Numeric, "numeric"),
        (sa.Uuid, "uuid"),
        (sa.String, "string"),
        (sa.DateTime, "datetime"),
        (sa.Date, "date"),
        (sa.LargeBinary, "binary"),
    )
    for klass, family in checks:
        if isinstance(typ, klass):
            return family
    return type(typ).__name__.lower()


def _where(store: str, table: str) -> str:
    return f"store '{store}', table '{table}'"


def _check_columns(store: str, decl: Table, table: sa.Table) -> list[str]:
    """Every column the table declaration names must exist in the reflected table."""
    named: list[tuple[str, str]] = []
    named += [("identity", i.column) for i in decl.identity]
    named += [("derives", d.column) for d in decl.derives]
    named += [("fields", c) for c in decl.fields]
    named += [("primary_key", c) for c in decl.primary_key or ()]
    named += [("references", c) for r in decl.references for c in r.columns]
    if decl.timestamps is not None:
        named += [
            ("timestamps", c)
            for c in (decl.timestamps.created, decl.timestamps.updated)
            if c is not None
        ]
    if decl.client_column is not None:
        named.append(("client_column", decl.client_column))
    return [
        f"{_where(store, decl.name)}: unknown column '{col}' in {what}"
        for what, col in named
        if col not in table.c
    ]


def _check_reference(store: str, decl: Table, tables: Mapping[str, sa.Table]) -> list[str]:
    problems: list[str] = []
    child = tables[decl.name]
    for ref in decl.references:
        where = _where(store, decl.name)
        if ref.table not in tables:
            problems.append(f"{where}: reference to table '{ref.table}' that is not declared")
            continue
        parent = tables[ref.table]
        if len(ref.columns) != len(ref.to_columns):
            problems.append(
                f"{where}: reference columns ({', '.join(ref.columns)}) and "
                f"{ref.table} columns ({', '.join(ref.to_columns)}) differ in number"
            )
            continue
        for col, to_col in zip(ref.columns, ref.to_columns, strict=True):
            if to_col not in parent.c:
                problems.append(
                    f"{where}: reference column '{col}' points at unknown column "
                    f"'{to_col}' of table '{ref.table}'"
                )
            elif col in child.c and type_family(child.c[col]) != type_family(parent.c[to_col]):
                problems.append(
                    f"{where}: reference column '{col}' ({type_family(child.c[col])}) does not "
                    f"match type of {ref.table}.{to_col} ({type_family(parent.c[to_col])})"
                )
    return problems


def _edges(store: SqlStore, tables: Mapping[str, sa.Table]) -> tuple[Edge, ...]:
    """Reflected FKs among declared tables (enforced), then declared references; deduplicated.

    A declared reference naming a reflected FK only annotates it (its ``follow:``); the
    way each edge is followed is resolved afterwards (``graph.resolve_follow``).
    """
    found: dict[tuple[str, tuple[str, ...], str, tuple[str, ...]], Edge] = {}
    for name, table in tables.items():
        for fk in table.foreign_key_constraints:
            parent = fk.referred_table.name
            if parent not in tables or fk.referred_table is not tables[parent]:
                continue
            cols = tuple(fk.column_keys)
            to_cols = tuple(el.column.name for el in fk.elements)
            found[(name, cols, parent, to_cols)] = Edge(name, cols, parent, to_cols, True)
    for decl in store.tables:
        for ref in decl.references:
            key = (decl.name, ref.columns, ref.table, ref.to_columns)
            found.setdefault(key, Edge(*key, enforced=False))
    order = {t.name: i for i, t in enumerate(store.tables)}
    # Deterministic order whatever the backend reflects first: by child, then columns.
    return tuple(sorted(found.values(), key=lambda e: (order[e.child], e.columns, not e.enforced)))


def _keys(
    store: str, decl: Table, table: sa.Table, edges: tuple[Edge, ...]
) -> tuple[tuple[str, ...] | None, str | None]:
    """The row-key columns of a table, or a problem when it cannot be keyed safely."""
    if decl.primary_key:
        return tuple(decl.primary_key), None
    reflected = tuple(c.name for c in table.primary_key.columns)
    if reflected:
        return reflected, None
    # No primary key: the table is matched on its identity columns (a subject table is
    # entered only through them) or else on the columns of its references.
    matched: set[tuple[str, ...]]
    if decl.identity:
        matched = {(i.column,) for i in decl.identity}
    else:
        matched = {e.columns for e in edges if e.child == decl.name and e.follow == "holders"}
    where = _where(store, decl.name)
    if not matched:
        return None, (
            f"{where}: no primary key, and no identity column or reference to match its "
            "rows on; declare primary_key or a reference"
        )
    if len(matched) > 1:
        sets = "; ".join(", ".join(m) for m in sorted(matched))
        return None, (
            f"{where}: no primary key, and matched on several column sets ({sets}); "
            "declare primary_key"
        )
    return next(iter(matched)), None


_EXPRESSION_INDEX_WARNING = "Skipped unsupported reflection of expression-based index"


def _reflect(engine: Engine, store: SqlStore) -> tuple[MetaData, set[str], str]:
    declared = [t.name for t in store.tables]
    try:
        existing = set(sa.inspect(engine).get_table_names())
        present = [n for n in declared if n in existing]
        metadata = MetaData()
        with warnings.catch_warnings():
            # SQLite cannot reflect expression indexes (the lower(email) index doctor
            # advises); they are not needed here and doctor reads them from sqlite_master.
            warnings.filterwarnings(
                "ignore", message=_EXPRESSION_INDEX_WARNING, category=sa.exc.SAWarning
            )
            metadata.reflect(bind=engine, only=present)
    except SQLAlchemyError as e:
        raise translate(e, store.name, "reflecting the schema") from e
    return metadata, existing, engine.dialect.name


def reflect_store(engine: Engine, store: SqlStore) -> StoreSchema:
    """Reflect the declared tables and check the inventory against them (ConfigError)."""
    metadata, existing, backend = _reflect(engine, store)
    problems: list[str] = []
    tables: dict[str, sa.Table] = {}
    for decl in store.tables:
        if decl.name not in existing:
            problems.append(f"{_where(store.name, decl.name)}: table not found in the database")
            continue
        tables[decl.name] = metadata.tables[decl.name]
    for decl in store.tables:
        if decl.name in tables:
            problems += _check_columns(store.name, decl, tables[decl.name])
            problems += _check_reference(store.name, decl, tables)
    if problems:
        message = f"store '{store.name}': the inventory does not match the schema"
        raise ConfigError(message, problems)
    edges, problems = resolve_follow(store, _edges(store, tables))
    if problems:
        message = f"store '{store.name}': the references cannot be followed safely"
        raise ConfigError(message, problems)
    keys: dict[str, tuple[str, ...]] = {}
    unkeyed: set[str] = set()
    for decl in store.tables:
        key, problem = _keys(store.name, decl, tables[decl.name], edges)
        if problem is not None:
            problems.append(problem)
        elif key is not None:
            keys[decl.name] = key
            if not decl.primary_key and not tables[decl.name].primary_key.columns:
                unkeyed.add(decl.name)
    if problems:
        raise ConfigError(f"store '{store.name}': tables cannot be keyed safely", problems)
    return StoreSchema(
        store=store.name,
        backend=backend,
        tables=tables,
        keys=keys,
        edges=edges,
        unkeyed=frozenset(unkeyed),
        subjects=subject_tables(store),
    )


# --- keys and values ------------------------------------------------------------------
# Keys and identity values travel as JSON scalars (plans are stored as JSON, identities
# arrive as text); before they are bound they are converted back to the column's type,
# so an INTEGER column compared with '42' works on PostgreSQL too.


def json_value(value: Any) -> JsonScalar:
    """A database value as a JSON scalar: ints, text and booleans as they are, others as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def json_key(row: Sequence[Any]) -> Key:
    """A row's key values as a JSON-safe ``Key``."""
    return tuple(json_value(v) for v in row)


def coerce(column: sa.Column[Any], value: JsonScalar) -> Any:
    """``value`` converted to ``column``'s Python type for binding; ValueError if it cannot be."""
    if value is None:
        return None
    family = type_family(column)
    text = value if isinstance(value, str) else str(value)
    converters: dict[str, Any] = {
        "integer": lambda: (
            value if isinstance(value, int) and not isinstance(value, bool) else int(text.strip())
        ),
        "numeric": lambda: Decimal(text.strip()),
        "uuid": lambda: UUID(text) if getattr(column.type, "as_uuid", True) else str(UUID(text)),
        "datetime": lambda: datetime.fromisoformat(text),
        "date": lambda: date.fromisoformat(text),
        "boolean": lambda: _boolean(value),
        "string": lambda: text,
    }
    convert = converters.get(family)
    if convert is None:
        return value
    try:
        return convert()
    except (ValueError, ArithmeticError, TypeError):  # Decimal raises InvalidOperation
        # The converters' messages quote the value (an identity): drop them.
        raise ValueError(f"not a {family} value") from None


def _boolean(value: JsonScalar) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ValueError("not a boolean value")


def coerce_key(columns: Sequence[sa.Column[Any]], key: Key) -> tuple[Any, ...] | None:
    """``key`` converted for binding, or None when a value cannot match its column."""
    try:
        return tuple(coerce(col, v) for col, v in zip(columns, key, strict=True))
    except ValueError:
        return None


def key_clause(
    table: sa.Table, columns: Sequence[str], keys: Iterable[Key]
) -> sa.ColumnElement[bool]:
    """``columns IN keys`` (a row-value IN for several columns), values typed per column.

    Keys that cannot match (a value the column type cannot hold) are left out; keys
    holding NULL never match, as in SQL. Callers pass bounded batches.
    """
    cols = [table.c[c] for c in columns]
    bound = [k for k in (coerce_key(cols, key) for key in keys) if k is not None]
    if len(cols) == 1:
        return cols[0].in_([k[0] for k in bound])
    return sa.tuple_(*cols).in_(bound)


def batches(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """``items`` in consecutive slices of at most ``size``."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- errors ---------------------------------------------------------------------------

_TRANSIENT = (sa.exc.OperationalError, sa.exc.DisconnectionError, sa.exc.TimeoutError)


def driver_code(error: BaseException) -> str:
    """The driver error's class and code (SQLSTATE, MySQL number, SQLite name): no values."""
    orig = getattr(error, "orig", None)
    if orig is None:
        return type(error).__name__
    code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    args = getattr(orig, "args", ())
    if code is None and args and isinstance(args[0], int):
        code = args[0]  # PyMySQL: (errno, message); the message may quote values
    return f"{type(orig).__name__} {code}" if code is not None else type(orig).__name__


def translate(
    error: SQLAlchemyError, store: str, operation: str, table: str | None = None
) -> TransientError | TerminalError:
    """The product error for a SQLAlchemy error; never str(error), which holds parameters."""
    transient = isinstance(error, _TRANSIENT) or (
        isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated
    )
    where = f"store '{store}'" + (f", table '{table}'" if table else "")
    code = f"{type(error).__name__}: {driver_code(error)}"
    kind = TransientError if transient else TerminalError
    why = unreachable(error)
    if why is not None:
        return kind(
            f"store '{store}' is unreachable: {why} ({operation}, {code}); check that the "
            "database is running and the store's url (host, port, database, user, password)",
            store=store,
            table=table,
            operation=operation,
            unreachable=True,
        )
    message = f"{where}: {operation} failed ({code})"
    return kind(message, store=store, table=table, operation=operation)


_UNREACHABLE = {
    "connection refused": ("Connection refused", "Can't connect to", "Errno 111"),
    "host not found (DNS)": (
        "could not translate host name",
        "Name or service not known",
        "Unknown MySQL server host",
        "nodename nor servname",
    ),
    "login refused (user or password)": ("password authentication failed", "Access denied"),
    "no answer (timeout)": ("timeout expired", "timed out"),
    "the database file cannot be opened": ("unable to open database file",),
    "the database does not exist": ("does not exist", "Unknown database"),
}


def unreachable(error: SQLAlchemyError) -> str | None:
    """Why a connection could not be made (refused, DNS, login, timeout), or None.

    Only errors raised while connecting are read (no statement was sent, so the driver's
    message holds no parameters); the words returned are ours, never the message.
    """
    if not isinstance(error, sa.exc.DBAPIError) or error.statement is not None:
        return None
    text = str(error.orig)
    return next((why for why, marks in _UNREACHABLE.items() if any(m in text for m in marks)), None)


@contextmanager
def sql_errors(store: str, operation: str, table: str | None = None) -> Iterator[None]:
    """Translate SQLAlchemy errors raised inside the block (``raise ... from e``)."""
    try:
        yield
    except SQLAlchemyError as e:
        raise translate(e, store, operation, table) from e
