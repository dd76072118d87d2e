"""Find a subject's rows in one SQL store: identity seeds, then references, breadth-first.

Seeds: every table with identity columns of a kind the request carries is searched with
``column IN (values)`` (values converted to the column's type; a value the type cannot
hold matches nothing). Case-insensitive identity columns compare ``lower(column)`` with
``lower(value)`` on SQLite and PostgreSQL (both folded by the database, alike; SQLite
folds ASCII letters only); on MySQL/MariaDB, whose ``_ci`` collations
already compare without case, the column is compared as it is (``lower()`` would keep
the index from being used) unless its reflected collation is case-sensitive. Conversely a
case-sensitive identity column under a ``_ci`` collation is also compared in the binary
collation of its character set, so ``c-0001`` does not find ``C-0001``.

Traversal: from the rows found in a table P, every edge into P is followed: the child
rows whose reference columns hold P's referenced values are the subject's too. Levels are
processed breadth-first with a visited set per table, so cycles terminate and
self-references (a reply to the subject's ticket) are followed to any depth.

Rule: a table with identity columns of its own is a *subject table* and is entered only
through them, never through a reference; otherwise "customers referred by this customer"
would be swept in as if they were the subject.

Bounded work: one statement per table (or edge) per batch of keys, never one per row, and
no table is read whole; only the keys of the subject's own rows are held in memory.
Derived identities (``derives``) are collected from the rows found, as text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from config.schema import IdentityColumn, SqlStore
from connectors.base import Findings, Identities, Key, TargetFinding
from connectors.sql.graph import subject_tables
from connectors.sql.schema import (
    StoreSchema,
    batches,
    coerce,
    json_key,
    key_clause,
    sql_errors,
    type_family,
)


def table_categories(store: SqlStore, table: str) -> tuple[str, ...]:
    """The union of the categories of a table's declared fields, sorted."""
    return tuple(sorted({c for cats in store.table(table).fields.values() for c in cats}))


def mysql_case_insensitive(table: sa.Table, column: str) -> bool:
    """Whether a MySQL/MariaDB column compares without case (its collation, else the table's).

    Columns inherit the table's collation, which SQLAlchemy reflects as ``mysql_collate``;
    when neither is known the server default (a ``_ci`` collation) applies.
    """
    collation = getattr(table.c[column].type, "collation", None)
    if not collation:
        collation = table.dialect_options["mysql"].get("collate")
    if not collation:
        return True
    return str(collation).lower().endswith("_ci")


def mysql_binary_collation(table: sa.Table, column: str) -> str:
    """The binary collation of a MySQL/MariaDB column's character set (``utf8mb4_bin``)."""
    charset = getattr(table.c[column].type, "charset", None)
    if not charset:
        charset = table.dialect_options["mysql"].get("default charset") or "utf8mb4"
    return f"{charset}_bin"


def identity_condition(
    schema: StoreSchema, table: sa.Table, ident: IdentityColumn, values: Sequence[str]
) -> sa.ColumnElement[bool] | None:
    """``column IN values`` for one identity column, or None when no value can match."""
    col = table.c[ident.column]
    if ident.case_insensitive and type_family(col) == "string":
        if schema.is_mysql and mysql_case_insensitive(table, ident.column):
            return col.in_(list(values))  # the collation ignores case; keeps the index usable
        # lower() on both sides, in the database: SQLite folds only ASCII, and folding the
        # values in Python would then miss even an exact non-ASCII match.
        return sa.func.lower(col).in_([sa.func.lower(sa.literal(v, col.type)) for v in values])
    bound: list[Any] = []
    for value in values:
        try:
            bound.append(coerce(col, value))
        except ValueError:
            continue  # e.g. 'abc' against an INTEGER column: cannot match
    if not bound:
        return None
    condition: sa.ColumnElement[bool] = col.in_(bound)
    if schema.is_mysql and type_family(col) == "string" and mysql_case_insensitive(table, col.name):
        # A case-sensitive identity under a _ci collation: the plain IN still uses the
        # index, the binary-collated IN makes the match exact.
        exact = col.collate(mysql_binary_collation(table, col.name)).in_(bound)
        condition = sa.and_(condition, exact)
    return condition


def _sort_key(key: Key) -> tuple[tuple[str, Any], ...]:
    return tuple((type(v).__name__, "" if v is None else v) for v in key)


class _Search:
    """The state of one locate: keys found per table, and how each table was reached."""

    def __init__(
        self, conn: Connection, schema: StoreSchema, store: SqlStore, batch_size: int
    ) -> None:
        self.conn = conn
        self.schema = schema
        self.store = store
        self.batch_size = batch_size
        self.found: dict[str, dict[Key, None]] = {}  # insertion-ordered sets
        self.via: dict[str, list[str]] = {}
        self.subjects = subject_tables(store)

    def _add(self, table: str, keys: Iterable[Key], via: str) -> list[Key]:
        """Record ``keys`` of ``table``; return the ones not seen before."""
        seen = self.found.setdefault(table, {})
        matched = [k for k in keys if None not in k]
        new = [k for k in matched if k not in seen]
        for key in new:
            seen[key] = None
        if matched and via not in self.via.setdefault(table, []):
            self.via[table].append(via)  # every path that matched, not only the first
        return new

    def _select_keys(self, table: str, condition: sa.ColumnElement[bool]) -> list[Key]:
        t = self.schema.tables[table]
        stmt = sa.select(*(t.c[c] for c in self.schema.keys[table])).where(condition)
        if table in self.schema.unkeyed:
            stmt = stmt.distinct()  # keyed by non-unique match columns
        with sql_errors(self.store.name, "locate", table):
            return [json_key(row) for row in self.conn.execute(stmt)]

    def seed(self, identities: Identities) -> dict[str, list[Key]]:
        """Search every subject table's identity columns of the given kinds."""
        frontier: dict[str, list[Key]] = {}
        for decl in self.store.tables:
            for ident in decl.identity:
                values = sorted(identities.get(ident.kind, ()))
                for batch in batches(values, self.batch_size):
                    cond = identity_condition(
                        self.schema, self.schema.tables[decl.name], ident, batch
                    )
                    if cond is None:
                        continue
                    keys = self._select_keys(decl.name, cond)
                    new = self._add(decl.name, keys, f"identity:{ident.kind}")
                    frontier.setdefault(decl.name, []).extend(new)
        return frontier

    def _values(self, table: str, keys: Sequence[Key], columns: tuple[str, ...]) -> list[Key]:
        """The ``columns`` values of the rows with ``keys`` (projected from keys if possible)."""
        key_cols = self.schema.keys[table]
        if all(c in key_cols for c in columns):
            idx = [key_cols.index(c) for c in columns]
            values = {tuple(k[i] for i in idx) for k in keys}
        else:
            t = self.schema.tables[table]
            values = set()
            for batch in batches(keys, self.batch_size):
                stmt = (
                    sa.select(*(t.c[c] for c in columns))
                    .where(key_clause(t, key_cols, batch))
                    .distinct()
                )
                with sql_errors(self.store.name, "locate", table):
                    values.update(json_key(row) for row in self.conn.execute(stmt))
        return sorted((v for v in values if None not in v), key=_sort_key)

    def traverse(self, frontier: dict[str, list[Key]]) -> None:
        """Follow references level by level until no new rows are found."""
        while frontier:
            following: dict[str, list[Key]] = {}
            for parent, keys in frontier.items():
                cache: dict[tuple[str, ...], list[Key]] = {}
                for edge in self.schema.edges_into(parent):
                    if edge.child in self.subjects:
                        continue  # subject tables are entered only through identity columns
                    if edge.to_columns not in cache:
                        cache[edge.to_columns] = self._values(parent, keys, edge.to_columns)
                    child = self.schema.tables[edge.child]
                    for batch in batches(cache[edge.to_columns], self.batch_size):
                        found = self._select_keys(
                            edge.child, key_clause(child, edge.columns, batch)
                        )
                        new = self._add(edge.child, found, edge.label)
                        following.setdefault(edge.child, []).extend(new)
            frontier = {t: k for t, k in following.items() if k}

    def derived(self) -> dict[str, frozenset[str]]:
        """Derived identity values (as text) of the rows found, by derived name."""
        derived: dict[str, set[str]] = {}
        for decl in self.store.tables:
            keys = list(self.found.get(decl.name, ()))
            if not decl.derives or not keys:
                continue
            for item in decl.derives:
                values = self._values(decl.name, keys, (item.column,))
                derived.setdefault(item.name, set()).update(str(v[0]) for v in values)
        return {name: frozenset(values) for name, values in derived.items()}

    def targets(self) -> tuple[TargetFinding, ...]:
        return tuple(
            TargetFinding(
                target=decl.name,
                keys=tuple(sorted(self.found[decl.name], key=_sort_key)),
                categories=table_categories(self.store, decl.name),
                via=", ".join(self.via.get(decl.name, ())),
            )
            for decl in self.store.tables
            if self.found.get(decl.name)
        )


def locate(
    engine: Engine,
    schema: StoreSchema,
    store: SqlStore,
    identities: Identities,
    batch_size: int = 1000,
    *,
    warnings: Sequence[str] = (),
) -> Findings:
    """Every row of the subject in ``store``, with derived identities (see the module doc).

    ``warnings`` (e.g. missing indexes, computed once per connector) are carried into the
    findings. Identity kinds the store does not use are ignored.
    """
    with engine.connect() as conn:
        search = _Search(conn, schema, store, batch_size)
        search.traverse(search.seed(identities))
        derived = search.derived()
    return Findings(
        store=store.name, targets=search.targets(), derived=derived, warnings=tuple(warnings)
    )
