"""Manual mode: nothing is sent; the intent is recorded, then an operator confirms.

The flow's side is modelled here: it catches ``AwaitingConfirmation`` (after ``on_prepared``
recorded the intents), suspends for the operator, and passes the answer to
``ManualConfirmation.confirm``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from config.schema.policy import Policy
from connectors.base import (
    Action,
    AwaitingConfirmation,
    BatchResult,
    ManualConfirmation,
)
from connectors.processor.config import ProcessorStore
from connectors.processor.connector import MANUAL_KEY, ProcessorConnector
from connectors.registry import require
from core.errors import TerminalError
from tests.connectors.processor.conftest import ALICE, KEYS, store_data

TODAY = "2026-11-26"


@pytest.fixture
def manual(policy: Policy) -> ProcessorConnector:
    store = ProcessorStore.model_validate(store_data(mode="manual", endpoint=None, secret_env=None))
    return ProcessorConnector(store, policy, keys=KEYS)


def test_an_erasure_awaits_the_operator_after_its_intent_is_recorded(
    manual: ProcessorConnector,
) -> None:
    findings = manual.locate({"email": frozenset({ALICE})})
    assert findings.counts() == {"Example Mail": 1}
    assert findings.targets[0].keys == (MANUAL_KEY,)
    plan = manual.plan_erasure(findings, TODAY)
    prepared: list[BatchResult] = []

    def on_prepared(batches: Sequence[BatchResult]) -> None:
        prepared.extend(batches)

    with pytest.raises(AwaitingConfirmation) as raised:
        manual.execute(plan, lambda _b: pytest.fail("nothing is done yet"), on_prepared)
    waiting = raised.value
    assert isinstance(waiting, TerminalError)  # a flow that does not know it stops here
    assert waiting.batches == tuple(prepared) and len(prepared) == 1
    assert (waiting.store, waiting.action) == ("mailer", "erasure")
    assert str(waiting).startswith("store 'mailer': erasure awaits an operator's confirmation")
    assert ALICE not in str(waiting) and ALICE not in waiting.instructions

    # A resumed request cannot tell either: it asks the operator again.
    with pytest.raises(AwaitingConfirmation):
        manual.in_effect(plan, prepared)

    confirmer = require(manual, ManualConfirmation, "manual confirmation")
    (done,) = confirmer.confirm(waiting.batches, "TICKET-4711")
    assert (done.action, done.affected, done.reference, done.intent) == (
        Action.DELETE,
        1,
        "TICKET-4711",
        0,
    )
    with pytest.raises(TerminalError, match="confirmation reference is a token"):
        confirmer.confirm(waiting.batches, "done, erased alice@example.com")
    assert manual.verify({"email": frozenset({ALICE})}, plan).clean


def test_export_names_the_recipient_and_rectify_awaits_the_operator(
    manual: ProcessorConnector,
) -> None:
    findings = manual.locate({"email": frozenset({ALICE})})
    (item,) = manual.export(findings)
    assert item.data["provider"] == "Example Mail" and item.data["region"] == "eu-west-1"
    with pytest.raises(AwaitingConfirmation) as raised:
        manual.rectify(findings, {"full_name": "Alice B"})
    (batch,) = raised.value.batches
    assert (batch.action, batch.affected) == (Action.RECTIFY, 1)
    assert "Alice B" not in str(raised.value)
