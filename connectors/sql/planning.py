"""Erasure planning for a SQL store: pure data in, a ``StorePlan`` out, no I/O.

1. **Policy.** A found table's action comes from the erasure rules of the categories of its
   personal fields (``Table.fields``): keep > mask > delete (the longest-kept wins); a table
   without personal fields takes the default rule (a ``mask`` with nothing to mask keeps).
   MASK masks every personal field: with its category's mask kind where that category's
   rule is mask (the field's first such category), else ``null`` if nullable, else
   ``redact``. Identity columns not declared as fields are masked too (a kept row must
   not identify the person): NULL, else a keyed hash or pseudonym, which keep UNIQUE
   constraints valid. The step's reason is the rule's.
2. **Masks must fit.** A mask that would violate the column's type, length or NOT NULL
   (``masks.mask_problem``), targets a key column, or writes non-NULL into an enforced
   foreign key refuses the plan with ``PlanRefused`` listing every problem, before anything
   runs.
3. **Legal holds** active on ``today`` whose scope covers the table (store, store+table, or
   the request's subject pseudonym; bucket/prefix/tag scopes are S3's) turn it into DEFER,
   reason ``legal hold <id>: <reason>``, until the hold's end; the longest hold wins.
4. **Referential safety.** Rows that stay (MASK, KEEP, DEFER) must not reference deleted
   rows through an enforced FK. A MASKed child with nullable, non-key FK columns gets them
   masked as null (unlinked). Otherwise the referenced parent keys are downgraded to MASK
   (if every personal field can be masked) or DEFER, reason ``referenced by retained
   <child>``, repeated until nothing changes. Which parent keys a child references is read
   off the child key when the FK columns are part of it; otherwise, without row data, every
   deleted key of the parent counts as referenced (retain more rather than let a delete
   fail or cascade). Declared (unenforced) references never block a deletion.
5. **Unlinking.** References to deleted rows from rows not deleted before them: self-
   references (InnoDB checks a multi-row DELETE row by row), cycles, and references held by
   subject tables, which locate never enters through a reference (a customer the subject
   referred is someone else). For such enforced, nullable edges the plan starts with an
   UNLINK step setting the child's FK columns NULL where they reference the deleted keys
   (its keys are the parent's). A NOT NULL one cannot be cleared: it becomes a warning.
6. **Order.** UNLINK steps, then tables children before parents (enforced and declared
   references into tables with deleted rows; a cycle is cut at the table whose incoming
   references are cheapest to clear), within a table MASK before DELETE.

The plan's keys are the findings' keys; a target without keys gives no step. Everything is
sorted, so the same findings always give the same plan and digest.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from sqlalchemy import UniqueConstraint

from config.schema import ErasurePolicy, ErasureRule, LegalHold, SqlStore
from connectors.base import (
    SHARED_REASON,
    WITHHELD_REASON,
    Action,
    Findings,
    Key,
    MaskSpec,
    StorePlan,
    TargetPlan,
)
from connectors.sql.edges import Edge
from connectors.sql.graph import subject_tables
from connectors.sql.masks import mask_problem
from connectors.sql.schema import StoreSchema
from core.errors import TerminalError
from core.pseudonym import Pseudonym

_PRECEDENCE = {"delete": 0, "mask": 1, "keep": 2}
NO_FIELDS = "no personal fields"
_STEP_ORDER = {Action.MASK: 0, Action.DELETE: 1, Action.DEFER: 2, Action.KEEP: 3}


class PlanRefused(TerminalError):
    """The plan would break the schema (a mask that does not fit); nothing was run."""

    def __init__(self, store: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(
            f"store '{store}': erasure plan refused, {len(self.problems)} {noun}: "
            + "; ".join(self.problems),
            store=store,
            problems=self.problems,
        )


@dataclass(frozen=True)
class _Decision:
    """What happens to one row (key); shared between the rows of a step."""

    action: Action
    masks: tuple[MaskSpec, ...] = ()
    reason: str | None = None
    until: str | None = None
    outside: bool = False  # another person's row the subject's rows point at (withheld)


def sort_key(key: Key) -> tuple[tuple[int, Any], ...]:
    """A total order over keys of JSON scalars (None, bools, numbers and text mixed)."""
    return tuple(
        (0, 0) if v is None else (1, v) if isinstance(v, int) else (2, str(v)) for v in key
    )


def _joined(reasons: Iterable[str | None]) -> str | None:
    unique = sorted({r for r in reasons if r})
    return "; ".join(unique) or None


@dataclass(frozen=True)
class _Context:
    schema: StoreSchema
    store: SqlStore
    erasure: ErasurePolicy

    def enforced_fk_columns(self, table: str) -> frozenset[str]:
        return frozenset(c for e in self.schema.edges_from(table) if e.enforced for c in e.columns)

    def fields(self, table: str) -> dict[str, tuple[str, ...]]:
        return dict(self.store.table(table).fields)

    def masks(self, table: str) -> tuple[tuple[MaskSpec, ...], list[str]]:
        """The masks of every personal field of ``table`` and the problems they would cause."""
        sa_table = self.schema.tables[table]
        keys = set(self.schema.keys.get(table, ()))
        fks = self.enforced_fk_columns(table)
        specs: list[MaskSpec] = []
        problems: list[str] = []
        fields = self.fields(table)
        # Identity columns identify the person whether or not they are declared as fields:
        # a kept row must not keep them, and their mask must never be found again by an
        # identity lookup (NULL, else a per-row token; never a fixed marker).
        identity = {i.column for i in self.store.table(table).identity}
        for column in sorted({*fields, *identity}):
            col = sa_table.c[column]
            if column in identity:
                kind = identity_mask(col)
            else:
                rules = [self.erasure.rule_for(c) for c in fields[column]]
                if any(r.action == "keep" for r in rules):
                    continue
                chosen = next((r.mask for r in rules if r.action == "mask" and r.mask), None)
                kind = chosen or ("null" if col.nullable else "redact")
            where = f"{self.store.name}.{table}.{column}"
            if column in keys:
                problems.append(f"{where}: mask '{kind}' targets a key column")
            elif column in fks and kind != "null":
                problems.append(
                    f"{where}: mask '{kind}' on an enforced foreign key; only 'null' keeps "
                    "references valid"
                )
            else:
                problem = mask_problem(kind, col)
                if problem is not None:
                    problems.append(f"{where}: {problem}")
            specs.append(MaskSpec(column, kind))
        if specs:
            specs += self.link_nulls(table, {s.column for s in specs})
        return tuple(specs), problems

    def link_nulls(self, table: str, masked: set[str]) -> list[MaskSpec]:
        """A masked row also loses its ``target`` references (where NULL is allowed).

        The address or card a masked customer row points at would identify the person
        again, and would keep that row alive after everyone using it is erased.
        """
        sa_table = self.schema.tables[table]
        keys = set(self.schema.keys.get(table, ()))
        nulls: list[MaskSpec] = []
        for edge in self.schema.edges_from(table):
            if edge.follow != "target" or edge.child == edge.parent:
                continue
            columns = [c for c in edge.columns if c not in masked and c not in keys]
            if columns and all(sa_table.c[c].nullable for c in edge.columns):
                nulls += [MaskSpec(c, "null") for c in columns]
                masked.update(columns)
        return nulls

    def policy_decision(self, table: str) -> tuple[_Decision, list[str]]:
        """The row decision from the erasure rule of each personal field (per field).

        Each field's rule is the longest-kept of its categories' rules. Every field deleted:
        the row goes. Otherwise the row stays and every field not kept is masked (identity
        columns always); nothing to mask: KEEP. No personal fields at all: KEEP (such a row
        goes only with a deleted parent, see ``_follow_parents``).
        """
        fields = self.fields(table)
        if not fields and not self.store.table(table).identity:
            return _Decision(Action.KEEP, reason=NO_FIELDS), []
        per_field: list[ErasureRule] = []
        for cats in fields.values():
            rules = [self.erasure.rule_for(c) for c in cats] or [self.erasure.default]
            action = max((r.action for r in rules), key=_PRECEDENCE.__getitem__)
            per_field += [r for r in rules if r.action == action]
        if not per_field:
            per_field = [self.erasure.default]
        if all(r.action == "delete" for r in per_field):
            return _Decision(Action.DELETE, reason=_joined(r.reason for r in per_field)), []
        reason = _joined(r.reason for r in per_field if r.action != "delete")
        masks, problems = self.masks(table)
        if not masks:
            return _Decision(Action.KEEP, reason=reason), []
        return _Decision(Action.MASK, masks, reason), problems

    def downgrade(self, table: str, child: str) -> _Decision:
        """A deleted row that a retained row references: mask it if possible, else defer."""
        reason = f"referenced by retained {child}"
        masks, problems = self.masks(table)
        if masks and not problems:
            return _Decision(Action.MASK, masks, reason)
        return _Decision(Action.DEFER, reason=reason)

    def unlinkable(self, edge: Edge) -> bool:
        """Whether the edge's FK columns can be set NULL (nullable and not key columns)."""
        child = self.schema.tables[edge.child]
        keys = set(self.schema.keys.get(edge.child, ()))
        return all(child.c[c].nullable and c not in keys for c in edge.columns)


def identity_mask(column: Any) -> str:
    """The mask for an undeclared identity column: one that keeps UNIQUE constraints valid.

    NULL where allowed; otherwise a keyed hash or pseudonym (distinct per original value),
    whichever fits; else ``redact``, which ``mask_problem`` then reports if it cannot fit.
    """
    if column.nullable:
        return "null"
    for kind in ("hash", "pseudonym"):
        if mask_problem(kind, column) is None:
            return kind
    # A fixed marker would collide in a UNIQUE column once two subjects are masked: ask
    # for the hash, so the plan is refused with the width it needs.
    return "hash" if _is_unique(column) else "redact"


def _is_unique(column: Any) -> bool:
    table = column.table
    single = [column.name]
    return (
        bool(column.unique)
        or any(
            isinstance(c, UniqueConstraint) and [col.name for col in c.columns] == single
            for c in table.constraints
        )
        or any(i.unique and [col.name for col in i.columns] == single for i in table.indexes)
    )


def _hold_applies(hold: LegalHold, store: str, table: str, subject: Pseudonym | None) -> bool:
    scope = hold.scope
    if scope.bucket is not None or scope.prefix is not None or scope.tag is not None:
        return False  # object-store scopes
    if scope.store is not None and scope.store != store:
        return False
    if scope.table is not None and scope.table != table:
        return False
    return scope.subject is None or (subject is not None and scope.subject == subject)


def _hold_decision(
    holds: Sequence[LegalHold], store: str, table: str, today: date, subject: Pseudonym | None
) -> _Decision | None:
    active = [h for h in holds if h.active_on(today) and _hold_applies(h, store, table, subject)]
    if not active:
        return None
    # The longest hold decides when the rows may go: open-ended first, then latest end.
    hold = min(active, key=lambda h: (h.ends is not None, -(h.ends or today).toordinal(), h.id))
    until = hold.ends.isoformat() if hold.ends is not None else None
    return _Decision(Action.DEFER, reason=f"legal hold {hold.id}: {hold.reason}", until=until)


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


def _follow_parents(ctx: _Context, rows: dict[str, dict[Key, _Decision]]) -> bool:
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
                _Decision(Action.DELETE, reason=f"goes with its deleted {', '.join(gone)} rows")
                if gone
                else _Decision(Action.KEEP, reason=NO_FIELDS)
            )
            if decisions[key] != wanted:
                decisions[key] = wanted
                changed = True
    return changed


def _settle_references(ctx: _Context, rows: dict[str, dict[Key, _Decision]]) -> None:
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
                        _Decision(Action.MASK, reason=f"{NO_FIELDS}; unlinked from deleted rows")
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


def _deleted(rows: Mapping[Key, _Decision]) -> list[Key]:
    return sorted((k for k, d in rows.items() if d.action == Action.DELETE), key=sort_key)


def _must_precede(rows: Mapping[str, Mapping[Key, _Decision]], edge: Edge) -> bool:
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


def _cheapest_cut(ctx: _Context, edges: list[Edge], remaining: list[str]) -> list[Edge]:
    """Only cycles remain: free the table whose incoming references are cheapest to clear."""

    def into(table: str) -> list[Edge]:
        return [e for e in edges if e.parent == table and e.child in remaining]

    def cost(table: str) -> tuple[bool, int, str]:
        stuck = any(e.enforced and not ctx.unlinkable(e) for e in into(table))
        return (stuck, sum(e.enforced for e in into(table)), table)

    return into(min((t for t in remaining if into(t)), key=cost))


def _order(
    ctx: _Context, rows: Mapping[str, Mapping[Key, _Decision]], cleared: set[Edge]
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


def _unlink_steps(
    ctx: _Context, rows: Mapping[str, Mapping[Key, _Decision]], edges: Iterable[Edge]
) -> tuple[list[TargetPlan], list[str]]:
    """UNLINK steps (rule 5) for enforced ``edges`` into tables with deleted rows."""
    steps: list[TargetPlan] = []
    warnings: list[str] = []
    for edge in sorted(set(edges), key=lambda e: (e.child, e.columns, e.parent)):
        deleted = _deleted(rows.get(edge.parent, {}))
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


def _steps(table: str, decisions: Mapping[Key, _Decision]) -> list[TargetPlan]:
    groups: dict[_Decision, list[Key]] = {}
    for key, decision in decisions.items():
        groups.setdefault(decision, []).append(key)
    ordered = sorted(
        groups.items(),
        key=lambda g: (_STEP_ORDER[g[0].action], g[0].reason or "", repr(g[0].masks)),
    )
    return [
        TargetPlan(
            target=table,
            action=d.action,
            keys=tuple(sorted(keys, key=sort_key)),
            masks=d.masks,
            reason=d.reason,
            until=d.until,
        )
        for d, keys in ordered
    ]


def _found_keys(schema: StoreSchema, findings: Findings) -> dict[str, set[Key]]:
    found: dict[str, set[Key]] = {}
    for target in findings.targets:
        if target.target not in schema.tables or target.target not in schema.keys:
            raise TerminalError(
                f"store '{findings.store}': found table '{target.target}' is not in the "
                "reflected schema",
                store=findings.store,
                target=target.target,
            )
        if target.keys:
            found.setdefault(target.target, set()).update(tuple(k) for k in target.keys)
    return found


def _person_references(ctx: _Context) -> list[Edge]:
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


def _initial_rows(  # noqa: PLR0917 - the planner's inputs, spelled out
    ctx: _Context,
    findings: Findings,
    holds: Sequence[LegalHold],
    today: date,
    subject: Pseudonym | None,
    shared: Mapping[str, Collection[Key]],
) -> dict[str, dict[Key, _Decision]]:
    """Each found row's first decision: hold, else the fields' rules; shared and withheld
    rows are kept. Raises ``PlanRefused`` when a mask does not fit."""
    found = _found_keys(ctx.schema, findings)
    rows: dict[str, dict[Key, _Decision]] = {}
    problems: list[str] = []
    for table in sorted(found):
        decision = _hold_decision(holds, ctx.store.name, table, today, subject)
        if decision is None:
            decision, table_problems = ctx.policy_decision(table)
            problems += table_problems
        rows[table] = dict.fromkeys(found[table], decision)
        keep = _Decision(Action.KEEP, reason=SHARED_REASON)
        for key in shared.get(table, ()):
            if key in rows[table]:
                rows[table][key] = keep
    if problems:
        raise PlanRefused(ctx.store.name, sorted(problems))
    withheld = _Decision(Action.KEEP, reason=WITHHELD_REASON, outside=True)
    for target in findings.targets:
        for key in target.withheld:
            rows.setdefault(target.target, {}).setdefault(tuple(key), withheld)
    return rows


def plan_erasure(  # noqa: PLR0917 - the connector's fixed call signature
    schema: StoreSchema,
    store: SqlStore,
    findings: Findings,
    erasure: ErasurePolicy,
    holds: Sequence[LegalHold],
    today: date,
    subject: Pseudonym | None,
    shared: Mapping[str, Collection[Key]] | None = None,
) -> StorePlan:
    """Decide per found row: delete, mask, defer or keep (see the module rules). Pure.

    ``shared``: keys per table that rows outside the request reference (read by the
    connector, ``connectors.sql.shared``); they are kept.
    """
    if not (findings.store == store.name == schema.store):
        raise TerminalError(
            "findings, inventory and schema name different stores",
            store=store.name,
        )
    ctx = _Context(schema, store, erasure)
    rows = _initial_rows(ctx, findings, holds, today, subject, shared or {})
    _settle_references(ctx, rows)

    # Self-references and references to people are cleared first (rule 5).
    person_refs = _person_references(ctx)
    cleared = {e for e in person_refs if e.parent in rows and ctx.unlinkable(e)}
    order, broken = _order(ctx, rows, cleared)
    unlinks, warnings = _unlink_steps(ctx, rows, person_refs + broken)
    steps = list(unlinks)
    for table in order:
        steps += _steps(table, rows[table])
    return StorePlan(store=store.name, steps=tuple(steps), warnings=tuple(sorted(set(warnings))))
