"""A refused decision from the approval form tells its sender why and what to do (run log
WARNING, ``approval-refused`` artifact), and the form says how long the run waits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import flow

from engine.approval import APPROVAL_TIMEOUT_SECONDS, Verdict, span, timeout_notice
from engine.intake import submit
from engine.request_support import request_context
from flows import approval_wait
from flows.subject_request import subject_request
from state.register import RequestStatus
from tasks.approval_feedback import REFUSED_ARTIFACT
from tasks.approval_tasks import ApprovalCheck, check_approval, record_review
from tests.flows.register_helpers import latest_artifact, register, to_awaiting
from tests.flows.support import APPROVER, REQUESTER, SUBJECT_EMAIL, reviewer, signed_token

Configure = Callable[..., Path]


@pytest.fixture
def needs_approval(prefect_server: None, configure: Configure) -> Path:
    return configure(auto_approve=False)


@flow(persist_result=False)
def reviewing(request_id: str, answers: list[dict[str, str]]) -> list[Verdict]:
    """The form's answers recorded one after another in a flow run, as the flow does."""
    return [
        record_review(
            request_id, a["decision"], a["reviewer"], a.get("note", ""), a.get("signature", "")
        )
        for a in answers
    ]


@flow(persist_result=False)
def checking(request_id: str, timeout_seconds: int = APPROVAL_TIMEOUT_SECONDS) -> ApprovalCheck:
    return check_approval(request_id, timeout_seconds)


def _warnings(flow_run_id: UUID) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=60)
    wanted = LogFilter(
        flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]), level=LogFilterLevel(ge_=30)
    )
    with get_client(sync_client=True) as client:
        return [log.message for log in client.read_logs(log_filter=wanted)]


def _refused_artifacts(flow_run_id: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    wanted = ArtifactFilter(
        key=ArtifactFilterKey(any_=[REFUSED_ARTIFACT]),
        flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
    )
    with get_client(sync_client=True) as client:
        return list(client.read_artifacts(artifact_filter=wanted))


def test_the_requesters_own_decision_is_refused_with_why_and_what_to_do(
    needs_approval: Path,
) -> None:
    rid = register(requested_by="dpo")  # an approver asked: someone else must decide
    to_awaiting(rid)
    own = {"decision": "approve", "reviewer": "dpo", "signature": signed_token(rid, "dpo")}

    state: Any = reviewing(rid, [own], return_state=True)

    assert state.result() == ["refused"]
    run_id = state.state_details.flow_run_id
    [warning] = _warnings(run_id)
    assert warning == (
        f"Decision on request {rid} refused: dpo requested this request; four-eyes needs "
        "someone else. No decision was taken: the run is waiting for another one."
    )
    [artifact] = _refused_artifacts(run_id)
    text = str(artifact.data)
    assert f"# Decision on request {rid} refused" in text
    assert "**Why:** dpo requested this request; four-eyes needs someone else" in text
    assert f"ask another approver ({APPROVER})" in text  # the policy's others, not dpo
    assert f"lifecycle approver sign {rid} --key YOUR_KEY" in text
    assert f"lifecycle audit show --request {rid}" in text
    assert SUBJECT_EMAIL.lower() not in f"{text} {artifact.description} {warning}".lower()
    assert request_context().record(rid).status is RequestStatus.AWAITING_APPROVAL


def test_unsigned_damaged_and_late_decisions_each_say_why(needs_approval: Path) -> None:
    rid = register()
    to_awaiting(rid)
    answers = [
        {"decision": "approve", "reviewer": APPROVER},  # not signed
        {"decision": "approve", "reviewer": APPROVER, "signature": "lcap1.eyJ4IjoxfQ"},
        {"decision": "approve", "reviewer": APPROVER, "signature": signed_token(rid, APPROVER)},
        {
            "decision": "reject",
            "reviewer": "dpo",
            "signature": signed_token(rid, "dpo", "rejected"),
        },
    ]

    state: Any = reviewing(rid, answers, return_state=True)

    assert state.result() == ["refused", "refused", "approved", "approved"]
    warnings = _warnings(state.state_details.flow_run_id)
    assert len(warnings) == 3  # the accepted decision says nothing
    assert "the decision is not signed" in warnings[0]
    assert "the signed decision is damaged (copy the whole line)" in warnings[1]
    assert f"was already decided: approved by {APPROVER}" in warnings[2]
    assert warnings[2].endswith(
        f"The decision that stands (approved by {APPROVER} (ui)) is carried out."
    )
    artifacts = _refused_artifacts(state.state_details.flow_run_id)
    assert len(artifacts) == 3
    texts = sorted(str(a.data) for a in artifacts)
    assert (
        sum("**What to do:** nothing; the decision that stands applies." in t for t in texts) == 1
    )
    assert all(SUBJECT_EMAIL.lower() not in t.lower() for t in texts)


def test_the_form_says_how_long_it_waits_and_what_happens_then(needs_approval: Path) -> None:
    rid = submit(
        request_context(), kind="erasure", identity={"email": SUBJECT_EMAIL}, requested_by=REQUESTER
    ).id
    to_awaiting(rid)

    check = checking(rid)

    assert check.state == "required"
    assert "**If nobody decides within 7 days** (by " in check.summary
    assert (
        "the request ends **rejected** as timed out: nothing is erased or changed" in check.summary
    )
    assert f"lifecycle request submit --resume {rid} --approve" in check.summary
    assert "2 hours" in checking(rid, 7200).summary
    assert APPROVAL_TIMEOUT_SECONDS == approval_wait.APPROVAL_TIMEOUT_SECONDS  # one truth
    assert [span(s) for s in (1, 90, 120, 3600, 86400, 604800)] == [
        "1 second",
        "90 seconds",
        "2 minutes",
        "1 hour",
        "1 day",
        "7 days",
    ]
    notice = timeout_notice(rid, 604800, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert "within 7 days** (by 2030-01-08 00:00 UTC)" in notice


def test_the_flow_explains_a_refused_form_answer(
    needs_approval: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(approval_wait, "APPROVAL_POLL_SECONDS", 1)
    rid = submit(
        request_context(), kind="erasure", identity={"email": SUBJECT_EMAIL}, requested_by="dpo"
    ).id
    answers = (
        {"decision": "approve", "reviewer": "dpo", "sign_as": "dpo"},  # the requester
        {"decision": "approve", "reviewer": APPROVER, "sign_as": APPROVER},
    )
    with reviewer(*answers) as done:
        outcome = subject_request(request_id=rid)

    assert outcome.status == "completed"
    [artifact] = _refused_artifacts(done[0])
    assert "four-eyes needs someone else" in str(artifact.data)
    assert any("four-eyes" in w for w in _warnings(done[0]))
    assert latest_artifact(REFUSED_ARTIFACT).id == artifact.id
