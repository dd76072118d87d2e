"""The reference graph of a SQL store: which tables are subject tables, which edges locate follows.

A table with identity columns of its own is a *subject table*: it is entered only through
those columns, never through a reference (a customer referred by the subject is another
person, not the subject's data). Every other declared table is entered through the
references it holds to tables already reached.
"""

from __future__ import annotations

from collections.abc import Iterable

from config.schema import SqlStore
from connectors.sql.schema import Edge, StoreSchema


def subject_tables(store: SqlStore) -> frozenset[str]:
    """Tables with identity columns of their own: entered only through those columns."""
    return frozenset(t.name for t in store.tables if t.identity)


def traversal_edges(schema: StoreSchema, store: SqlStore) -> tuple[Edge, ...]:
    """The edges locate follows (from parent rows to the child rows referencing them)."""
    subjects = subject_tables(store)
    return tuple(e for e in schema.edges if e.child not in subjects)


def reachable(schema: StoreSchema, store: SqlStore, kinds: Iterable[str] | None = None) -> set[str]:
    """Tables a subject can be found in, from identity columns of ``kinds`` (all if None)."""
    wanted = None if kinds is None else set(kinds)
    seen = {
        t.name for t in store.tables if any(wanted is None or i.kind in wanted for i in t.identity)
    }
    edges = traversal_edges(schema, store)
    frontier = set(seen)
    while frontier:
        nxt = {e.child for e in edges if e.parent in frontier and e.child not in seen}
        seen |= nxt
        frontier = nxt
    return seen
