"""Subjects under a legal hold found by pseudonym: the SQL stores' ``SubjectScanning``.

A hold names a subject only by pseudonym, and a pseudonym cannot be reversed. So the
identity columns of the store's subject tables are read in keyset pages and each value is
pseudonymized; the values that match a held pseudonym become that subject's identities.
Only the held subjects' values are kept; the scan costs one pass over the identity
columns, and runs only when a sweep target has a subject hold in force
(``engine.sweep_holds``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from connectors.base import SubjectValues
from connectors.sql.config import SqlStore
from connectors.sql.schema import StoreSchema
from core.pseudonym import Pseudonymizer

PAGE = 10_000


def _pages(conn: sa.Connection, key: list[Any], cols: list[Any]) -> Iterator[sa.Row[Any]]:
    """Rows of (key..., identity columns...) in key order, one page at a time."""
    last: tuple[Any, ...] | None = None
    key_expr = key[0] if len(key) == 1 else sa.tuple_(*key)
    while True:
        query = sa.select(*key, *cols).order_by(*key).limit(PAGE)
        if last is not None:
            bound = last[0] if len(last) == 1 else sa.tuple_(*(sa.literal(v) for v in last))
            query = query.where(key_expr > bound)
        rows = conn.execute(query).all()
        yield from rows
        if len(rows) < PAGE:
            return
        last = tuple(rows[-1][: len(key)])


def scan_subjects(
    engine: Engine,
    schema: StoreSchema,
    store: SqlStore,
    held: frozenset[str],
    maker: Pseudonymizer,
) -> SubjectValues:
    """Pseudonym -> identity kind -> values, for the held subjects found in ``store``."""
    found: SubjectValues = {}
    with engine.connect() as conn:
        for decl in store.tables:
            if not decl.identity:
                continue
            table = schema.tables[decl.name]
            key = [table.c[c] for c in schema.keys[decl.name]]
            cols = [table.c[i.column] for i in decl.identity]
            for row in _pages(conn, key, cols):
                for ident, value in zip(decl.identity, row[len(key) :], strict=True):
                    if value is None:
                        continue
                    text = str(value)
                    psn = maker.of_value(ident.kind, text)
                    if psn in held:
                        found.setdefault(psn, {}).setdefault(ident.kind, set()).add(text)
    return found
