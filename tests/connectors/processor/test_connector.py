"""The processor connector against the stub provider: locate, export, plan, erase, verify,
resume after a crash, rectify; and through the registry, its capabilities."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from config.schema.policy import LegalHold, Policy
from connectors.base import (
    Action,
    BatchResult,
    Connector,
    Findings,
    ManualConfirmation,
    Rectifying,
    Sweeping,
    keys_digest,
)
from connectors.processor.config import ProcessorStore
from connectors.processor.connector import ProcessorConnector
from connectors.processor.protocol import ConfirmationPending
from connectors.registry import Unsupported, connector_for, require, supports
from core.errors import TerminalError
from demo.processor_server import StubProvider
from tests.connectors.processor.conftest import ALICE, BOB, KEYS, MakeConnector, MakeStore

TODAY = "2026-11-26"
ALICE_IDS = {"email": frozenset({ALICE})}


def _conforms(c: ProcessorConnector) -> tuple[Connector, Rectifying, ManualConfirmation]:
    """Checked by mypy: the connector implements the contract and its two capabilities."""
    return c, c, c


class Crash(BaseException):
    """The worker dies (not an error a connector would catch)."""


class Calls:
    """What a flow's callbacks received."""

    def __init__(self) -> None:
        self.prepared: list[BatchResult] = []
        self.done: list[BatchResult] = []

    def on_prepared(self, batches: Sequence[BatchResult]) -> None:
        self.prepared.extend(batches)

    def on_batch(self, batch: BatchResult) -> None:
        self.done.append(batch)


def _no_identity(caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    for record in caplog.records:
        message = record.getMessage()
        for identity in (ALICE, BOB):
            assert identity not in message
    for text in texts:
        assert ALICE not in text and BOB not in text


def test_locate_finds_the_providers_refs_never_identities(
    make_connector: MakeConnector, provider: StubProvider
) -> None:
    c = make_connector()
    findings = c.locate(ALICE_IDS)
    assert findings.counts() == {"Example Mail": 2}
    (target,) = findings.targets
    assert target.keys == (("rec-1",), ("rec-2",))
    assert target.categories == ("contact",)
    assert ALICE not in repr(findings)
    # Kinds the store is not asked with are not sent; nothing to ask, nothing sent.
    assert c.locate({"customer_id": frozenset({"7"})}) == Findings("mailer")
    assert [op for op, _ in provider.calls] == ["locate"]


def test_export_fetches_the_providers_copy(make_connector: MakeConnector) -> None:
    c = make_connector()
    items = list(c.export(c.locate(ALICE_IDS)))
    assert [i.data["ref"] for i in items] == ["rec-1", "rec-2"]
    assert items[0].data["data"] == {"email": ALICE, "full_name": "Alice A"}
    assert {(i.store, i.target, i.categories) for i in items} == {
        ("mailer", "Example Mail", ("contact",))
    }


def test_an_accepted_erasure_is_prepared_sent_confirmed_and_verified(
    make_connector: MakeConnector, provider: StubProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    c = make_connector()
    plan = c.plan_erasure(c.locate(ALICE_IDS), TODAY)
    assert [(s.action, s.keys) for s in plan.steps] == [(Action.DELETE, (("rec-1",), ("rec-2",)))]
    calls = Calls()
    results = c.execute(plan, calls.on_batch, calls.on_prepared)

    assert [(b.affected, b.intent, b.reference) for b in calls.prepared] == [(2, 0, None)]
    assert results == calls.done
    (done,) = results
    assert (done.action, done.affected, done.intent) == (Action.DELETE, 2, 0)
    assert done.keys_digest == keys_digest((("rec-1",), ("rec-2",)))
    assert done.reference == "REQ-0001"
    assert provider.erased == ["rec-1", "rec-2"] and "rec-3" in provider.records
    (key,) = {k for op, k in provider.calls if op == "erasures"}
    assert key is not None and key.startswith("lc-") and ALICE not in key

    verification = c.verify(ALICE_IDS, plan)
    assert verification.clean and verification.remaining == {"Example Mail": 0}
    _no_identity(caplog)


def test_the_same_plan_is_the_same_request(
    make_connector: MakeConnector, provider: StubProvider
) -> None:
    c = make_connector()
    plan = c.plan_erasure(c.locate(ALICE_IDS), TODAY)
    first = c.execute(plan, lambda _b: None)
    again = make_connector().execute(plan, lambda _b: None)
    assert [b.reference for b in again] == [b.reference for b in first] == ["REQ-0001"]
    keys = [k for op, k in provider.calls if op == "erasures"]
    assert len(keys) == 2 and len(set(keys)) == 1
    assert provider.erased == ["rec-1", "rec-2"]  # erased once


def test_a_late_confirmation_is_polled_for(
    make_connector: MakeConnector, provider: StubProvider
) -> None:
    provider.knobs.confirm_after_polls = 3
    slept: list[float] = []
    c = make_connector(sleep=slept.append)
    calls = Calls()
    c.execute(c.plan_erasure(c.locate(ALICE_IDS), TODAY), calls.on_batch, calls.on_prepared)
    assert [op for op, _ in provider.calls].count("status") == 3
    assert slept == [0.01, 0.01, 0.01]
    assert [b.reference for b in calls.done] == ["REQ-0001"]


class FakeClock:
    """``monotonic`` and ``sleep`` on a clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_deadline_passing_claims_nothing(
    make_connector: MakeConnector,
    make_store: MakeStore,
    provider: StubProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider.knobs.never_confirm = True
    clock = FakeClock()
    store = make_store(confirm_within="2s", poll_interval=0.5)
    c = make_connector(store, sleep=clock.sleep, monotonic=clock.monotonic)
    calls = Calls()
    plan = c.plan_erasure(c.locate(ALICE_IDS), TODAY)
    with pytest.raises(ConfirmationPending) as raised:
        c.execute(plan, calls.on_batch, calls.on_prepared)
    message = str(raised.value)
    assert "store 'mailer'" in message and "did not confirm the erasure" in message
    assert "REQ-0001" in message and "same idempotency key" in message
    assert len(calls.prepared) == 1 and calls.done == []
    assert [op for op, _ in provider.calls].count("status") == 4  # 2 s at 0.5 s
    # Still pending: a resumed run waits for it again (sends nothing) and gives up the same
    # way; once the provider confirms, it is in effect.
    with pytest.raises(ConfirmationPending):
        c.in_effect(plan, calls.prepared)
    assert [op for op, _ in provider.calls].count("erasures") == 1
    provider.confirm_all()
    (confirmed,) = c.in_effect(plan, calls.prepared)
    assert (confirmed.affected, confirmed.reference) == (2, "REQ-0001")
    _no_identity(caplog, message)


def test_a_crash_after_sending_resumes_from_the_providers_status(
    make_connector: MakeConnector, provider: StubProvider
) -> None:
    provider.knobs.confirm_after_polls = 100

    def die(_seconds: float) -> None:
        raise Crash

    c = make_connector(sleep=die)
    calls = Calls()
    plan = c.plan_erasure(c.locate(ALICE_IDS), TODAY)
    with pytest.raises(Crash):
        c.execute(plan, calls.on_batch, calls.on_prepared)
    assert calls.done == [] and len(provider.requests) == 1

    provider.confirm_all()  # the provider finished while we were down
    resumed = make_connector()  # a new process, from the recorded intents
    (effect,) = resumed.in_effect(plan, calls.prepared)
    assert (effect.affected, effect.keys, effect.intent) == (2, (("rec-1",), ("rec-2",)), 0)
    assert effect.reference == "REQ-0001"
    assert [op for op, _ in provider.calls].count("erasures") == 1  # nothing sent again
    # The flow re-locates: nothing left, so the re-executed plan sends nothing.
    fresh = resumed.plan_erasure(resumed.locate(ALICE_IDS), TODAY)
    assert resumed.execute(fresh, lambda _b: None) == []
    assert provider.erased == ["rec-1", "rec-2"]


def test_a_failed_request_is_terminal(
    make_connector: MakeConnector, provider: StubProvider
) -> None:
    provider.knobs.fail = True
    c = make_connector()
    calls = Calls()
    with pytest.raises(TerminalError, match="reports the erasure failed"):
        c.execute(c.plan_erasure(c.locate(ALICE_IDS), TODAY), calls.on_batch, calls.on_prepared)
    assert calls.done == []


def test_holds_defer(make_connector: MakeConnector, provider: StubProvider, policy: Policy) -> None:
    provider.records["rec-2"].hold = "litigation"
    provider.records["rec-2"].hold_until = "2027-01-31"
    c = make_connector()
    plan = c.plan_erasure(c.locate(ALICE_IDS), TODAY)
    assert [(s.action, s.keys, s.reason, s.until) for s in plan.steps] == [
        (Action.DELETE, (("rec-1",),), None, None),
        (Action.DEFER, (("rec-2",),), "held by the provider (litigation)", "2027-01-31"),
    ]
    c.execute(plan, lambda _b: None)
    verification = c.verify(ALICE_IDS, plan)
    assert verification.clean and verification.deferred == {"Example Mail": 1}

    hold = LegalHold.model_validate(
        {"id": "H9", "reason": "audit", "scope": {"store": "mailer"}, "starts": "2026-01-01"}
    )
    held = ProcessorConnector(
        c.store, policy.model_copy(update={"legal_holds": (hold,)}), keys=KEYS
    )
    (step,) = held.plan_erasure(held.locate({"email": frozenset({BOB})}), TODAY).steps
    assert (step.action, step.reason) == (Action.DEFER, "legal hold H9: audit")


def test_rectification_sends_the_declared_fields(
    make_connector: MakeConnector, provider: StubProvider
) -> None:
    c = make_connector()
    changes = {"mailer.full_name": "Alice B", "email": "alice.b@example.com", "orders.sku": "x"}
    picked = c.changes_for(changes)
    assert picked == {"mailer.full_name": "Alice B", "email": "alice.b@example.com"}
    assert c.check_changes(picked) == []
    assert c.check_changes({"full_name": "A" * 21}) == [
        "store 'mailer': field full_name takes at most 20 characters"
    ]
    assert [col.kind for col in c.identity_columns_for("mailer.email")] == ["email"]
    assert c.identity_columns_for("full_name") == ()
    after = c.identities_after(ALICE_IDS, picked)
    assert after["email"] == {ALICE, "alice.b@example.com"}

    (batch,) = c.rectify(c.locate(ALICE_IDS), picked)
    assert (batch.action, batch.affected, batch.reference) == (Action.RECTIFY, 2, "REQ-0001")
    assert provider.records["rec-1"].data["full_name"] == "Alice B"
    # Found again by the corrected identity (what rectification's verification does).
    assert c.locate(after).counts() == {"Example Mail": 2}
    # The same corrections again: the same request, applied once.
    assert c.rectify(c.locate(after), picked)[0].reference == "REQ-0001"


def test_the_registry_builds_it_and_it_cannot_sweep(make_store: MakeStore, policy: Policy) -> None:
    connector = connector_for(make_store(), policy, KEYS)
    assert isinstance(connector, ProcessorConnector)
    assert connector.capabilities.kind == "processor"
    assert not connector.capabilities.transactional
    offered: object = connector  # supports() narrows its argument: ask on another name
    assert supports(offered, Rectifying)
    assert supports(offered, ManualConfirmation)
    assert not supports(connector, Sweeping)
    with pytest.raises(Unsupported, match=r"store 'mailer' \(type processor\) does not support"):
        require(connector, Sweeping, "sweeping")


def test_the_registry_refuses_a_mismatched_model(policy: Policy) -> None:
    from connectors import registry
    from core.errors import ConfigError

    store = ProcessorStore.model_validate(
        {
            "type": "processor",
            "name": "x",
            "provider": "P",
            "purpose": "p",
            "region": "eu-west-1",
            "categories": ["contact"],
            "identities": ["email"],
            "mode": "manual",
        }
    )
    with pytest.raises(ConfigError, match="is not a SQL store"):
        registry.CONNECTORS["sql"](store, policy, KEYS)
