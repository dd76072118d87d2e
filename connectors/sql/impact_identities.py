"""The identities of affected subjects, for the encrypted package that notifies them.

``affected_keys`` gives each affected subject as the key it was counted by (``customer_id``
values, lower-cased e-mail addresses). Here those keys go back to the subject tables that
hold them (a table deriving that name, else its identity columns of that kind), in chunks
of at most ``CHUNK`` values per IN list, matched as locate matches identities (values
converted to the column's type, case-insensitive columns through
``connectors.sql.casefold``). Each subject row found becomes one ``ExportItem`` with the
key as ``affected_keys`` wrote it and every identity column of the row by its kind.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from config.schema import IdentityColumn, Table
from connectors.base import ExportItem, JsonScalar
from connectors.sql.config import SqlStore
from connectors.sql.impact import key_expression, read_only
from connectors.sql.locate import identity_condition
from connectors.sql.schema import StoreSchema, batches, json_key, json_value

CHUNK = 1000
"""Values per IN list (case-insensitive columns may add case variants of a value)."""


def _sites(decl: Table, identity: str) -> list[IdentityColumn]:
    """The columns of a subject table that hold ``identity`` (derived first), as identities."""
    insensitive = {i.column for i in decl.identity if i.case_insensitive}
    derived = [d.column for d in decl.derives if d.name == identity]
    if derived:
        return [
            IdentityColumn(column=c, kind=identity, case_insensitive=c in insensitive)
            for c in dict.fromkeys(derived)
        ]
    return [i for i in decl.identity if i.kind == identity]


def _categories(decl: Table) -> tuple[str, ...]:
    return tuple(sorted({c for i in decl.identity for c in decl.fields.get(i.column, ())}))


def _data(decl: Table, identity: str, key: str, row: Sequence[Any]) -> dict[str, JsonScalar]:
    data: dict[str, JsonScalar] = {}
    for ident, value in zip(decl.identity, row, strict=True):
        if value is not None and ident.kind not in data:
            data[ident.kind] = json_value(value)
    data[identity] = key  # as affected_keys gave it, so the caller can pair them
    return data


def subject_identities(
    engine: Engine,
    schema: StoreSchema,
    store: SqlStore,
    identity: str,
    values: Sequence[str],
    *,
    chunk: int = CHUNK,
) -> Iterator[ExportItem]:
    """One item per subject row holding one of ``values`` of ``identity`` (see module doc)."""
    wanted = sorted(set(values))
    sites = [(decl, _sites(decl, identity)) for decl in store.tables if decl.identity]
    sites = [(decl, found) for decl, found in sites if found]
    if not wanted or not sites:
        return
    with read_only(engine, store.name, "reading affected subjects' identities") as conn:
        for decl, columns in sites:
            table = schema.tables[decl.name]
            row_key = [table.c[c] for c in schema.keys[decl.name]]
            idents = [table.c[i.column] for i in decl.identity]
            seen: set[tuple[JsonScalar, ...]] = set()
            categories = _categories(decl)
            for column in columns:
                key = key_expression(schema, table, column.column, column.case_insensitive)
                for batch in batches(wanted, chunk):
                    condition = identity_condition(schema, table, column, batch)
                    if condition is None:
                        continue
                    stmt = sa.select(key, *row_key, *idents).where(condition)
                    for row in conn.execute(stmt):
                        if len(columns) > 1:  # a row found by two columns is listed once
                            keyed = json_key(row[1 : 1 + len(row_key)])
                            if keyed in seen:
                                continue
                            seen.add(keyed)
                        data = _data(
                            decl, identity, str(json_value(row[0])), row[1 + len(row_key) :]
                        )
                        yield ExportItem(store.name, decl.name, categories, data)
