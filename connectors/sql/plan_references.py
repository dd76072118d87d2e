"""Referential safety of an erasure plan: what stays, what goes first, what is unlinked.

Rules 4 to 6 of ``planning``: rows without personal fields go with their deleted parent;
a retained row must not reference a deleted one (its reference is cleared or the parent
is retained); references to people are cleared first; children before parents. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from connectors.base import Action, Key, MaskSpec, TargetPlan
from connectors.sql.edges import Edge
from connectors.sql.graph import subject_tables
from connectors.sql.plan_rules import NO_FIELDS, Decision, PlanContext, sort_key
from connectors.sql.schema import StoreSchema


def _referenced_parents(
    schema: StoreSchema, edge: Edge, child_keys: Iterable[Key]
) -> set[Key] | None:
    """Parent keys the child rows reference, when the FK columns are part of the child key."""
    child_cols = schema.keys.get(edge.child, ())
    positions: list[int] = []
    for parent_col in schema.keys.get(edge.parent, ()):
        if parent_col not in edge.to_columns:
            return None
        column = edge.columns[edge.to_columns.index(parent_col)]
        if column not in child_cols:
            return None
        positions.append(child_cols.index(column))
    return {tuple(k[i] for i in positions) for k in child_keys}


def _follow_parents(ctx: PlanContext, rows: dict[str, dict[Key, Decision]]) -> bool:
    """Rows without personal fields go with their deleted parent (rule 1); True if changed.

    Such a row is deleted only when it holds an enforced NOT NULL (or key) reference into a
    table all of whose found rows are deleted; once any of them stays, it stays (KEEP).
    """
    changed = False
    for table, decisions in rows.items():
        if ctx.fields(table) or ctx.store.table(table).identity:
            continue
        parents = sorted(
            {
                e.parent
                for e in ctx.schema.edges_from(table)
                if e.enforced and e.parent != table and e.parent in rows and not ctx.unlinkable(e)
            }
        )
        gone = [
            p
            for p in parents
            if rows[p] and all(d.action == Action.DELETE for d in rows[p].values())
        ]
        for key, decision in decisions.items():
            if decision.action not in (Action.KEEP, Action.DELETE) or decision.outside:
                continue
            if decision.reason not in (NO_FIELDS,) and not (decision.reason or "").startswith(
                "goes with"
            ):
                continue
            wanted = (
                Decision(Action.DELETE, reason=f"goes with its deleted {', '.join(gone)} rows")
                if gone
                else Decision(Action.KEEP, reason=NO_FIELDS)
            )
            if decisions[key] != wanted:
                decisions[key] = wanted
                changed = True
    return changed


def settle_references(ctx: PlanContext, rows: dict[str, dict[Key, Decision]]) -> None:
    """Apply rule 4 until no retained row references a deleted row (in place)."""
    _follow_parents(ctx, rows)
    edges = sorted(
        (e for e in ctx.schema.edges if e.enforced and e.child in rows and e.parent in rows),
        key=lambda e: (e.child, e.columns, e.parent),
    )
    changed = True
    while changed:
        changed = False
        for edge in edges:
            parent_rows, child_rows = rows[edge.parent], rows[edge.child]
            deleted = {k for k, d in parent_rows.items() if d.action == Action.DELETE}
            if not deleted:
                continue
            unlink = ctx.unlinkable(edge)
            nulls = tuple(MaskSpec(c, "null") for c in edge.columns)
            blocking: list[Key] = []
            for key, decision in child_rows.items():
                if decision.action == Action.DELETE or decision.outside:
                    continue  # another person's row: the shared-row check covers it
                no_fields = decision.action == Action.KEEP and decision.reason == NO_FIELDS
                if (decision.action == Action.MASK or no_fields) and unlink:
                    base = (
                        Decision(Action.MASK, reason=f"{NO_FIELDS}; unlinked from deleted rows")
                        if no_fields
                        else decision
                    )
                    missing = tuple(m for m in nulls if m not in base.masks)
                    if missing:
                        child_rows[key] = replace(base, masks=base.masks + missing)
                        changed = True
                    continue
                blocking.append(key)
            if not blocking:
                continue
            referenced = _referenced_parents(ctx.schema, edge, blocking)
            hit = deleted if referenced is None else deleted & referenced
            if hit:
                down = ctx.downgrade(edge.parent, edge.child)
                for key in hit:
                    parent_rows[key] = down
                changed = True
        changed = _follow_parents(ctx, rows) or changed


def deleted_keys(rows: Mapping[Key, Decision]) -> list[Key]:
    return sorted((k for k, d in rows.items() if d.action == Action.DELETE), key=sort_key)


def _must_precede(rows: Mapping[str, Mapping[Key, Decision]], edge: Edge) -> bool:
    """Whether the child's step must run before the parent's deletion."""
    if edge.child == edge.parent or all(
        d.action != Action.DELETE for d in rows[edge.parent].values()
    ):
        return False
    nulls = {MaskSpec(c, "null") for c in edge.columns}
    return any(
        d.action == Action.DELETE or (d.action == Action.MASK and nulls <= set(d.masks))
        for d in rows[edge.child].values()
    )


def _cheapest_cut(ctx: PlanContext, edges: list[Edge], remaining: list[str]) -> list[Edge]:
    """Only cycles remain: free the table whose incoming references are cheapest to clear."""

    def into(table: str) -> list[Edge]:
        return [e for e in edges if e.parent == table and e.child in remaining]

    def cost(table: str) -> tuple[bool, int, str]:
        stuck = any(e.enforced and not ctx.unlinkable(e) for e in into(table))
        return (stuck, sum(e.enforced for e in into(table)), table)

    return into(min((t for t in remaining if into(t)), key=cost))


def order_tables(
    ctx: PlanContext, rows: Mapping[str, Mapping[Key, Decision]], cleared: set[Edge]
) -> tuple[list[str], list[Edge]]:
    """Children before parents; returns the order and the edges cut to break cycles."""
    edges = [
        e
        for e in ctx.schema.edges
        if e.child in rows and e.parent in rows and e not in cleared and _must_precede(rows, e)
    ]
    remaining = sorted(rows)
    ordered: list[str] = []
    broken: list[Edge] = []
    while remaining:
        free = [
            t for t in remaining if not any(e.parent == t and e.child in remaining for e in edges)
        ]
        if free:
            ordered.append(free[0])
            remaining.remove(free[0])
            continue

        cut = _cheapest_cut(ctx, edges, remaining)
        broken += cut
        edges = [e for e in edges if e not in cut]
    return ordered, broken


def unlink_steps(
    ctx: PlanContext, rows: Mapping[str, Mapping[Key, Decision]], edges: Iterable[Edge]
) -> tuple[list[TargetPlan], list[str]]:
    """UNLINK steps (rule 5) for enforced ``edges`` into tables with deleted rows."""
    steps: list[TargetPlan] = []
    warnings: list[str] = []
    for edge in sorted(set(edges), key=lambda e: (e.child, e.columns, e.parent)):
        deleted = deleted_keys(rows.get(edge.parent, {}))
        if not edge.enforced or not deleted:
            continue
        label = f"{edge.child}.{','.join(edge.columns)}"
        if not ctx.unlinkable(edge):
            warnings.append(
                f"{label} is NOT NULL and may reference deleted {edge.parent} rows that the "
                "plan cannot clear first; the deletion fails if it does"
            )
            continue
        steps.append(
            TargetPlan(
                target=edge.child,
                action=Action.UNLINK,
                keys=tuple(deleted),
                masks=tuple(MaskSpec(c, "null") for c in edge.columns),
                reason=f"clear {label} references to deleted {edge.parent} rows",
            )
        )
    return steps, warnings


def person_references(ctx: PlanContext) -> list[Edge]:
    """Enforced references cleared before deleting (rule 5): self-references, and references
    to a person (a subject table) held by rows that are not owned through them."""
    subjects = subject_tables(ctx.store)
    return [
        e
        for e in ctx.schema.edges
        if e.enforced
        and (
            e.child == e.parent
            or (e.parent in subjects and not (e.follow == "holders" and e.child not in subjects))
        )
    ]
