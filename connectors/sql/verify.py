"""Verifying a SQL erasure: what the plan said would be gone or masked, checked in the store.

``after`` is a fresh ``locate`` with the request's identities. Remaining, per table:

- rows of DELETE steps that still exist (checked by key in the database, so a row that
  locate can no longer reach, because its parent went, is still caught), unless rows
  outside the erasure reference them now (kept as shared, counted in ``kept``);
- rows of MASK steps whose masked columns do not all hold masked values (NULL, the
  redact marker, a 64-hex hash, a ``psn_`` pseudonym), counted in SQL per key batch;
  masked rows whose FK was cleared are no longer found by locate, so they are checked by
  their planned keys;
- rows of UNLINK steps' tables still referencing the deleted rows;
- any key ``after`` finds that the plan did not cover at all (data that appeared since).

Deferred counts are the DEFER steps' keys; masked counts are MASK rows correctly masked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from connectors.base import Action, Findings, Key, StorePlan, TargetPlan, Verification
from connectors.sql.execute import own_rows, translate_error, unlink_edge
from connectors.sql.masks import Masker
from connectors.sql.schema import StoreSchema, batches, json_key, key_clause
from connectors.sql.shared import checked_edges, shared_keys

VERIFY_BATCH = 500
"""Keys per verification statement (bounded IN lists; verification reads only counts)."""


def _count(conn: Connection, table: sa.Table, where: sa.ColumnElement[bool]) -> int:
    return int(
        conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one()
    )


def _present(
    conn: Connection, schema: StoreSchema, step: TargetPlan, where: sa.ColumnElement[bool] | None
) -> list[Key]:
    """Keys of ``step`` whose rows are still there (and match ``where``, if given)."""
    table, columns = schema.tables[step.target], schema.keys[step.target]
    present: list[Key] = []
    for batch in batches(step.keys, VERIFY_BATCH):
        condition = key_clause(table, columns, batch)
        if where is not None:
            condition = sa.and_(condition, where)
        stmt = sa.select(*(table.c[c] for c in columns)).where(condition)
        present += [json_key(row) for row in conn.execute(stmt)]
    return present


def _left(
    conn: Connection,
    schema: StoreSchema,
    step: TargetPlan,
    where: sa.ColumnElement[bool] | None,
    own: dict[str, set[Key]],
) -> tuple[int, int]:
    """(rows left that should be gone or masked, rows left because others reference them)."""
    present = _present(conn, schema, step, where)
    if not present or not checked_edges(schema, step.target):
        return len(present), 0
    shared = shared_keys(conn, schema, step.target, present, own, VERIFY_BATCH)
    own.get(step.target, set()).difference_update(shared)
    return len(present) - len(shared), len(shared)


def _mask_counts(
    conn: Connection, schema: StoreSchema, step: TargetPlan, keys: Sequence[Key], masker: Masker
) -> tuple[int, int]:
    """(rows correctly masked, rows not masked) among ``keys`` of a MASK step."""
    table, columns = schema.tables[step.target], schema.keys[step.target]
    masked = sa.and_(*(masker.masked_clause(m.mask, table.c[m.column]) for m in step.masks))
    good = bad = 0
    for batch in batches(keys, VERIFY_BATCH):
        row = conn.execute(
            sa.select(sa.func.count(), sa.func.sum(sa.case((masked, 1), else_=0)))
            .select_from(table)
            .where(key_clause(table, columns, batch))
        ).one()
        total, ok = int(row[0]), int(row[1] or 0)
        good, bad = good + ok, bad + total - ok
    return good, bad


def _still_linked(conn: Connection, schema: StoreSchema, step: TargetPlan) -> int:
    edge = unlink_edge(schema, step)
    parent_key = schema.keys[edge.parent]
    if set(edge.to_columns) != set(parent_key):
        # The parent rows are gone and with them the referenced values; the database's
        # enforced foreign key guarantees no child row still points at them.
        return 0
    order = [parent_key.index(c) for c in edge.to_columns]
    child = schema.tables[edge.child]
    values = [tuple(k[i] for i in order) for k in step.keys]
    return sum(
        _count(conn, child, key_clause(child, edge.columns, batch))
        for batch in batches(values, VERIFY_BATCH)
    )


def _mask_left(  # noqa: PLR0917 - one MASK step's check, its inputs spelled out
    conn: Connection,
    schema: StoreSchema,
    step: TargetPlan,
    keys: tuple[Key, ...],
    masker: Masker,
    own: dict[str, set[Key]],
) -> tuple[int, int, int]:
    """(rows masked, rows left unmasked, rows left unmasked because others reference them)."""
    good, bad = _mask_counts(conn, schema, step, keys, masker)
    if not bad:
        return good, 0, 0
    table = schema.tables[step.target]
    unmasked = sa.not_(
        sa.and_(*(masker.masked_clause(m.mask, table.c[m.column]) for m in step.masks))
    )
    left, shared = _left(conn, schema, replace(step, keys=keys), unmasked, own)
    return good, left, shared


def verify_erasure(
    engine: Engine, schema: StoreSchema, plan: StorePlan, after: Findings, masker: Masker
) -> Verification:
    """Re-check the store against ``plan``: ``Verification.clean`` is the verdict."""
    remaining: Counter[str] = Counter()
    deferred: Counter[str] = Counter()
    masked: Counter[str] = Counter()
    covered: dict[str, set[Key]] = {}
    deleting: dict[str, set[Key]] = {}
    for step in plan.steps:
        if step.action != Action.UNLINK:
            covered.setdefault(step.target, set()).update(step.keys)
        if step.action == Action.DELETE:
            deleting.setdefault(step.target, set()).update(step.keys)
    kept: Counter[str] = Counter()
    # As in execution: the rows the plan deletes or masks are the erasure's own, less those
    # found kept because others reference them (steps are checked in execution order).
    own = own_rows(plan)
    try:
        with engine.connect() as conn:
            for step in plan.steps:
                if step.action == Action.DELETE:
                    left, shared = _left(conn, schema, step, None, own)
                    remaining[step.target] += left
                    kept[step.target] += shared
                elif step.action == Action.UNLINK:
                    remaining[step.target] += _still_linked(conn, schema, step)
                elif step.action == Action.MASK:
                    # Rows a MASK step only unlinked before deleting are checked as deletions.
                    gone = deleting.get(step.target, set())
                    keys = tuple(k for k in step.keys if k not in gone)
                    good, left, shared = _mask_left(conn, schema, step, keys, masker, own)
                    masked[step.target] += good
                    remaining[step.target] += left
                    kept[step.target] += shared
                elif step.action == Action.DEFER:
                    deferred[step.target] += step.count
    except SQLAlchemyError as e:
        raise translate_error(e, schema.store, "verify") from e
    for target in after.targets:
        new = {tuple(k) for k in target.keys} - covered.get(target.target, set())
        remaining[target.target] += len(new)
    return Verification(
        store=plan.store,
        remaining={t: n for t, n in sorted(remaining.items()) if n},
        deferred=dict(sorted(deferred.items())),
        masked=dict(sorted(masked.items())),
        kept={t: n for t, n in sorted(kept.items()) if n},
    )
