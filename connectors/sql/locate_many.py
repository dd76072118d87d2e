"""Locate many subjects in one SQL store with set-based statements (bulk requests).

``locate_many(subjects)[i]`` equals ``locate(subjects[i])`` (``connectors.sql.locate``):
the same owned, linked and withheld rows, ``via`` in the same order, the same derived
identities and warnings. The subjects go in chunks of at most ``SUBJECTS_PER_CHUNK``; per
chunk, every step of locate runs once for the union of the subjects' values or keys (IN
lists of at most ``batch_size``) and selects what attributes each row to the subjects it
belongs to:

- identity seeds (``connectors.sql.seed_match``): the identity column as the match
  compares it (``lower(column)`` for a case-insensitive identity), compared in Python
  with each subject's values (their case variants, or the values converted to the
  column's type; trailing blanks ignored where the database ignores them: MySQL/MariaDB
  PAD SPACE collations, CHAR columns). Should a collation match a row that no subject's
  value explains, that one step runs per subject: the result stays exact, only slower;
- ``holders`` references: parent LEFT JOIN child for the union of the level's parent keys,
  so each child row comes with the parent row it hangs off, and each subject gets the
  children of its own rows (the LEFT JOIN also says whether its rows hold reference values
  at all, which decides the order locate walks, hence the order of ``via``);
- ``target`` references: owned child JOIN parent, for the union of the owned child keys;
- withheld rows: whether a linked row is another person's is a property of the row, asked
  once for the union; derived identities are read with the key of their row.

Each subject's state is a ``locate.Search``, fed the rows attributed to it in the order
locate would meet them, so its findings are built by the same code. The levels of the
reference walk run in lockstep: a level's statements serve every subject still walking.
So the statements per chunk depend on the references, the depth of the walk (of
self-references in the data, too) and the key batches, never on the number of subjects.
A row two subjects reach (a household's address) is attributed to both.

Known limit: keys are compared exactly, as locate's own bookkeeping compares them; a
table keyed by a non-unique string column under a case-insensitive MySQL collation
(no primary key, keys differing only in case) could be attributed differently.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from config.schema import IdentityColumn
from connectors.base import Findings, Identities, Key
from connectors.sql.config import SqlStore
from connectors.sql.edges import Edge
from connectors.sql.graph import has_personal_data
from connectors.sql.locate import Search, identity_condition, owner_condition
from connectors.sql.schema import (
    StoreSchema,
    batches,
    json_key,
    json_value,
    key_clause,
    sql_errors,
    type_family,
)
from connectors.sql.seed_match import seed_match

SUBJECTS_PER_CHUNK = 500
"""Subjects located together: bounds the memory of a chunk and the keys its statements bind."""

Frontier = dict[str, list[Key]]


def _mysql_collation(table: sa.Table, column: str) -> str | None:
    collation = getattr(table.c[column].type, "collation", None)
    return collation or table.dialect_options["mysql"].get("collate")


class _Batch:
    """One chunk of subjects: a ``Search`` each, fed by statements over all of them."""

    def __init__(
        self,
        conn: Connection,
        schema: StoreSchema,
        store: SqlStore,
        batch_size: int,
        subjects: Sequence[Identities],
    ) -> None:
        self.conn = conn
        self.schema = schema
        self.store = store
        self.batch_size = batch_size
        self.subjects = subjects
        self.states = [Search(conn, schema, store, batch_size) for _ in subjects]
        probe = Search(conn, schema, store, batch_size)
        self.holders, self.links = probe.holders, probe.links

    # -- statements ------------------------------------------------------------------------

    def _rows(self, table: str, stmt: sa.Select[Any]) -> list[Key]:
        with sql_errors(self.store.name, "locate", table):
            return [json_key(row) for row in self.conn.execute(stmt)]

    def _select_keys(self, table: str, condition: sa.ColumnElement[bool]) -> list[Key]:
        t = self.schema.tables[table]
        stmt = sa.select(*(t.c[c] for c in self.schema.keys[table])).where(condition)
        if table in self.schema.unkeyed:
            stmt = stmt.distinct()
        return self._rows(table, stmt)

    def _on(
        self, child: sa.FromClause, parent: sa.FromClause, edge: Edge
    ) -> sa.ColumnElement[bool]:
        """The reference as a join condition; on MySQL compared in the child's collation."""
        base_child, base_parent = self.schema.tables[edge.child], self.schema.tables[edge.parent]
        terms = []
        for cc, pc in zip(edge.columns, edge.to_columns, strict=True):
            right: sa.ColumnElement[Any] = parent.c[pc]
            if self.schema.is_mysql and type_family(base_child.c[cc]) == "string":
                mine = _mysql_collation(base_child, cc)
                theirs = _mysql_collation(base_parent, pc)
                if mine and theirs and mine != theirs:  # else: "illegal mix of collations"
                    right = right.collate(mine)
            terms.append(child.c[cc] == right)
        return sa.and_(*terms)

    def _aliases(self, edge: Edge) -> tuple[sa.FromClause, sa.FromClause]:
        """(child, parent) selectables; a self-reference joins the table to an alias."""
        parent = self.schema.tables[edge.parent]
        child: sa.FromClause = self.schema.tables[edge.child]
        if edge.child == edge.parent:
            child = parent.alias("referencing")
        return child, parent

    # -- seeds -----------------------------------------------------------------------------

    def _seed_step(self, name: str, ident: IdentityColumn) -> list[list[Key]]:
        """Per subject, the rows of ``name`` its values of ``ident`` match."""
        table = self.schema.tables[name]
        match = seed_match(self.schema, table, ident)
        values = [sorted(ids.get(ident.kind, ())) for ids in self.subjects]
        union = sorted({v for vals in values for v in vals})
        key_cols = [table.c[c] for c in self.schema.keys[name]]
        by_form: dict[Hashable, list[Key]] = {}
        for batch in batches(union, self.batch_size):
            cond = identity_condition(self.schema, table, ident, batch)
            if cond is None:
                continue
            stmt = sa.select(match.selected, *key_cols).where(cond)
            with sql_errors(self.store.name, "locate", name):
                for row in self.conn.execute(stmt):
                    by_form.setdefault(match.row_form(row[0]), []).append(json_key(row[1:]))
        forms = [match.subject_forms(vals) for vals in values]
        explained: set[Hashable] = set().union(*forms)
        if any(form not in explained for form in by_form):
            return [self._seed_each(name, ident, vals) for vals in values]
        return [[k for form in subject for k in by_form.get(form, ())] for subject in forms]

    def _seed_each(self, name: str, ident: IdentityColumn, values: Sequence[str]) -> list[Key]:
        """One subject's matches as locate finds them (a collation matched more than ours)."""
        table = self.schema.tables[name]
        keys: list[Key] = []
        for batch in batches(values, self.batch_size):
            cond = identity_condition(self.schema, table, ident, batch)
            if cond is not None:
                keys += self._select_keys(name, cond)
        return keys

    def seed(self) -> list[Frontier]:
        frontiers: list[Frontier] = [{} for _ in self.subjects]
        for decl in self.store.tables:
            for ident in decl.identity:
                if not any(ids.get(ident.kind) for ids in self.subjects):
                    continue
                per_subject = self._seed_step(decl.name, ident)
                for state, frontier, keys in zip(self.states, frontiers, per_subject, strict=True):
                    new = state.add(decl.name, keys, f"identity:{ident.kind}")
                    if new:
                        frontier.setdefault(decl.name, []).extend(new)
        return frontiers

    # -- holders references ------------------------------------------------------------------

    def _follow(self, edge: Edge, keys: Sequence[Key]) -> tuple[set[Key], dict[Key, list[Key]]]:
        """For parent ``keys``: those holding reference values, and each one's child rows."""
        child, parent = self._aliases(edge)
        pkey, ckey = self.schema.keys[edge.parent], self.schema.keys[edge.child]
        width, values = len(pkey), len(edge.to_columns)
        stmt_base = sa.select(
            *(parent.c[c] for c in pkey),
            *(parent.c[c] for c in edge.to_columns),
            *(child.c[c] for c in ckey),
        ).select_from(parent.outerjoin(child, self._on(child, parent, edge)))
        holding: set[Key] = set()
        children: dict[Key, list[Key]] = {}
        base = self.schema.tables[edge.parent]
        for batch in batches(keys, self.batch_size):
            stmt = stmt_base.where(key_clause(base, pkey, batch))
            for row in self._rows(edge.child, stmt):
                key, refs, kid = row[:width], row[width : width + values], row[width + values :]
                if None not in refs:
                    holding.add(key)
                if None not in kid:
                    children.setdefault(key, []).append(kid)
        return holding, children

    def _level(self, frontiers: list[Frontier]) -> list[Frontier]:
        """One level of the walk for every subject: the next frontiers."""
        union: dict[str, dict[Key, None]] = {}
        for frontier in frontiers:
            for parent, keys in frontier.items():
                union.setdefault(parent, {}).update(dict.fromkeys(keys))
        followed = {
            edge: self._follow(edge, list(union[edge.parent]))
            for edge in self.holders
            if edge.parent in union
        }
        return [
            self._advance(state, frontier, followed)
            for state, frontier in zip(self.states, frontiers, strict=True)
        ]

    def _advance(
        self,
        state: Search,
        frontier: Frontier,
        followed: dict[Edge, tuple[set[Key], dict[Key, list[Key]]]],
    ) -> Frontier:
        """``Search.traverse``'s step for one subject, from the level's shared results."""
        following: Frontier = {}
        for parent, keys in frontier.items():
            for edge in self.holders:
                if edge.parent != parent:
                    continue
                holding, children = followed[edge]
                if not any(k in holding for k in keys):
                    continue  # no reference values: locate issues no child query
                found = [kid for k in keys for kid in children.get(k, ())]
                new = state.add(edge.child, found, edge.label)
                following.setdefault(edge.child, []).extend(new)
        return {t: k for t, k in following.items() if k}

    def traverse(self, frontiers: list[Frontier]) -> None:
        while any(frontiers):
            frontiers = self._level(frontiers)

    # -- target references, withheld rows ----------------------------------------------------

    def _targets_of(self, edge: Edge, keys: Sequence[Key]) -> dict[Key, list[Key]]:
        """For owned child ``keys``: the parent rows each points at through ``edge``."""
        base = self.schema.tables[edge.child]
        parent: sa.FromClause = self.schema.tables[edge.parent]
        if edge.child == edge.parent:
            parent = base.alias("referenced")
        ckey, pkey = self.schema.keys[edge.child], self.schema.keys[edge.parent]
        stmt_base = sa.select(*(base.c[c] for c in ckey), *(parent.c[c] for c in pkey)).select_from(
            base.join(parent, self._on(base, parent, edge))
        )
        found: dict[Key, list[Key]] = {}
        for batch in batches(keys, self.batch_size):
            stmt = stmt_base.where(key_clause(base, ckey, batch))
            for row in self._rows(edge.parent, stmt):
                found.setdefault(row[: len(ckey)], []).append(row[len(ckey) :])
        return found

    def link(self) -> None:
        """``Search.link`` for every subject: one statement per edge (and key batch)."""
        for edge in self.links:
            if not has_personal_data(self.store, edge.parent):
                continue
            owners = [s for s in self.states if s.found.get(edge.child)]
            if not owners:
                continue
            union: dict[Key, None] = {}
            for state in owners:
                union.update(dict.fromkeys(state.found[edge.child]))
            pointed = self._targets_of(edge, list(union))
            for state in owners:
                own = state.found.get(edge.parent, {})
                linked = state.linked.setdefault(edge.parent, {})
                matched = [p for k in state.found[edge.child] for p in pointed.get(k, ())]
                new = [k for k in matched if None not in k and k not in own]
                linked.update(dict.fromkeys(new))
                if new:
                    state.note_via(edge.parent, f"linked from {edge.label}")
        self._withhold()

    def _withhold(self) -> None:
        tables = dict.fromkeys(t for s in self.states for t, keys in s.linked.items() if keys)
        for table in tables:
            condition = owner_condition(self.schema, self.holders, table)
            if condition is None:
                continue
            union: dict[Key, None] = {}
            for state in self.states:
                union.update(dict.fromkeys(state.linked.get(table, ())))
            t = self.schema.tables[table]
            others: set[Key] = set()
            for batch in batches(list(union), self.batch_size):
                cond = sa.and_(key_clause(t, self.schema.keys[table], batch), condition)
                others.update(self._select_keys(table, cond))
            for state in self.states:
                for key in [k for k in state.linked.get(table, ()) if k in others]:
                    state.linked[table].pop(key)
                    state.withheld.setdefault(table, {})[key] = None

    # -- derived identities ------------------------------------------------------------------

    def _column_by_key(self, table: str, keys: Sequence[Key], column: str) -> dict[Key, set[str]]:
        """Per key, the non-NULL values (as text) of ``column`` (projected from it if a key)."""
        key_cols = self.schema.keys[table]
        values: dict[Key, set[str]] = {}
        if column in key_cols:
            i = key_cols.index(column)
            for key in keys:
                if key[i] is not None:
                    values.setdefault(key, set()).add(str(key[i]))
            return values
        t = self.schema.tables[table]
        stmt_base = sa.select(*(t.c[c] for c in key_cols), t.c[column]).distinct()
        for batch in batches(keys, self.batch_size):
            stmt = stmt_base.where(key_clause(t, key_cols, batch))
            with sql_errors(self.store.name, "locate", table):
                for row in self.conn.execute(stmt):
                    value = json_value(row[-1])
                    if value is not None:
                        values.setdefault(json_key(row[:-1]), set()).add(str(value))
        return values

    def derived(self) -> list[dict[str, frozenset[str]]]:
        derived: list[dict[str, set[str]]] = [{} for _ in self.states]
        for decl in self.store.tables:
            holders = [(i, s) for i, s in enumerate(self.states) if s.found.get(decl.name)]
            if not decl.derives or not holders:
                continue
            union: dict[Key, None] = {}
            for _, state in holders:
                union.update(dict.fromkeys(state.found[decl.name]))
            for item in decl.derives:
                by_key = self._column_by_key(decl.name, list(union), item.column)
                for i, state in holders:
                    found = derived[i].setdefault(item.name, set())
                    for key in state.found[decl.name]:
                        found.update(by_key.get(key, ()))
        return [{name: frozenset(v) for name, v in d.items()} for d in derived]

    def run(self, warnings: tuple[str, ...]) -> list[Findings]:
        self.traverse(self.seed())
        self.link()
        derived = self.derived()
        return [
            Findings(store=self.store.name, targets=state.targets(), derived=d, warnings=warnings)
            for state, d in zip(self.states, derived, strict=True)
        ]


def locate_many(
    engine: Engine,
    schema: StoreSchema,
    store: SqlStore,
    subjects: Sequence[Identities],
    batch_size: int = 1000,
    *,
    warnings: Sequence[str] = (),
    subjects_per_chunk: int = SUBJECTS_PER_CHUNK,
) -> list[Findings]:
    """Per subject, what ``locate`` finds for it, in set-based statements (module doc)."""
    results: list[Findings] = []
    with engine.connect() as conn:
        for chunk in batches(list(subjects), subjects_per_chunk):
            batch = _Batch(conn, schema, store, batch_size, chunk)
            results += batch.run(tuple(warnings))
    return results
