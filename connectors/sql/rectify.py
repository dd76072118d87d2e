"""Rectification: correct a subject's personal fields in one SQL store, validated first.

``changes`` maps ``table.column`` (or a bare ``column``: every found table that declares it
as a personal field) to the new value as text. Every change is checked before anything
is written: the column must exist, be a declared personal field or identity column and
not a key column, and the text must convert to the column's type: integers, decimals
(within precision and scale), ISO dates, times and datetimes, booleans (true/false/1/0/
yes/no), strings within the column's length, enum members. For a non-string column the
empty text means NULL, refused when the column is NOT NULL; an empty value for a NOT NULL
identity column is refused too. Errors name ``table.column`` and the expected type, never
the value. ``check_changes`` runs the same checks at intake, before a request is registered.

All updates run in one transaction: one UPDATE per table per key batch, setting every
changed column of that table at once, on the found rows only. Rows that rows outside the
request reference (a linked address a household shares) are not rewritten: they are
reported as a KEEP batch, as an erasure keeps them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from connectors.base import Action, BatchResult, Findings, Key, keys_digest
from connectors.sql.config import SqlStore
from connectors.sql.execute import translate_error
from connectors.sql.masks import type_name
from connectors.sql.planning import sort_key
from connectors.sql.schema import StoreSchema, batches, key_clause
from connectors.sql.shared import shared_keys
from core.engines import IMMEDIATE
from core.errors import TerminalError

_INTEGER = re.compile(r"^[+-]?\d+$")
_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})


class _Invalid(ValueError):
    """The text does not fit; the argument says what was expected (never the value)."""


def _integer(text: str, column: sa.Column[Any]) -> int:
    if not _INTEGER.match(text.strip()):
        raise _Invalid("an integer")
    return int(text)


def _decimal(text: str, column: sa.Column[Any]) -> Decimal:
    typ = column.type
    precision, scale = getattr(typ, "precision", None), getattr(typ, "scale", None)
    expected = "a decimal number" + (
        f" with at most {precision} digits, {scale} after the point"
        if precision is not None and scale is not None
        else ""
    )
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise _Invalid(expected) from None
    if not value.is_finite():
        raise _Invalid(expected)
    if precision is not None and scale is not None:
        exponent = value.as_tuple().exponent
        decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        integer_digits = len(str(abs(int(value)))) if abs(value) >= 1 else 0
        if decimals > scale or integer_digits > precision - scale:
            raise _Invalid(expected)
    return value


def _float(text: str, column: sa.Column[Any]) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise _Invalid("a number") from None
    if not math.isfinite(value):
        raise _Invalid("a finite number")
    return value


def _boolean(text: str, column: sa.Column[Any]) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE | _FALSE:
        return lowered in _TRUE
    raise _Invalid("a boolean (true/false, 1/0, yes/no)")


def _parser(kind: type[Any], expected: str) -> Callable[[str, sa.Column[Any]], Any]:
    def parse(text: str, column: sa.Column[Any]) -> Any:
        try:
            return kind.fromisoformat(text.strip())
        except ValueError:
            raise _Invalid(expected) from None

    return parse


def _string(text: str, column: sa.Column[Any]) -> str:
    typ = column.type
    if isinstance(typ, sa.Enum):
        if text not in typ.enums:
            raise _Invalid(f"one of {', '.join(typ.enums)}")
        return text
    length = getattr(typ, "length", None)
    if length is not None and len(text) > length:
        raise _Invalid(f"text of at most {length} characters")
    return text


# Most specific first: DateTime before Date, Enum (a String) via _string, Float before Numeric.
_CONVERTERS: tuple[
    tuple[type[sa.types.TypeEngine[Any]], Callable[[str, sa.Column[Any]], Any]], ...
] = (
    (sa.Boolean, _boolean),
    (sa.Integer, _integer),
    (sa.Float, _float),
    (sa.Numeric, _decimal),
    (sa.DateTime, _parser(datetime, "an ISO datetime (YYYY-MM-DDTHH:MM:SS)")),
    (sa.Date, _parser(date, "an ISO date (YYYY-MM-DD)")),
    (sa.Time, _parser(time, "an ISO time (HH:MM:SS)")),
    (sa.String, _string),
)


def convert(column: sa.Column[Any], text: str) -> Any:
    """``text`` as a value of ``column``'s type; ValueError naming the expected type only."""
    for klass, converter in _CONVERTERS:
        if isinstance(column.type, klass):
            if text == "" and klass is not sa.String:
                if not column.nullable:
                    raise _Invalid("a value (the column is NOT NULL)")
                return None
            return converter(text, column)
    raise _Invalid(f"a supported type (cannot rectify {type_name(column)})")


def _targets(
    schema: StoreSchema, store: SqlStore, found: Mapping[str, list[Key]], name: str
) -> list[tuple[str, str]]:
    """The (table, column) pairs a change name addresses in this store."""
    if "." in name:
        table, column = name.split(".", 1)
        if table not in schema.tables:
            raise TerminalError(
                f"store '{store.name}': rectification names unknown table '{table}'",
                store=store.name,
            )
        return [(table, column)]
    declaring = [t.name for t in store.tables if name in t.fields]
    if not declaring:
        raise TerminalError(
            f"store '{store.name}': no table declares a personal field '{name}'",
            store=store.name,
        )
    return [(t, name) for t in sorted(declaring) if t in found]


def _validate(schema: StoreSchema, store: SqlStore, table: str, column: str, text: str) -> Any:
    where = f"{store.name}.{table}.{column}"
    sa_table, decl = schema.tables[table], store.table(table)
    if column not in sa_table.c:
        raise TerminalError(f"{where}: no such column", store=store.name, table=table)
    editable = set(decl.fields) | {i.column for i in decl.identity}
    if column in schema.keys.get(table, ()):
        raise TerminalError(f"{where}: key columns cannot be rectified", store=store.name)
    if column not in editable:
        raise TerminalError(
            f"{where}: not a declared personal field or identity column", store=store.name
        )
    try:
        identity = column in {i.column for i in decl.identity}
        if identity and not text.strip() and not sa_table.c[column].nullable:
            raise _Invalid("a value (an identity column, NOT NULL)")  # "" finds no one
        return convert(sa_table.c[column], text)
    except _Invalid as e:
        raise TerminalError(
            f"{where}: expected {e.args[0]} ({type_name(sa_table.c[column])})",
            store=store.name,
            table=table,
            column=column,
        ) from None


def check_changes(schema: StoreSchema, store: SqlStore, changes: Mapping[str, str]) -> list[str]:
    """Every problem ``rectify`` would refuse ``changes`` for, found without writing.

    Checked at intake, so a correction the column cannot hold (unknown or key column, not
    a declared field, wrong type, too long, empty for a NOT NULL identity) is refused
    before the request is registered. A bare field name is checked in every table that
    declares it. Lines name ``store.table.column`` and the expected type, never the value.
    """
    every_table: dict[str, list[Key]] = {name: [] for name in schema.tables}
    problems: list[str] = []
    for name in sorted(changes):
        try:
            targets = _targets(schema, store, every_table, name)
        except TerminalError as e:
            problems.append(e.message)
            continue
        for table, column in targets:
            try:
                _validate(schema, store, table, column, changes[name])
            except TerminalError as e:
                problems.append(e.message)
    return problems


def rectify(  # noqa: PLR0917 - the connector's fixed call signature
    engine: Engine,
    schema: StoreSchema,
    store: SqlStore,
    findings: Findings,
    changes: Mapping[str, str],
    batch_size: int,
) -> list[BatchResult]:
    """Write validated ``changes`` to the subject's found rows; one transaction per store."""
    if not changes:
        raise TerminalError("rectification needs at least one change", store=store.name)
    found: dict[str, list[Key]] = {}
    for target in findings.targets:
        found.setdefault(target.target, []).extend(tuple(k) for k in target.keys)
    updates: dict[str, dict[str, Any]] = {}
    for name in sorted(changes):
        for table, column in _targets(schema, store, found, name):
            value = _validate(schema, store, table, column, changes[name])
            updates.setdefault(table, {})[column] = value
    results: list[BatchResult] = []
    where = "start"
    own = {table: set(keys) for table, keys in found.items()}
    try:
        with engine.execution_options(**{IMMEDIATE: True}).begin() as conn:
            for table in sorted(updates):
                keys = sorted(set(found.get(table, ())), key=sort_key)
                sa_table, columns = schema.tables[table], schema.keys[table]
                for number, planned in enumerate(batches(keys, batch_size), 1):
                    where = f"rectify {table} batch {number}"
                    # A row others' rows reference too (a household's address) is theirs
                    # as well: one person's correction must not rewrite it.
                    shared = shared_keys(conn, schema, table, planned, own, batch_size)
                    if shared:
                        results.append(
                            BatchResult(
                                store.name,
                                table,
                                Action.KEEP,
                                len(shared),
                                keys_digest(sorted(shared, key=sort_key)),
                            )
                        )
                    batch = [k for k in planned if k not in shared]
                    if not batch:
                        continue
                    stmt = (
                        sa.update(sa_table)
                        .where(key_clause(sa_table, columns, batch))
                        .values(updates[table])
                    )
                    affected = conn.execute(stmt).rowcount
                    results.append(
                        BatchResult(store.name, table, Action.RECTIFY, affected, keys_digest(batch))
                    )
    except SQLAlchemyError as e:
        raise translate_error(e, store.name, where) from e
    return results
