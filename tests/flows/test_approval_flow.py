"""Approval of erasure plans: pause for a reviewer, four-eyes, rejection, timeout, pre-approval."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from audit.register import RequestStatus
from core.errors import TerminalError
from flows import subject_request as flow_module
from flows.subject_request import subject_request
from tasks.intake import submit
from tasks.request_support import request_context
from tests.flows.support import (
    APPROVER,
    REQUESTER,
    SUBJECT_EMAIL,
    events,
    kinds,
    reviewer,
    store_rows,
)

Configure = Callable[..., Path]


@pytest.fixture
def needs_approval(
    prefect_server: None, configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Erasure needs a human decision; the flow polls its pause every second."""
    monkeypatch.setattr(flow_module, "APPROVAL_POLL_SECONDS", 1)
    return configure(auto_approve=False)


def _register(requested_by: str = REQUESTER, approve_as: str | None = None) -> str:
    return submit(
        request_context(),
        kind="erasure",
        identity={"email": SUBJECT_EMAIL},
        requested_by=requested_by,
        reviewer=approve_as,
    ).id


def test_reviewer_approves_in_the_form(needs_approval: Path, isolated_settings: Path) -> None:
    rid = _register()
    with reviewer(
        {"decision": "approve", "reviewer": "Privacy-Officer", "note": "checked"}
    ) as done:
        outcome = subject_request(request_id=rid)

    assert len(done) == 1 and outcome.status == "completed"
    assert [c["id"] for c in store_rows(isolated_settings, "crm")["customers"]] == [2]
    [granted] = [e for e in events(rid) if e.kind == "approval.granted"]
    assert granted.actor == "Privacy-Officer" and granted.detail["source"] == "reviewer"
    assert set(granted.detail["note_sha256"]) <= set("0123456789abcdef")  # digest, not text
    history = request_context().register.history(rid)
    moves = [(h.to_status, h.actor) for h in history]
    assert (RequestStatus.AWAITING_APPROVAL, "flow:subject-request") in moves
    assert (RequestStatus.APPROVED, "Privacy-Officer") in moves


def test_the_form_shows_the_plan_without_personal_data(
    needs_approval: Path,
) -> None:
    from prefect.client.orchestration import get_client

    rid = _register()
    with reviewer({"decision": "approve", "reviewer": APPROVER}) as done:
        subject_request(request_id=rid)
    with get_client(sync_client=True) as client:
        description = client.read_flow_run_input(done[0], "paused-approval-1-description")
    assert "| crm | customers | delete | 1 |" in description
    assert "| crm | invoices | mask | 1 | invoices kept 10 years (tax law) |" in description
    assert "| files | * | skipped |" in description
    assert "robin" not in description.lower() and "quill lane" not in description.lower()


def test_rejection_ends_the_request_without_touching_data(
    needs_approval: Path, isolated_settings: Path
) -> None:
    before = {s: store_rows(isolated_settings, s) for s in ("crm", "shop")}
    rid = _register()
    with reviewer({"decision": "reject", "reviewer": "dpo", "note": "legal says no"}):
        outcome = subject_request(request_id=rid)

    assert outcome.status == "rejected" and outcome.exit_code == 1
    assert {s: store_rows(isolated_settings, s) for s in ("crm", "shop")} == before
    record = request_context().register.get(rid)
    assert record.status is RequestStatus.REJECTED and record.identity_destroyed
    seen = kinds(rid)
    assert "approval.rejected" in seen and "erasure.batch" not in seen
    assert "request.completed" not in seen


def test_four_eyes_refuses_the_requester_and_non_approvers(
    needs_approval: Path, isolated_settings: Path
) -> None:
    rid = _register(requested_by="dpo")  # an approver asked: someone else must decide
    answers = (
        {"decision": "approve", "reviewer": "DPO"},  # the requester, in another case
        {"decision": "approve", "reviewer": "intern"},  # not an approver
        {"decision": "approve", "reviewer": APPROVER},
    )
    with reviewer(*answers) as done:
        outcome = subject_request(request_id=rid)

    assert len(done) == 3 and outcome.status == "completed"
    refused = [e for e in events(rid) if e.kind == "approval.refused"]
    assert [e.detail["problem"] for e in refused] == [
        "the reviewer requested this request; four-eyes needs someone else",
        "the reviewer is not one of the policy's approvers",
    ]
    assert kinds(rid).index("approval.granted") > kinds(rid).index("approval.refused")


def test_repeated_refusals_fail_clearly_and_change_nothing(
    needs_approval: Path, isolated_settings: Path
) -> None:
    before = store_rows(isolated_settings, "crm")
    rid = _register()
    bad = {"decision": "approve", "reviewer": REQUESTER}
    with reviewer(bad, bad, bad), pytest.raises(TerminalError, match="3 approval decisions"):
        subject_request(request_id=rid)

    assert store_rows(isolated_settings, "crm") == before
    assert request_context().register.get(rid).status is RequestStatus.AWAITING_APPROVAL
    assert kinds(rid).count("approval.refused") == 3 and "approval.abandoned" in kinds(rid)


def test_timeout_rejects_without_touching_data(
    needs_approval: Path, isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flow_module, "APPROVAL_TIMEOUT_SECONDS", 2)
    before = store_rows(isolated_settings, "crm")
    rid = _register()

    outcome = subject_request(request_id=rid)

    assert outcome.status == "rejected"
    assert store_rows(isolated_settings, "crm") == before
    [timed_out] = [e for e in events(rid) if e.kind == "approval.timed_out"]
    assert timed_out.detail["waited_seconds"] == 2


def test_pre_approval_at_submission_skips_the_pause(
    needs_approval: Path, isolated_settings: Path
) -> None:
    rid = _register(approve_as=APPROVER)

    outcome = subject_request(request_id=rid)  # no reviewer thread: must not pause

    assert outcome.status == "completed"
    [granted] = [e for e in events(rid) if e.kind == "approval.granted"]
    assert granted.actor == APPROVER and granted.detail["source"] == "pre-approved"
    assert len(granted.detail["plans_digest"]) == 64


@pytest.mark.parametrize(
    ("requested_by", "approve_as", "problem"),
    [
        ("dpo", "DPO", "four-eyes needs someone else"),
        (REQUESTER, "intern", "not one of the policy's approvers"),
        (REQUESTER, "someone@example.com", "a name or role"),
    ],
)
def test_pre_approval_four_eyes_refused_before_registering(
    needs_approval: Path, requested_by: str, approve_as: str, problem: str
) -> None:
    with pytest.raises(TerminalError, match=problem) as caught:
        _register(requested_by=requested_by, approve_as=approve_as)
    assert "robin" not in str(caught.value).lower()
    assert request_context().register.list() == []


def test_auto_approve_records_the_policy_as_approver(
    prefect_server: None, configure: Configure
) -> None:
    configure(auto_approve=True)
    rid = _register()
    subject_request(request_id=rid)
    [granted] = [e for e in events(rid) if e.kind == "approval.granted"]
    assert granted.actor == "policy:auto-approve"


def test_kinds_without_required_approval_do_not_wait(
    prefect_server: None, configure: Configure
) -> None:
    configure(required_for=("access",), auto_approve=False)
    rid = _register()
    outcome = subject_request(request_id=rid)
    assert outcome.status == "completed" and "approval.granted" not in kinds(rid)
    notes = [h.note for h in request_context().register.history(rid)]
    assert "approval not required by policy" in notes
