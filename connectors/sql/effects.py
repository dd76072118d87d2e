"""Which prepared erasure batches are in effect in a SQL store: the probe behind resuming.

An erasure writes its batches down as intents just before its transaction commits
(``connectors.sql.execute``). A crash can leave intents unconfirmed: the store may have
committed or rolled back. The database answers that: a batch that deleted rows is in
effect when none of its keys is left, a batch that masked rows when each of its rows is
masked (or gone), an UNLINK batch when no row still references its keys. Read-only, in
bounded key batches, like verification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from connectors.base import Action, BatchResult, Key, StorePlan, keys_digest
from connectors.sql.execute import translate_error, unlink_edge
from connectors.sql.masks import masked_clause
from connectors.sql.schema import StoreSchema, batches, json_key, key_clause

PROBE_BATCH = 500
"""Keys per probe statement."""


def _left(conn: Connection, schema: StoreSchema, batch: BatchResult, plan: StorePlan) -> set[Key]:
    """Keys of ``batch`` whose effect is not in the store."""
    table, columns = schema.tables[batch.target], schema.keys[batch.target]
    undone: sa.ColumnElement[bool] | None = None
    if batch.action == Action.MASK:
        step = next(s for s in plan.steps if s.target == batch.target and s.action == Action.MASK)
        undone = sa.not_(sa.and_(*(masked_clause(m.mask, table.c[m.column]) for m in step.masks)))
    left: set[Key] = set()
    for part in batches(list(batch.keys), PROBE_BATCH):
        where = key_clause(table, columns, part)
        if undone is not None:
            where = sa.and_(where, undone)
        stmt = sa.select(*(table.c[c] for c in columns)).where(where)
        left |= {json_key(row) for row in conn.execute(stmt)}
    return left


def _still_linked(
    conn: Connection, schema: StoreSchema, batch: BatchResult, plan: StorePlan
) -> set[Key]:
    """Parent keys of an UNLINK batch that some row still references."""
    step = next(s for s in plan.steps if s.target == batch.target and s.action == Action.UNLINK)
    edge = unlink_edge(schema, step)
    parent_key = schema.keys[edge.parent]
    if set(edge.to_columns) != set(parent_key):
        return set()  # the referenced values went with the parent rows (see verify)
    order = [parent_key.index(c) for c in edge.to_columns]
    child = schema.tables[edge.child]
    by_value = {tuple(k[i] for i in order): k for k in batch.keys}
    linked: set[Key] = set()
    for part in batches(list(by_value), PROBE_BATCH):
        where = key_clause(child, edge.columns, part)
        stmt = sa.select(*(child.c[c] for c in edge.columns)).where(where).distinct()
        found = (by_value.get(json_key(row)) for row in conn.execute(stmt))
        linked |= {k for k in found if k is not None}
    return linked


def in_effect(
    engine: Engine, schema: StoreSchema, plan: StorePlan, prepared: Sequence[BatchResult]
) -> list[BatchResult]:
    """Per prepared batch, the keys whose effect is in the store (``affected``: how many)."""
    out: list[BatchResult] = []
    try:
        with engine.connect() as conn:
            for batch in prepared:
                if batch.action in (Action.DELETE, Action.MASK):
                    left = _left(conn, schema, batch, plan)
                elif batch.action == Action.UNLINK:
                    left = _still_linked(conn, schema, batch, plan)
                else:
                    left = set()  # KEEP and DEFER change nothing
                done = tuple(k for k in batch.keys if k not in left)
                digest = keys_digest(done)
                out.append(replace(batch, affected=len(done), keys_digest=digest, keys=done))
    except SQLAlchemyError as e:
        raise translate_error(e, schema.store, "checking an interrupted erasure") from e
    return out
