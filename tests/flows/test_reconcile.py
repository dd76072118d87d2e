"""Reconciling the register with waiting runs that ended in Prefect without our code.

Flow runs are created through the API and moved to the state the server would leave them
in (``force=True``): a run cancelled in the UI, a pause or suspend failed by the server at
its timeout. What must not change is asserted as carefully as what must.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from prefect.states import (
    Cancelled,
    Cancelling,
    Completed,
    Failed,
    Paused,
    Running,
    Scheduled,
    Suspended,
)

from core.approver_keys import parse_token
from engine.approval import take_decision
from engine.request_lease import lease_name
from engine.request_support import request_context
from flows.request_register import request_register
from state.approvals import Attempt
from state.leases import Lease
from state.register import RequestStatus
from tasks import register_artifact
from tasks.reconcile import CANCEL_REASON, RECONCILE_ACTOR, reconcile_waiting
from tasks.register_artifact import REGISTER_KEY
from tests.flows import register_helpers
from tests.flows.register_helpers import latest_artifact, register, state_of, to_awaiting
from tests.flows.support import APPROVER, SUBJECT_EMAIL, kinds, signed_token

Configure = Callable[..., Path]
NEVER_RESUMED = "The flow was paused and never resumed."


@pytest.fixture
def runs(prefect_server: None, configure: Configure) -> Iterator[list[str]]:
    """Approval by a person required; flow runs made by ``waiting`` end when the test does
    (other tests answer any paused run they find)."""
    configure(auto_approve=False)
    made: list[str] = []
    yield made
    register_helpers.end_runs(*made)


def waiting(made: list[str], *states: Any, status: str = "awaiting_approval") -> tuple[str, str]:
    """A request awaiting approval whose recorded waiting run went through ``states``."""
    ctx = request_context()
    rid = register(ctx, days_ago=2)
    if status != "received":
        to_awaiting(rid, ctx)
    run_id = register_helpers.flow_run(rid, Running(), *states)
    made.append(run_id)
    ctx.progress.runs.set_waiting_run(rid, run_id)
    return rid, run_id


def _status(request_id: str) -> RequestStatus:
    return request_context().record(request_id).status


def test_nothing_waits_nothing_changes(runs: list[str]) -> None:
    register(days_ago=1)
    assert reconcile_waiting(request_context()) == []


@pytest.mark.parametrize("ended", [Cancelled, Cancelling], ids=["cancelled", "cancelling"])
def test_a_run_cancelled_in_the_ui_cancels_its_request(runs: list[str], ended: Any) -> None:
    rid, run_id = waiting(runs, Suspended(timeout_seconds=3600), ended())
    now = state_of(run_id)  # a run no worker watches goes on to Cancelled
    assert now in ("CANCELLED", "CANCELLING")

    changed = reconcile_waiting(request_context())

    assert changed == [
        f"{rid}: cancelled (was awaiting_approval): its flow run {run_id} is "
        f"{now.lower()} in Prefect"
    ]
    record = request_context().record(rid)
    assert record.status is RequestStatus.CANCELLED and record.identity_destroyed
    last = request_context().register.history(rid)[-1]
    assert (last.action, last.actor, last.note) == ("cancelled", RECONCILE_ACTOR, CANCEL_REASON)
    assert kinds(rid).count("request.cancelled") == 1

    assert reconcile_waiting(request_context()) == []  # idempotent
    assert kinds(rid).count("request.cancelled") == 1


def test_a_received_request_whose_run_was_cancelled_is_cancelled_too(runs: list[str]) -> None:
    rid, _ = waiting(runs, Cancelled(), status="received")
    assert len(reconcile_waiting(request_context())) == 1
    assert _status(rid) is RequestStatus.CANCELLED


def _suspend_expired() -> tuple[Any, Any]:
    """The server's pause-expirations service: its message (whatever the timestamps)."""
    return Suspended(timeout_seconds=604800), Failed(message=NEVER_RESUMED)


def _pause_expired() -> tuple[Any, Any]:
    """A resume refused past the timeout: the pause had expired when the run failed."""
    return Paused(pause_expiration_time=datetime.now(UTC)), Failed(message="refused")


@pytest.mark.parametrize(
    ("states", "waited"),
    [(_suspend_expired, 604800), (_pause_expired, 0)],
    ids=["suspend-expired", "pause-expired"],
)
def test_a_pause_that_timed_out_rejects_the_request(
    runs: list[str], states: Callable[[], tuple[Any, Any]], waited: int
) -> None:
    rid, run_id = waiting(runs, *states())  # made after Running: timestamps in order

    [changed] = reconcile_waiting(request_context())

    assert changed.startswith(f"{rid}: rejected (approval timed out: flow run {run_id} waited ")
    record = request_context().record(rid)
    assert record.status is RequestStatus.REJECTED and record.identity_destroyed
    events = list(request_context().ledger.events(request_id=rid))
    [timed_out] = [e for e in events if e.kind == "approval.timed_out"]
    assert timed_out.detail == {"waited_seconds": waited, "noticed_by": RECONCILE_ACTOR}
    [decided] = [e for e in events if e.kind == "approval.decided"]
    assert (decided.detail["decision"], decided.detail["source"]) == ("rejected", "timeout")

    assert reconcile_waiting(request_context()) == []  # idempotent
    assert kinds(rid).count("approval.timed_out") == 1
    assert kinds(rid).count("approval.decided") == 1


def test_a_decision_taken_while_the_run_waited_stands_at_the_timeout(runs: list[str]) -> None:
    rid, run_id = waiting(runs, Suspended(timeout_seconds=60), Failed(message=NEVER_RESUMED))
    ctx = request_context()
    signed = parse_token(signed_token(rid, APPROVER))
    take_decision(ctx, rid, Attempt("approved", "cli", APPROVER, signed))  # from the CLI

    [changed] = reconcile_waiting(request_context())

    assert changed.startswith(f"{rid}: approved (by {APPROVER} while flow run {run_id} waited")
    assert changed.endswith("run the request again")
    assert _status(rid) is RequestStatus.APPROVED
    assert kinds(rid).count("approval.timed_out") == 1
    assert [
        e.detail["source"] for e in ctx.ledger.events(request_id=rid, kinds=["approval.decided"])
    ] == ["cli"]


def test_waiting_running_or_otherwise_failed_runs_are_left_alone(runs: list[str]) -> None:
    still = [
        waiting(runs, Paused()),
        waiting(runs, Suspended(timeout_seconds=3600)),
        waiting(runs),  # Running (resumed, or the CLI's process carries on)
        waiting(runs, Failed(message="a store failed")),  # failed while running
        # failed while paused, but not at the timeout (someone marked it failed)
        waiting(runs, Paused(timeout_seconds=3600), Failed(message="marked failed")),
        waiting(runs, Completed()),
    ]
    unknown = register(days_ago=1)
    to_awaiting(unknown)
    request_context().progress.runs.set_waiting_run(unknown, str(uuid4()))  # another server

    assert reconcile_waiting(request_context()) == []

    for rid, _ in [*still, (unknown, "")]:
        assert _status(rid) is RequestStatus.AWAITING_APPROVAL
        assert not request_context().record(rid).identity_destroyed
        assert "request.cancelled" not in kinds(rid) and "approval.timed_out" not in kinds(rid)
    assert state_of(still[0][1]) == "PAUSED"  # reconciling never touches Prefect's runs


def test_decided_and_closed_requests_are_left_alone(runs: list[str]) -> None:
    ctx = request_context()
    executing, _ = waiting(runs, Cancelled())
    ctx.register.transition(executing, RequestStatus.APPROVED, actor=APPROVER)
    ctx.register.transition(executing, RequestStatus.EXECUTING, actor="flow:subject-request")
    completed, _ = waiting(runs, Cancelled())
    for status in ("approved", "executing", "verifying", "completed"):
        ctx.register.transition(completed, RequestStatus(status), actor="flow:subject-request")

    assert reconcile_waiting(request_context()) == []

    assert _status(executing) is RequestStatus.EXECUTING
    assert _status(completed) is RequestStatus.COMPLETED
    assert "request.cancelled" not in kinds(executing) + kinds(completed)


def test_a_request_another_run_carries_on_is_left_to_it(runs: list[str]) -> None:
    rid, _ = waiting(runs, Cancelled())
    newer = register_helpers.flow_run(rid, Scheduled())  # the operator started it again
    runs.append(newer)

    assert reconcile_waiting(request_context()) == []
    assert _status(rid) is RequestStatus.AWAITING_APPROVAL

    register_helpers.end_runs(newer)  # it ended (cancelled too): nothing carries it on
    assert len(reconcile_waiting(request_context())) == 1
    assert _status(rid) is RequestStatus.CANCELLED


def test_a_request_whose_lease_is_held_is_left_until_it_is_free(runs: list[str]) -> None:
    rid, _ = waiting(runs, Cancelled())
    ctx = request_context()
    holder = Lease(
        ctx.ledger.engine, lease_name(rid), ttl=timedelta(minutes=5), owner="a CLI --resume"
    )
    assert holder.try_acquire() is None
    try:
        assert reconcile_waiting(request_context()) == []
        assert _status(rid) is RequestStatus.AWAITING_APPROVAL
    finally:
        holder.release()

    assert len(reconcile_waiting(request_context())) == 1
    assert _status(rid) is RequestStatus.CANCELLED


def test_the_register_flow_reconciles_first_then_publishes(
    runs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(register_artifact, "emit_event", lambda **kw: None)
    cancelled, _ = waiting(runs, Cancelled())
    paused, _ = waiting(runs, Paused())

    state: Any = request_register(return_state=True, deadline_events=False)

    outcome = state.result()
    assert [line.split(":")[0] for line in outcome.reconciled] == [cancelled]
    table = latest_artifact(REGISTER_KEY, str(state.state_details.flow_run_id))
    assert cancelled not in str(table.data) and paused in str(table.data)
    assert SUBJECT_EMAIL.lower() not in f"{table.data} {table.description}".lower()
