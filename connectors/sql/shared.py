"""Shared rows: rows that rows outside a request still reference stay, untouched.

A household's address, a card someone else's order was paid with: erasing one person must
not leave another person's rows pointing at nothing, nor erase what is theirs too. Before a
row of a non-subject table is deleted or masked, every reference into its table whose
holders may be outside the request is checked: the row is *shared* when more present rows
reference it than the request's own rows do.

Which references are checked: all into the table except ``holders`` references held by
non-subject tables (every row holding one to an owned row is owned by definition, so it is
never outside). Subject tables are not checked: a reference to a person (``referred_by``)
is cleared instead (``planning``, UNLINK).

Cost: per checked reference and batch of keys, one grouped, indexed count of the holders
of those values, and one of the request's own holders among them (skipped when the
request owns none there). Never a scan, never one statement per row.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy import Connection

from connectors.base import SHARED_REASON, Findings, Key
from connectors.sql.edges import Edge
from connectors.sql.schema import StoreSchema, batches, json_key, key_clause

__all__ = ["SHARED_REASON", "checked_edges", "findings_shared", "shared_keys"]


def checked_edges(schema: StoreSchema, table: str) -> tuple[Edge, ...]:
    """References into ``table`` whose holders may be outside the request."""
    if table in schema.subjects:
        return ()
    return tuple(
        e
        for e in schema.edges
        if e.parent == table and not (e.follow == "holders" and e.child not in schema.subjects)
    )


def _values_by_key(
    conn: Connection, schema: StoreSchema, table: str, keys: Sequence[Key], columns: tuple[str, ...]
) -> dict[Key, list[Key]]:
    """Referenced values -> the keys holding them (projected from the key where possible)."""
    key_cols = schema.keys[table]
    pairs: list[tuple[Key, Key]]
    if all(c in key_cols for c in columns):
        idx = [key_cols.index(c) for c in columns]
        pairs = [(tuple(k[i] for i in idx), k) for k in keys]
    else:
        t = schema.tables[table]
        stmt = sa.select(*(t.c[c] for c in columns), *(t.c[c] for c in key_cols)).where(
            key_clause(t, key_cols, keys)
        )
        width = len(columns)
        pairs = [(row[:width], row[width:]) for row in (json_key(r) for r in conn.execute(stmt))]
    found: dict[Key, list[Key]] = {}
    for value, key in pairs:
        if None not in value:
            found.setdefault(value, []).append(key)
    return found


def _holder_counts(
    conn: Connection,
    schema: StoreSchema,
    edge: Edge,
    values: Sequence[Key],
    among: Sequence[Key] | None = None,
) -> dict[Key, int]:
    """How many present rows hold each of ``values`` (only rows with keys ``among``, if given)."""
    child = schema.tables[edge.child]
    cols = [child.c[c] for c in edge.columns]
    where = key_clause(child, edge.columns, values)
    if among is not None:
        where = sa.and_(where, key_clause(child, schema.keys[edge.child], among))
    stmt = sa.select(*cols, sa.func.count()).where(where).group_by(*cols)
    return {json_key(row[:-1]): int(row[-1]) for row in conn.execute(stmt)}


def shared_keys(  # noqa: PLR0917 - one check, its inputs spelled out
    conn: Connection,
    schema: StoreSchema,
    table: str,
    keys: Sequence[Key],
    own: Mapping[str, Collection[Key]],
    batch_size: int,
) -> set[Key]:
    """The ``keys`` of ``table`` that a present row outside ``own`` (per table) references."""
    shared: set[Key] = set()
    for edge in checked_edges(schema, table):
        own_rows = sorted(own.get(edge.child, ()), key=repr)
        for batch in batches(keys, batch_size):
            by_value = _values_by_key(conn, schema, table, batch, edge.to_columns)
            values = list(by_value)
            if not values:
                continue
            total = _holder_counts(conn, schema, edge, values)
            if not total:
                continue
            mine: dict[Key, int] = {}
            for own_batch in batches(own_rows, batch_size):
                for value, n in _holder_counts(conn, schema, edge, values, own_batch).items():
                    mine[value] = mine.get(value, 0) + n
            for value, n in total.items():
                if n > mine.get(value, 0):
                    shared.update(by_value.get(value, ()))
    return shared


def findings_shared(
    conn: Connection, schema: StoreSchema, findings: Findings, batch_size: int
) -> dict[str, set[Key]]:
    """Per table, the found keys that rows outside the findings reference (for planning)."""
    own = {t.target: set(t.keys) for t in findings.targets}
    shared: dict[str, set[Key]] = {}
    for target in findings.targets:
        if target.keys and checked_edges(schema, target.target):
            keys = shared_keys(conn, schema, target.target, target.keys, own, batch_size)
            if keys:
                shared[target.target] = keys
    return shared
