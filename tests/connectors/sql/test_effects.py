"""Which prepared erasure batches are in effect: the probe a resumed erasure asks.

``execute_plan`` hands every batch (with its keys) to ``on_prepared`` inside its
transaction, just before the COMMIT. A crash there leaves the question the probe answers
from the store alone: did that transaction commit? Rolled back, every batch that changed
rows has rows left unchanged; committed, every batch's effect is there (deleted keys gone,
masked rows masked, unlinked references cleared), on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from connectors.base import Action, BatchResult
from connectors.sql.effects import in_effect
from connectors.sql.execute import execute_plan
from core.errors import TerminalError
from tests.connectors.sql.conftest import SqlWorld
from tests.connectors.sql.test_execute import MASKER, erasure_plan


class Interrupted(TerminalError):
    """Raised from ``on_prepared``: the transaction is rolled back."""


def _fully(prepared: Sequence[BatchResult], effects: Sequence[BatchResult]) -> list[bool]:
    """Per batch that changed rows: whether all of its keys are in effect."""
    return [
        len(e.keys) == len(p.keys) for p, e in zip(prepared, effects, strict=True) if p.affected
    ]


def test_a_rolled_back_erasure_is_not_in_effect_and_a_committed_one_is(
    sql_world: SqlWorld,
) -> None:
    schema, _findings, plan = erasure_plan(sql_world)
    before = sql_world.snapshot()
    prepared: list[BatchResult] = []

    def interrupt(batches: Sequence[BatchResult]) -> None:
        prepared.extend(batches)
        raise Interrupted("the process dies before COMMIT")

    with pytest.raises(Interrupted):
        execute_plan(sql_world.engine, schema, plan, MASKER, lambda _b: None, 2, interrupt)
    assert sql_world.snapshot() == before
    actions = {b.action for b in prepared if b.affected}
    assert {Action.DELETE, Action.MASK, Action.UNLINK} <= actions
    assert all(b.keys for b in prepared if b.action != Action.KEEP)
    assert not any(_fully(prepared, in_effect(sql_world.engine, schema, plan, prepared)))

    committed: list[BatchResult] = []
    results = execute_plan(
        sql_world.engine, schema, plan, MASKER, lambda _b: None, 2, committed.extend
    )
    assert committed == results and [b.keys for b in committed] == [b.keys for b in results]
    effects = in_effect(sql_world.engine, schema, plan, committed)
    assert all(_fully(committed, effects))
    assert [e.affected for e in effects] == [len(b.keys) for b in committed]
