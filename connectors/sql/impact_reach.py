"""Which identity reaches a table's rows, and along which references: for incident counts.

A subject table (one with identity columns) is counted by its own key: its first derived
identity (``derives: [{column: id, as: customer_id}]`` counts ``id`` as ``customer_id``),
else its first identity column (by its kind; a case-insensitive one casefolded). Any other
table is counted by the subject tables that own its rows, along the ``holders`` references
that ``graph.resolve_follow`` resolved for locate (this module only walks them):

- every simple path upward (child -> parent) to a subject table is a way a row is owned;
  the subject table of the shortest path (ties: the first in the schema's edge order)
  gives the identity, and every path to that subject table counts (an order held by the
  buyer and a gift recipient, both ``customers``, counts both);
- a table no ``holders`` path leaves, but whose rows owned rows point at through a
  ``target`` reference (an address), is counted by the owners of those rows: one ``target``
  hop down, then up as above (locate links such rows to the subject; never across a
  subject table, and never for a table without personal data);
- otherwise no identity reaches the table: its records count, its subjects do not.

Rows reached only through a self-reference (a ticket reply whose ``customer_id`` is empty)
are counted as records; their subject counts when another row in the part names them.

``holder_routes`` gives a table's *holders chain*: every table its rows belong to through
``holders`` references (an invoice line's invoice, that invoice's customer), each with the
paths reaching it; an incident window may name a column of one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.schema import Table
from connectors.sql.config import SqlStore
from connectors.sql.edges import Edge
from connectors.sql.graph import has_personal_data, holders_edges, target_edges
from connectors.sql.schema import StoreSchema
from core.errors import ConfigError

MAX_PATHS = 64
"""Owner paths enumerated per table, shortest first; a schema needing more is refused."""


@dataclass(frozen=True)
class SubjectKey:
    """How a subject table's rows are told apart: ``column``, known as ``identity``."""

    table: str
    column: str
    identity: str
    casefold: bool  # a case-insensitive identity column: counted by its lower-cased value


@dataclass(frozen=True)
class Hop:
    """One join of an owner path: ``up`` from a child row to the parent it references
    (``holders``), else down from a linked parent to the owned row pointing at it."""

    edge: Edge
    up: bool

    @property
    def to_table(self) -> str:
        """The table this hop arrives at."""
        return self.edge.parent if self.up else self.edge.child


Path = tuple[Hop, ...]


@dataclass(frozen=True)
class Reach:
    """How a table's subjects are counted: by ``subject``'s key along each of ``paths``
    (``()`` is the subject table itself); ``subject`` None when no identity reaches it."""

    subject: SubjectKey | None
    paths: tuple[Path, ...] = ()

    @property
    def identity(self) -> str | None:
        """The identity the subjects are counted by (``customer_id``, ``email``)."""
        return None if self.subject is None else self.subject.identity


def subject_key(decl: Table) -> SubjectKey:
    """The key a subject table (``decl.identity`` not empty) is counted by."""
    insensitive = {i.column for i in decl.identity if i.case_insensitive}
    if decl.derives:
        derived = decl.derives[0]
        return SubjectKey(decl.name, derived.column, derived.name, derived.column in insensitive)
    ident = decl.identity[0]
    return SubjectKey(decl.name, ident.column, ident.kind, ident.case_insensitive)


def _upward(schema: StoreSchema, holders: tuple[Edge, ...], table: str) -> list[Path]:
    """Every simple path of ``holders`` edges from ``table`` up to a subject table."""
    found: list[Path] = []

    def walk(current: str, path: Path, visited: frozenset[str]) -> None:
        if len(found) > MAX_PATHS:
            return
        for edge in holders:
            if edge.child != current or edge.parent in visited:
                continue
            step = (*path, Hop(edge, up=True))
            if edge.parent in schema.subjects:
                found.append(step)
            else:
                walk(edge.parent, step, visited | {edge.parent})

    walk(table, (), frozenset({table}))
    return found


def holder_routes(schema: StoreSchema, store: SqlStore, table: str) -> dict[str, list[Path]]:
    """The tables up ``table``'s holders chain, nearest first, each with every simple path
    of ``holders`` references from ``table`` to it (more than one: reached two ways).

    Never through a subject table (its rows are nobody's through a reference) and never
    back into ``table``; more than ``MAX_PATHS`` paths is refused as ``reach`` refuses them.
    """
    holders = holders_edges(schema.edges, store)
    routes: dict[str, list[Path]] = {}
    frontier: list[tuple[str, Path, frozenset[str]]] = [(table, (), frozenset({table}))]
    found = 0
    while frontier:  # breadth-first: nearer tables first
        nxt: list[tuple[str, Path, frozenset[str]]] = []
        for current, path, visited in frontier:
            for edge in holders:
                if edge.child != current or edge.parent in visited:
                    continue
                step = (*path, Hop(edge, up=True))
                routes.setdefault(edge.parent, []).append(step)
                found += 1
                if found > MAX_PATHS:
                    raise ConfigError(
                        f"store '{store.name}', table '{table}': more than {MAX_PATHS} "
                        "reference paths lead up its holders chain; declare follow: on its "
                        "references to narrow them"
                    )
                nxt.append((edge.parent, step, visited | {edge.parent}))
        frontier = nxt
    return routes


def _linked(schema: StoreSchema, store: SqlStore, table: str) -> list[Path]:
    """Paths from a linked table: one ``target`` hop to the owned row, then up."""
    if not has_personal_data(store, table):
        return []
    holders = holders_edges(schema.edges, store)
    found: list[Path] = []
    for edge in target_edges(schema.edges, store):
        if edge.parent != table or edge.child == table:
            continue
        down = Hop(edge, up=False)
        if edge.child in schema.subjects:
            found.append((down,))
            continue
        found += [(down, *path) for path in _upward(schema, holders, edge.child)]
    return found


def _end(path: Path, start: str) -> str:
    return path[-1].to_table if path else start


def reach(schema: StoreSchema, store: SqlStore, table: str) -> Reach:
    """How the subjects of ``table``'s rows are counted (see the module doc)."""
    if table in schema.subjects:
        return Reach(subject_key(store.table(table)), ((),))
    paths = _upward(schema, holders_edges(schema.edges, store), table)
    if not paths:
        paths = _linked(schema, store, table)
    if not paths:
        return Reach(None)
    if len(paths) > MAX_PATHS:
        raise ConfigError(
            f"store '{store.name}', table '{table}': more than {MAX_PATHS} reference paths "
            "lead to its owners; declare follow: on its references to narrow them"
        )
    paths.sort(key=len)  # stable: the schema's edge order breaks ties
    owner = _end(paths[0], table)
    return Reach(
        subject_key(store.table(owner)),
        tuple(p for p in paths if _end(p, table) == owner),
    )
