"""Whose a row is: subject tables, and which way locate follows each reference.

A table with identity columns of its own is a *subject table* (customers, agents): it is
entered only through those columns, never through a reference in either direction, since
a row reached that way is another person.

Every reference (``Edge``) is followed one way (README, "References"):

- ``holders``: child rows that reference an owned parent row are owned (orders of the
  customer); never applied when the child is a subject table;
- ``target``: the parent row an owned child row points at is *linked* (the customer's
  address); one hop, never from a linked row, never into a subject table;
- ``none``: not followed.

``resolve_follow`` gives every edge its way: the inventory's ``follow:`` where declared,
else the default (held by a subject table: ``target``; pointing at one: ``holders``; else
the nearest owned tables decide, and a tie is refused as ambiguous). It also refuses a
``follow:`` that cannot work. ``reach_notes`` lists declared tables no identity reaches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from connectors.sql.config import SqlStore
from connectors.sql.edges import Edge, FollowWay


def subject_tables(store: SqlStore) -> frozenset[str]:
    """Tables with identity columns of their own: entered only through those columns."""
    return frozenset(t.name for t in store.tables if t.identity)


def _declared_ways(
    store: SqlStore,
) -> dict[tuple[str, tuple[str, ...], str, tuple[str, ...]], FollowWay]:
    return {
        (t.name, r.columns, r.table, r.to_columns): r.follow
        for t in store.tables
        for r in t.references
        if r.follow is not None
    }


def _describe(edge: Edge) -> str:
    return f"{', '.join(edge.columns)} -> {edge.parent}"


def _owner_levels(
    store: SqlStore, edges: Sequence[Edge], ways: dict[Edge, FollowWay], problems: list[str]
) -> dict[str, int]:
    """Hops from a subject table through holders references; fixes ways on the way (in place).

    Breadth-first from the subject tables: a table first met at level n+1 is owned through
    its references into level-n tables. Exactly one undecided such reference becomes
    ``holders``; two or more are ambiguous (a problem) unless one is declared ``holders``.
    """
    subjects = subject_tables(store)
    level = dict.fromkeys(subjects, 0)
    tables = [t.name for t in store.tables]
    n = 0
    while True:
        met: dict[str, list[Edge]] = {}
        for table in tables:
            if table in level:
                continue
            into = [
                e
                for e in edges
                if e.child == table
                and e.parent != table
                and level.get(e.parent) == n
                and ways.get(e) in (None, "holders")
            ]
            if into:
                met[table] = into
        if not met:
            return level
        for table, into in met.items():
            level[table] = n + 1
            if any(ways.get(e) == "holders" for e in edges if e.child == table != e.parent):
                continue  # declared: the undecided ones default to target below
            undecided = [e for e in into if e not in ways]
            if len(undecided) == 1:
                ways[undecided[0]] = "holders"
            elif len(undecided) > 1:
                listed = ", ".join(_describe(e) for e in undecided)
                problems.append(
                    f"store '{store.name}', table '{table}': references {listed} are equally "
                    "near an owned table, so whose its rows are is ambiguous; declare "
                    "follow: holders on the one that makes a row the subject's and "
                    "follow: target (or none) on the others"
                )
                for edge in undecided:
                    ways[edge] = "none"
        n += 1


def _check_declared(
    store: SqlStore,
    declared: dict[Edge, FollowWay],
    ways: dict[Edge, FollowWay],
    level: dict[str, int],
) -> list[str]:
    """``follow:`` values that cannot work, one problem each."""
    subjects = subject_tables(store)
    linked = {e.parent for e, way in ways.items() if way == "target"}
    problems: list[str] = []
    for edge, way in declared.items():
        where = f"store '{store.name}', table '{edge.child}', reference {_describe(edge)}"
        if way == "target" and edge.parent in subjects:
            problems.append(
                f"{where}: follow: target into '{edge.parent}', a table with identities of its "
                "own (another person); locate never enters it through a reference: use none"
            )
        elif way == "holders" and edge.child in subjects:
            problems.append(
                f"{where}: follow: holders on a table with identities of its own; its rows are "
                "found only through those identities: use target or none"
            )
        elif way == "holders" and edge.parent not in level and edge.parent in linked:
            problems.append(
                f"{where}: follow: holders, but '{edge.parent}' rows are only ever linked "
                "(pointed at), never owned; locate never walks from a linked row to the "
                "other rows that reference it (they may be other people's): use target"
            )
    return problems


def resolve_follow(store: SqlStore, edges: Sequence[Edge]) -> tuple[tuple[Edge, ...], list[str]]:
    """``edges`` with the way each is followed, and the problems that refuse the config."""
    subjects = subject_tables(store)
    named = _declared_ways(store)
    declared = {e: named[e.signature] for e in edges if e.signature in named}
    ways: dict[Edge, FollowWay] = dict(declared)
    for edge in edges:
        if edge in ways:
            continue
        if edge.child in subjects:
            ways[edge] = "none" if edge.parent in subjects else "target"
        elif edge.parent in subjects or edge.child == edge.parent:
            ways[edge] = "holders"
    problems: list[str] = []
    level = _owner_levels(store, edges, ways, problems)
    for edge in edges:
        ways.setdefault(edge, "target")
    problems += _check_declared(store, declared, ways, level)
    resolved = tuple(
        Edge(e.child, e.columns, e.parent, e.to_columns, e.enforced, ways[e]) for e in edges
    )
    return resolved, problems


def holders_edges(edges: Iterable[Edge], store: SqlStore) -> tuple[Edge, ...]:
    """The edges that make rows owned (parent -> child rows), never into a subject table."""
    subjects = subject_tables(store)
    return tuple(e for e in edges if e.follow == "holders" and e.child not in subjects)


def target_edges(edges: Iterable[Edge], store: SqlStore) -> tuple[Edge, ...]:
    """The edges that link rows (owned child row -> the parent row it points at)."""
    subjects = subject_tables(store)
    return tuple(e for e in edges if e.follow == "target" and e.parent not in subjects)


def traversal_edges(schema_edges: Iterable[Edge], store: SqlStore) -> tuple[Edge, ...]:
    """Every edge locate walks, either way (for index advice)."""
    edges = tuple(schema_edges)
    return holders_edges(edges, store) + target_edges(edges, store)


def has_personal_data(store: SqlStore, table: str) -> bool:
    """Whether a declared table has personal fields or identity columns."""
    decl = store.table(table)
    return bool(decl.fields or decl.identity)


def reachable(
    edges: Iterable[Edge], store: SqlStore, kinds: Iterable[str] | None = None
) -> set[str]:
    """Tables a subject's rows can be found in (owned or linked), from identities of ``kinds``."""
    wanted = None if kinds is None else set(kinds)
    all_edges = tuple(edges)
    owned = {
        t.name for t in store.tables if any(wanted is None or i.kind in wanted for i in t.identity)
    }
    holders = holders_edges(all_edges, store)
    frontier = set(owned)
    while frontier:
        nxt = {e.child for e in holders if e.parent in frontier and e.child not in owned}
        owned |= nxt
        frontier = nxt
    linked = {
        e.parent
        for e in target_edges(all_edges, store)
        if e.child in owned and has_personal_data(store, e.parent)
    }
    return owned | linked


def reach_notes(edges: Iterable[Edge], store: SqlStore) -> list[str]:
    """Declared tables that no identity reaches: a request never finds their rows."""
    found = reachable(edges, store)
    return [
        f"store '{store.name}', table '{t.name}': no identity reaches it (no identity column, "
        "and no followed reference from a table that has one); requests never find its rows. "
        "Declare a reference (with follow:) if it holds a subject's data; retention rules "
        "still apply to it"
        for t in store.tables
        if t.name not in found and (t.fields or t.identity)
    ]


def describe_edges(edges: Iterable[Edge]) -> list[str]:
    """One line per reference with its direction, for doctor."""
    return [
        f"{e.child}.{','.join(e.columns)} -> {e.parent}.{','.join(e.to_columns)}: "
        f"follow {e.follow} ({'foreign key' if e.enforced else 'declared'})"
        for e in edges
    ]
