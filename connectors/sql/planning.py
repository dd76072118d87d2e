"""Erasure planning for a SQL store: pure data in, a ``StorePlan`` out, no I/O.

1. **Policy, per field** (``plan_rules``). Each personal field takes the rule of its
   categories, the longest-kept winning (keep > mask > delete). Every field deleted: the
   row goes. Otherwise it stays and every field not kept is masked: with its category's
   mask kind where the rule is mask, else ``null`` if nullable, else ``redact``. Identity
   columns are always masked with NULL or a per-row token (keyed hash, else pseudonym),
   never a fixed marker an identity lookup could find; a masked row also loses its
   ``target`` references where they may be NULL. A row without personal fields is kept,
   unless an enforced NOT NULL reference makes it go with its deleted parent. Rows that
   rows outside the request reference (``shared``, read by the connector) and linked rows
   another person owns (``withheld``) are kept untouched.
2. **Masks must fit.** A mask that would violate the column's type, length or NOT NULL
   (``masks.mask_problem``), targets a key column, or writes non-NULL into an enforced
   foreign key refuses the plan with ``PlanRefused`` listing every problem, before anything
   runs.
3. **Legal holds** active on ``today`` whose scope covers the table (store, store+table, or
   the request's subject pseudonym; bucket/prefix/tag scopes are S3's) turn it into DEFER,
   reason ``legal hold <id>: <reason>``, until the hold's end; the longest hold wins.
4. **Referential safety** (``plan_references``). Rows that stay (MASK, KEEP, DEFER) must not
   reference deleted rows through an enforced FK. A MASKed child with nullable, non-key FK
   columns gets them masked as null (unlinked). Otherwise the referenced parent keys are
   downgraded to MASK (if every personal field can be masked) or DEFER, reason ``referenced
   by retained <child>``, repeated until nothing changes. Which parent keys a child
   references is read off the child key when the FK columns are part of it; otherwise,
   without row data, every deleted key of the parent counts as referenced (retain more
   rather than let a delete fail or cascade). Declared (unenforced) references never block a
   deletion.
5. **Unlinking.** References to deleted rows from rows not deleted before them: self-
   references (InnoDB checks a multi-row DELETE row by row), cycles, and references to a
   person (a subject table) that locate does not follow (a customer the subject referred
   is someone else). For such enforced, nullable edges the plan starts with an
   UNLINK step setting the child's FK columns NULL where they reference the deleted keys
   (its keys are the parent's). A NOT NULL one cannot be cleared: it becomes a warning.
6. **Order.** UNLINK steps, then tables children before parents (enforced and declared
   references into tables with deleted rows; a cycle is cut at the table whose incoming
   references are cheapest to clear), within a table MASK before DELETE.

The plan's keys are the findings' keys; a target without keys gives no step. Everything is
sorted, so the same findings always give the same plan and digest.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date

from config.schema import ErasurePolicy, LegalHold
from connectors.base import (
    SHARED_REASON,
    WITHHELD_REASON,
    Action,
    Findings,
    Key,
    StorePlan,
    TargetPlan,
)
from connectors.sql.config import SqlStore
from connectors.sql.plan_references import (
    order_tables,
    person_references,
    settle_references,
    unlink_steps,
)
from connectors.sql.plan_rules import (
    Decision,
    PlanContext,
    PlanRefused,
    hold_decision,
    identity_mask,
    sort_key,
)
from connectors.sql.schema import StoreSchema
from core.errors import TerminalError
from core.pseudonym import Pseudonym

__all__ = ["PlanRefused", "identity_mask", "plan_erasure", "sort_key"]

_STEP_ORDER = {Action.MASK: 0, Action.DELETE: 1, Action.DEFER: 2, Action.KEEP: 3}


def _steps(table: str, decisions: Mapping[Key, Decision]) -> list[TargetPlan]:
    groups: dict[Decision, list[Key]] = {}
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


def _initial_rows(  # noqa: PLR0917 - the planner's inputs, spelled out
    ctx: PlanContext,
    findings: Findings,
    holds: Sequence[LegalHold],
    today: date,
    subject: Pseudonym | None,
    shared: Mapping[str, Collection[Key]],
) -> dict[str, dict[Key, Decision]]:
    """Each found row's first decision: hold, else the fields' rules; shared and withheld
    rows are kept. Raises ``PlanRefused`` when a mask does not fit."""
    found = _found_keys(ctx.schema, findings)
    rows: dict[str, dict[Key, Decision]] = {}
    problems: list[str] = []
    for table in sorted(found):
        decision = hold_decision(holds, ctx.store.name, table, today, subject)
        if decision is None:
            decision, table_problems = ctx.policy_decision(table)
            problems += table_problems
        rows[table] = dict.fromkeys(found[table], decision)
        keep = Decision(Action.KEEP, reason=SHARED_REASON)
        for key in shared.get(table, ()):
            if key in rows[table]:
                rows[table][key] = keep
    if problems:
        raise PlanRefused(ctx.store.name, sorted(problems))
    withheld = Decision(Action.KEEP, reason=WITHHELD_REASON, outside=True)
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
    ctx = PlanContext(schema, store, erasure)
    rows = _initial_rows(ctx, findings, holds, today, subject, shared or {})
    settle_references(ctx, rows)

    # Self-references and references to people are cleared first (rule 5).
    person_refs = person_references(ctx)
    cleared = {e for e in person_refs if e.parent in rows and ctx.unlinkable(e)}
    order, broken = order_tables(ctx, rows, cleared)
    unlinks, warnings = unlink_steps(ctx, rows, person_refs + broken)
    steps = list(unlinks)
    for table in order:
        steps += _steps(table, rows[table])
    return StorePlan(store=store.name, steps=tuple(steps), warnings=tuple(sorted(set(warnings))))
