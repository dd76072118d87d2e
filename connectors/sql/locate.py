"""Find a subject's rows in one SQL store: identity seeds, then references, breadth-first.

Seeds: every table with identity columns of a kind the request carries is searched with
``column IN (values)`` (values converted to the column's type; a value the type cannot
hold matches nothing; mask tokens are never searched for). Case-insensitive identity
columns are matched on every backend alike, non-ASCII letters included, and never
accent-insensitively (``connectors.sql.casefold``): ``lower(column) IN (case variants)``
on SQLite and PostgreSQL; on MySQL/MariaDB ``column IN (values)`` under the ``_ci``
collation (index) and an exact-modulo-case test in the binary collation. A case-sensitive
identity column under a ``_ci`` collation is also compared in the binary collation of its
character set, so ``c-0001`` does not find ``C-0001``.

Owned rows: the identity matches, then breadth-first along ``holders`` references: the
child rows referencing an owned row are owned too (a visited set per table, so cycles
terminate and self-references, a reply to the subject's ticket, are followed to any depth).

Linked rows: the rows that owned rows point at through ``target`` references (the
subject's address), one hop; never from a linked row on to its other holders. A linked
row whose table is owned through a reference of its own, with that reference set (B's
card on A's order), belongs to another person: it is *withheld* (reported, never exported
or changed). A table with identity columns of its own (a *subject table*) is entered only
through them, in either direction (``connectors.sql.graph``).

Bounded work: one statement per table (or edge) per batch of keys, never one per row, and
no table is read whole; only the keys of the subject's own rows are held in memory.
Derived identities (``derives``) are collected from the rows found, as text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from config.schema import IdentityColumn
from connectors.base import Findings, Identities, Key, TargetFinding
from connectors.sql.config import SqlStore
from connectors.sql.edges import Edge
from connectors.sql.graph import has_personal_data, holders_edges, target_edges
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
    """``column IN values`` for one identity column, or None when no value can match.

    Mask tokens are never searched for (a masked row must not be found again); matching
    without case is delegated to ``connectors.sql.casefold``.
    """
    # Imported here: this function alone owns identity matching in this module.
    from connectors.sql.casefold import lower_condition, mysql_ci_condition, searchable

    col = table.c[ident.column]
    values = searchable(values)
    if ident.case_insensitive and type_family(col) == "string":
        if schema.is_mysql and mysql_case_insensitive(table, ident.column):
            # The _ci collation ignores case and keeps the index usable, but may ignore
            # accents too: the binary-collated lower() keeps them apart.
            binary = mysql_binary_collation(table, ident.column)
            return mysql_ci_condition(ident.kind, col, values, binary)
        # lower() on both sides over the value's case variants: SQLite (and PostgreSQL
        # under a C locale) fold only ASCII.
        return lower_condition(ident.kind, col, values)
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


def owner_condition(
    schema: StoreSchema, holders: Sequence[Edge], table: str
) -> sa.ColumnElement[bool] | None:
    """Rows of ``table`` another person owns: an owner reference of theirs is set.

    None when no ``holders`` reference (other than a self-reference) makes its rows owned.
    """
    owners = [e for e in holders if e.child == table and e.parent != table]
    if not owners:
        return None
    t = schema.tables[table]
    return sa.or_(*(sa.and_(*(t.c[c].is_not(None) for c in e.columns)) for e in owners))


def _sort_key(key: Key) -> tuple[tuple[str, Any], ...]:
    return tuple((type(v).__name__, "" if v is None else v) for v in key)


class Search:
    """The state of one locate: owned, linked and withheld keys per table, and how reached.

    ``connectors.sql.locate_many`` keeps one per subject and feeds it the rows its
    set-based statements attribute to that subject (``add``, ``note_via``, ``targets``).
    """

    def __init__(
        self, conn: Connection, schema: StoreSchema, store: SqlStore, batch_size: int
    ) -> None:
        self.conn = conn
        self.schema = schema
        self.store = store
        self.batch_size = batch_size
        self.found: dict[str, dict[Key, None]] = {}  # owned rows; insertion-ordered sets
        self.linked: dict[str, dict[Key, None]] = {}
        self.withheld: dict[str, dict[Key, None]] = {}
        self.via: dict[str, list[str]] = {}
        self.holders = holders_edges(schema.edges, store)
        self.links = target_edges(schema.edges, store)

    def note_via(self, table: str, via: str) -> None:
        if via not in self.via.setdefault(table, []):
            self.via[table].append(via)  # every path that matched, not only the first

    def add(self, table: str, keys: Iterable[Key], via: str) -> list[Key]:
        """Record owned ``keys`` of ``table``; return the ones not seen before."""
        seen = self.found.setdefault(table, {})
        matched = [k for k in keys if None not in k]
        new = [k for k in matched if k not in seen]
        for key in new:
            seen[key] = None
        if matched:
            self.note_via(table, via)
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
                    new = self.add(decl.name, keys, f"identity:{ident.kind}")
                    frontier.setdefault(decl.name, []).extend(new)
        return frontier

    def _values(self, table: str, keys: Sequence[Key], columns: tuple[str, ...]) -> list[Key]:
        """The ``columns`` values of the rows with ``keys`` (projected from keys if possible)."""
        return column_values(self.conn, self.schema, table, keys, columns, self.batch_size)

    def traverse(self, frontier: dict[str, list[Key]]) -> None:
        """Follow ``holders`` references level by level until no new owned rows are found."""
        while frontier:
            following: dict[str, list[Key]] = {}
            for parent, keys in frontier.items():
                cache: dict[tuple[str, ...], list[Key]] = {}
                for edge in self.holders:
                    if edge.parent != parent:
                        continue
                    if edge.to_columns not in cache:
                        cache[edge.to_columns] = self._values(parent, keys, edge.to_columns)
                    child = self.schema.tables[edge.child]
                    for batch in batches(cache[edge.to_columns], self.batch_size):
                        found = self._select_keys(
                            edge.child, key_clause(child, edge.columns, batch)
                        )
                        new = self.add(edge.child, found, edge.label)
                        following.setdefault(edge.child, []).extend(new)
            frontier = {t: k for t, k in following.items() if k}

    def link(self) -> None:
        """The rows owned rows point at through ``target`` references: one hop, no further.

        Tables without personal fields (a product catalogue) are not searched: their rows
        say nothing about the subject. A linked row that belongs to someone else is withheld.
        """
        for edge in self.links:
            owned = list(self.found.get(edge.child, ()))
            if not owned or not has_personal_data(self.store, edge.parent):
                continue
            parent = self.schema.tables[edge.parent]
            own = self.found.get(edge.parent, {})
            linked = self.linked.setdefault(edge.parent, {})
            for batch in batches(self._values(edge.child, owned, edge.columns), self.batch_size):
                keys = self._select_keys(edge.parent, key_clause(parent, edge.to_columns, batch))
                new = [k for k in keys if None not in k and k not in own]
                linked.update(dict.fromkeys(new))
                if new:
                    self.note_via(edge.parent, f"linked from {edge.label}")
        for table, linked_keys in self.linked.items():
            if linked_keys:
                self._withhold(table, list(linked_keys))

    def _withhold(self, table: str, keys: list[Key]) -> None:
        """Move linked rows that another person owns (their owner reference is set)."""
        owned_by_someone = owner_condition(self.schema, self.holders, table)
        if owned_by_someone is None:
            return
        t = self.schema.tables[table]
        key_cols = self.schema.keys[table]
        for batch in batches(keys, self.batch_size):
            found = self._select_keys(
                table, sa.and_(key_clause(t, key_cols, batch), owned_by_someone)
            )
            for key in found:
                self.linked[table].pop(key, None)
                self.withheld.setdefault(table, {})[key] = None

    def derived(self) -> dict[str, frozenset[str]]:
        """Derived identity values (as text) of the owned rows, by derived name."""
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
        findings: list[TargetFinding] = []
        for decl in self.store.tables:
            owned = list(self.found.get(decl.name, ()))
            linked = sorted(self.linked.get(decl.name, ()), key=_sort_key)
            withheld = sorted(self.withheld.get(decl.name, ()), key=_sort_key)
            if not (owned or linked or withheld):
                continue
            findings.append(
                TargetFinding(
                    target=decl.name,
                    keys=tuple(sorted([*owned, *linked], key=_sort_key)),
                    categories=table_categories(self.store, decl.name),
                    via=", ".join(self.via.get(decl.name, ())),
                    linked=tuple(linked),
                    withheld=tuple(withheld),
                )
            )
        return tuple(findings)


def column_values(  # noqa: PLR0917 - a plain helper shared by locate and the shared-row check
    conn: Connection,
    schema: StoreSchema,
    table: str,
    keys: Sequence[Key],
    columns: tuple[str, ...],
    batch_size: int,
) -> list[Key]:
    """The distinct non-NULL ``columns`` values of the rows with ``keys``, sorted.

    Projected from the keys when the columns are key columns, else read in key batches.
    """
    key_cols = schema.keys[table]
    if all(c in key_cols for c in columns):
        idx = [key_cols.index(c) for c in columns]
        values = {tuple(k[i] for i in idx) for k in keys}
    else:
        t = schema.tables[table]
        values = set()
        for batch in batches(keys, batch_size):
            stmt = (
                sa.select(*(t.c[c] for c in columns))
                .where(key_clause(t, key_cols, batch))
                .distinct()
            )
            with sql_errors(schema.store, "locate", table):
                values.update(json_key(row) for row in conn.execute(stmt))
    return sorted((v for v in values if None not in v), key=_sort_key)


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
        search = Search(conn, schema, store, batch_size)
        search.traverse(search.seed(identities))
        search.link()
        derived = search.derived()
    return Findings(
        store=store.name, targets=search.targets(), derived=derived, warnings=tuple(warnings)
    )
