"""The request register in the Prefect UI (table artifact and summary), the deadline events,
and the daily request-register flow that publishes both after reconciling."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from core.errors import TerminalError
from engine.intake import submit
from engine.request_support import request_context
from flows.request_register import request_register
from state.register import RequestStatus
from tasks import register_artifact
from tasks.cancellation import cancel_request
from tasks.register_artifact import (
    EVENT_DEADLINE_NEAR,
    EVENT_OVERDUE,
    REGISTER_KEY,
    SUMMARY_KEY,
    RegisterReport,
    RegisterRow,
    deadline_alerts,
    emit_deadline_events,
    publish_register,
)
from tests.flows.register_helpers import latest_artifact, register, to_awaiting
from tests.flows.support import APPROVER, OTHER_EMAIL, REQUESTER, SUBJECT_EMAIL, signer

Configure = Callable[..., Path]
NOW = datetime(2030, 6, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def console(prefect_server: None, configure: Configure) -> dict[str, str]:
    """Open requests of every kind the register shows, and two closed ones it must not.

    Deadlines are 30 days after receipt (the test policy)."""
    configure(auto_approve=False)
    ctx = request_context()
    fresh = register(ctx, days_ago=1)  # 29 days left
    near = register(ctx, kind="access", days_ago=28.5)  # 1 day and a half left
    overdue = register(ctx, days_ago=35)
    extended = register(ctx, days_ago=45)
    ctx.register.extend(extended, days=20, reason="complex case", actor="ops-lead")  # 5 left
    awaiting = register(ctx, days_ago=2, email=OTHER_EMAIL)
    to_awaiting(awaiting, ctx)
    approved = submit(
        ctx,
        kind="erasure",
        identity={"email": SUBJECT_EMAIL},
        requested_by=REQUESTER,
        reviewer=signer(APPROVER),  # pre-approved: the decision names the approver
    ).id
    done = register(ctx, days_ago=50)
    ctx.register.close(done, outcome=RequestStatus.CLOSED, actor="ops-lead", note="duplicate")
    cancelled = register(ctx, days_ago=3)
    cancel_request(ctx.register, ctx.progress, cancelled, reason="withdrawn", actor="ops-lead")
    return {
        "fresh": fresh,
        "near": near,
        "overdue": overdue,
        "extended": extended,
        "awaiting": awaiting,
        "approved": approved,
        "done": done,
        "cancelled": cancelled,
    }


@flow(persist_result=False)
def publishing() -> RegisterReport:
    """``publish_register`` in a flow run (Prefect deprecates artifacts outside runs)."""
    return publish_register(request_context())


def _table(artifact: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(artifact.data)
    return rows


def test_the_register_lists_open_requests_with_deadlines_and_approvals(
    console: dict[str, str],
) -> None:
    report = publishing()

    artifact = latest_artifact(REGISTER_KEY)
    rows = {r["request"]: r for r in _table(artifact)}
    open_ids = {console[k] for k in ("fresh", "near", "overdue", "extended", "awaiting")}
    assert set(rows) == open_ids | {console["approved"]}
    assert _table(artifact)[0]["request"] == console["overdue"]  # soonest first
    assert rows[console["overdue"]]["overdue"] == "yes"
    assert rows[console["overdue"]]["days left"] == -6  # 5 days and a half past: the 6th
    assert rows[console["fresh"]] | {"received": "", "deadline": ""} == {
        "request": console["fresh"],
        "kind": "erasure",
        "status": "received",
        "received": "",
        "deadline": "",
        "days left": 28,  # 29 days less a moment
        "overdue": "no",
        "extended": "no",
        "awaiting approval since": "",
        "approver": "",
        "decision": "",
    }
    assert rows[console["fresh"]]["deadline"].endswith(" UTC")
    assert rows[console["near"]]["kind"] == "access" and rows[console["near"]]["days left"] == 1
    extended = rows[console["extended"]]
    assert extended["extended"].startswith("yes, to ") and extended["overdue"] == "no"
    assert extended["days left"] == 4
    assert rows[console["awaiting"]]["status"] == "awaiting_approval"
    assert rows[console["awaiting"]]["awaiting approval since"].endswith(" UTC")
    approved = rows[console["approved"]]
    assert approved["approver"] == APPROVER
    assert approved["decision"] == "approved (pre-approved, verified)"

    assert (report.open, report.overdue, report.awaiting_approval, report.due_soon) == (6, 1, 1, 1)
    assert artifact.description == report.summary
    assert report.summary.startswith(
        "**6 open** requests: **1 overdue**, 1 due within 3 days, **1 awaiting approval** "
        "(longest since "
    )
    summary = latest_artifact(SUMMARY_KEY)
    assert report.summary in str(summary.data)


def test_the_register_holds_no_identity_and_no_free_text(console: dict[str, str]) -> None:
    publishing()

    published = " ".join(
        f"{a.description} {a.data}".lower()
        for a in (latest_artifact(REGISTER_KEY), latest_artifact(SUMMARY_KEY))
    )
    subject = str(request_context().record(console["fresh"]).subject).lower()
    for secret in (SUBJECT_EMAIL, OTHER_EMAIL, "robin", subject, REQUESTER, "complex case"):
        assert secret.lower() not in published


def test_an_empty_register_publishes_an_empty_table(
    prefect_server: None, configure: Configure
) -> None:
    configure()
    report = publishing()
    assert report.open == 0 and _table(latest_artifact(REGISTER_KEY)) == []
    assert report.summary.startswith("**0 open** requests: **0 overdue**")


def _row(request_id: str, due_in: timedelta, *, now: datetime = NOW) -> RegisterRow:
    due = now + due_in
    return RegisterRow(
        request_id=request_id,
        kind="erasure",
        status="received",
        received_at=due - timedelta(days=30),
        due_at=due,
        days_left=(due - now) // timedelta(days=1),
        overdue=due < now,
        extended=False,
        awaiting_since=None,
        decision=None,
    )


def test_deadline_alerts_name_overdue_and_near_requests_only() -> None:
    rows = [
        _row("req_000000000000000a", timedelta(days=-1)),
        _row("req_000000000000000b", timedelta(hours=1)),
        _row("req_000000000000000c", timedelta(days=3)),  # exactly 3 days: near
        _row("req_000000000000000d", timedelta(days=3, seconds=1)),
        _row("req_000000000000000e", timedelta(days=20)),
    ]
    alerts = deadline_alerts(rows, within_days=3, now=NOW)
    assert [(a.event, a.request_id[-1]) for a in alerts] == [
        (EVENT_OVERDUE, "a"),
        (EVENT_DEADLINE_NEAR, "b"),
        (EVENT_DEADLINE_NEAR, "c"),
    ]
    assert [a.request_id[-1] for a in deadline_alerts(rows, within_days=1, now=NOW)] == ["a", "b"]
    assert alerts[0].payload(3) == {
        "request_id": "req_000000000000000a",
        "deadline": (NOW - timedelta(days=1)).isoformat(),
        "days_left": -1,
        "extended": False,
        "within_days": 3,
    }


def test_deadline_events_carry_the_request_resource_and_no_personal_data(
    console: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.events import Event, emit_event

    emitted: list[Event] = []
    real = emit_event

    def recording(**kwargs: Any) -> Event | None:
        event = real(**kwargs)
        assert event is not None  # a server is there: the event was valid and sent
        emitted.append(event)
        return event

    monkeypatch.setattr(register_artifact, "emit_event", recording)

    alerts = emit_deadline_events(request_context())

    by_request = {e.resource.id: e for e in emitted}
    assert set(by_request) == {
        f"lifecycle.request.{console['overdue']}",
        f"lifecycle.request.{console['near']}",
    }
    near = by_request[f"lifecycle.request.{console['near']}"]
    assert near.event == EVENT_DEADLINE_NEAR
    assert dict(near.resource) == {
        "prefect.resource.id": f"lifecycle.request.{console['near']}",
        "prefect.resource.name": console["near"],
        "lifecycle.request.kind": "access",
        "lifecycle.request.status": "received",
    }
    assert near.payload["days_left"] == 1 and near.payload["within_days"] == 3
    assert by_request[f"lifecycle.request.{console['overdue']}"].event == EVENT_OVERDUE
    assert len(alerts) == 2
    text = " ".join(e.model_dump_json() for e in emitted).lower()
    subject = str(request_context().record(console["near"]).subject).lower()
    for secret in (SUBJECT_EMAIL.lower(), subject, REQUESTER):
        assert secret not in text
    # A wider window takes in the extended request (5 days left), not the fresh one.
    emitted.clear()
    emit_deadline_events(request_context(), within_days=6)
    assert f"lifecycle.request.{console['extended']}" in {e.resource.id for e in emitted}
    assert f"lifecycle.request.{console['fresh']}" not in {e.resource.id for e in emitted}


def test_the_daily_flow_publishes_and_emits(
    console: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []

    def sending(**kwargs: Any) -> None:
        sent.append(kwargs["event"])

    monkeypatch.setattr(register_artifact, "emit_event", sending)

    state: Any = request_register(return_state=True)

    outcome = state.result()
    assert outcome.reconciled == []
    assert outcome.counts is not None and outcome.counts.open == 6
    assert outcome.deadline_events == {
        EVENT_OVERDUE: [console["overdue"]],
        EVENT_DEADLINE_NEAR: [console["near"]],
    }
    assert sorted(sent) == sorted([EVENT_OVERDUE, EVENT_DEADLINE_NEAR])
    run_id = str(state.state_details.flow_run_id)
    assert {r["request"] for r in _table(latest_artifact(REGISTER_KEY, run_id))} >= {
        console["overdue"]
    }

    sent.clear()
    quiet = request_register(deadline_events=False)  # the run an ended subject-request starts
    assert quiet.deadline_events == {} and sent == []


def test_a_failed_reconciliation_still_publishes_then_fails_the_run(
    console: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks import reconcile

    def broken(_ctx: Any) -> list[str]:
        raise TerminalError("the Prefect API could not be read to reconcile waiting runs")

    monkeypatch.setattr(reconcile, "reconcile_waiting", broken)
    monkeypatch.setattr(register_artifact, "emit_event", lambda **kw: None)

    state: Any = request_register(return_state=True)

    assert state.is_failed()
    with pytest.raises(TerminalError, match="could not be read"):
        state.result()
    run_id = str(state.state_details.flow_run_id)
    assert len(_table(latest_artifact(REGISTER_KEY, run_id))) == 6
