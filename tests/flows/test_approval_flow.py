"""Approval of erasure plans: pause for a signed decision, four-eyes, rejection, timeout,
pre-approval. Decisions from the form carry the approver's signature (``sign_as``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from core.errors import TerminalError
from engine.intake import submit
from engine.request_support import request_context
from flows import approval_wait
from flows.subject_request import subject_request
from state.approvals import Signer
from state.register import RequestStatus
from tests.flows.support import (
    APPROVER,
    REQUESTER,
    SUBJECT_EMAIL,
    answered_key,
    approver_key,
    events,
    kinds,
    reviewer,
    signer,
    store_rows,
)

Configure = Callable[..., Path]


@pytest.fixture
def needs_approval(
    prefect_server: None, configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Erasure needs a human decision; the flow polls its pause every second."""
    monkeypatch.setattr(approval_wait, "APPROVAL_POLL_SECONDS", 1)
    return configure(auto_approve=False)


def _register(requested_by: str = REQUESTER, approve_as: Signer | None = None) -> str:
    return submit(
        request_context(),
        kind="erasure",
        identity={"email": SUBJECT_EMAIL},
        requested_by=requested_by,
        reviewer=approve_as,
    ).id


def test_reviewer_approves_in_the_form_with_a_signature(
    needs_approval: Path, isolated_settings: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    rid = _register()
    answer = {"decision": "approve", "reviewer": "Privacy-Officer", "note": "checked"}
    with reviewer(answer | {"sign_as": APPROVER}) as done:
        outcome = subject_request(request_id=rid)

    assert len(done) == 1 and outcome.status == "completed"
    assert [c["id"] for c in store_rows(isolated_settings, "crm")["customers"]] == [2]
    [decided] = [e for e in events(rid) if e.kind == "approval.decided"]
    assert decided.actor == APPROVER  # the policy's name, whatever case the form used
    assert decided.detail["source"] == "ui" and decided.detail["verification"] == "verified"
    assert decided.detail["key_fingerprint"].startswith("ed25519:")
    assert set(decided.detail["note_sha256"]) <= set("0123456789abcdef")  # digest, not text
    history = request_context().register.history(rid)
    moves = [(h.to_status, h.actor) for h in history]
    assert (RequestStatus.AWAITING_APPROVAL, "flow:subject-request") in moves
    assert (RequestStatus.APPROVED, APPROVER) in moves
    with get_client(sync_client=True) as client, pytest.raises(PrefectHTTPStatusError) as gone:
        client.read_flow_run_input(
            done[0], f"paused-{answered_key(done[0])}-response"
        )  # read, then deleted
    assert gone.value.response.status_code == 404


def test_the_form_shows_the_plan_without_personal_data(needs_approval: Path) -> None:
    from prefect.client.orchestration import get_client

    rid = _register()
    with reviewer({"decision": "approve", "reviewer": APPROVER, "sign_as": APPROVER}) as done:
        subject_request(request_id=rid)
    with get_client(sync_client=True) as client:
        description = client.read_flow_run_input(
            done[0], f"paused-{answered_key(done[0])}-description"
        )
    assert "| crm | customers | delete | 1 |" in description
    assert "| crm | invoices | mask | 1 | invoices kept 10 years (tax law) |" in description
    assert "| files | * | skipped |" in description
    assert f"lifecycle approver sign {rid}" in description
    assert "robin" not in description.lower() and "quill lane" not in description.lower()


def test_signed_rejection_ends_the_request_without_touching_data(
    needs_approval: Path, isolated_settings: Path
) -> None:
    before = {s: store_rows(isolated_settings, s) for s in ("crm", "shop")}
    rid = _register()
    answer = {"decision": "reject", "reviewer": "dpo", "note": "legal says no", "sign_as": "dpo"}
    with reviewer(answer):
        outcome = subject_request(request_id=rid)

    assert outcome.status == "rejected" and outcome.exit_code == 1
    assert {s: store_rows(isolated_settings, s) for s in ("crm", "shop")} == before
    record = request_context().register.get(rid)
    assert record.status is RequestStatus.REJECTED and record.identity_destroyed
    [decided] = [e for e in events(rid) if e.kind == "approval.decided"]
    assert decided.detail["decision"] == "rejected" and decided.actor == "dpo"
    seen = kinds(rid)
    assert "erasure.batch" not in seen and "request.completed" not in seen


def test_requester_forged_and_unsigned_decisions_are_refused(
    needs_approval: Path, isolated_settings: Path
) -> None:
    rid = _register(requested_by="dpo")  # an approver asked: someone else must decide
    answers = (
        {"decision": "approve", "reviewer": "dpo", "sign_as": "dpo"},  # the requester's key
        {"decision": "approve", "reviewer": APPROVER, "sign_as": APPROVER, "key_of": "dpo"},
        {"decision": "approve", "reviewer": APPROVER, "sign_as": APPROVER},
    )
    with reviewer(*answers) as done:
        outcome = subject_request(request_id=rid)

    assert len(done) == 3 and outcome.status == "completed"
    refused = [e for e in events(rid) if e.kind == "approval.refused"]
    assert [e.detail["problem"] for e in refused] == [
        "dpo requested this request; four-eyes needs someone else",
        f"the signature does not verify with {APPROVER}'s public key (another key, or the "
        "decision was altered)",
    ]
    assert refused[0].detail["key_fingerprint"].startswith("ed25519:")
    assert kinds(rid).count("approval.decided") == 1
    assert kinds(rid).index("approval.decided") > kinds(rid).index("approval.refused")


def test_unsigned_decisions_are_refused_until_the_flow_gives_up(
    needs_approval: Path, isolated_settings: Path
) -> None:
    before = store_rows(isolated_settings, "crm")
    rid = _register()
    unsigned = {"decision": "approve", "reviewer": APPROVER}
    forged = {"decision": "approve", "reviewer": APPROVER, "signature": "lcap1.eyJ4IjoxfQ"}
    with (
        reviewer(unsigned, forged, unsigned),
        pytest.raises(TerminalError, match="3 approval decisions"),
    ):
        subject_request(request_id=rid)

    assert store_rows(isolated_settings, "crm") == before
    assert request_context().register.get(rid).status is RequestStatus.AWAITING_APPROVAL
    problems = [e.detail["problem"] for e in events(rid) if e.kind == "approval.refused"]
    assert problems[0].startswith("the decision is not signed")
    assert problems[1] == "the signed decision is damaged (copy the whole line)"
    assert "approval.abandoned" in kinds(rid) and "approval.decided" not in kinds(rid)


def test_unverified_ui_decisions_when_the_policy_allows_them(
    prefect_server: None, configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(approval_wait, "APPROVAL_POLL_SECONDS", 1)
    configure(auto_approve=False, unverified_ui=True)
    rid = _register()
    with reviewer({"decision": "approve", "reviewer": "DPO"}):
        outcome = subject_request(request_id=rid)

    assert outcome.status == "completed"
    [decided] = [e for e in events(rid) if e.kind == "approval.decided"]
    assert decided.detail["verification"] == "unverified" and decided.actor == "dpo"
    assert decided.detail["ui_user"].startswith("Prefect UI user")
    assert "key_fingerprint" not in decided.detail


def test_timeout_rejects_without_touching_data(
    needs_approval: Path, isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(approval_wait, "APPROVAL_TIMEOUT_SECONDS", 2)
    before = store_rows(isolated_settings, "crm")
    rid = _register()

    outcome = subject_request(request_id=rid)

    assert outcome.status == "rejected"
    assert store_rows(isolated_settings, "crm") == before
    [timed_out] = [e for e in events(rid) if e.kind == "approval.timed_out"]
    assert timed_out.detail["waited_seconds"] == 2
    [decided] = [e for e in events(rid) if e.kind == "approval.decided"]
    assert (decided.detail["decision"], decided.detail["source"]) == ("rejected", "timeout")


def test_pre_approval_at_submission_skips_the_pause(
    needs_approval: Path, isolated_settings: Path
) -> None:
    rid = _register(approve_as=signer(APPROVER))

    outcome = subject_request(request_id=rid)  # no reviewer thread: must not pause

    assert outcome.status == "completed"
    [decided] = [e for e in events(rid) if e.kind == "approval.decided"]
    assert decided.actor == APPROVER and decided.detail["source"] == "pre-approved"
    assert decided.detail["scope"] == "pre-approval" and decided.detail["plans_digest"] is None
    [bound] = [e for e in events(rid) if e.kind == "approval.bound"]
    assert len(bound.detail["plans_digest"]) == 64


@pytest.mark.parametrize(
    ("requested_by", "approve_as", "problem"),
    [
        ("dpo", Signer("DPO", approver_key("dpo")), "four-eyes needs someone else"),
        (REQUESTER, Signer("intern", approver_key("intruder")), "not one of the policy's"),
        (REQUESTER, Signer("dpo", approver_key("intruder")), "is not dpo's key"),
        (REQUESTER, Signer("someone@example.com", approver_key("dpo")), "not one of the"),
    ],
)
def test_pre_approval_refused_before_registering(
    needs_approval: Path, requested_by: str, approve_as: Signer, problem: str
) -> None:
    with pytest.raises(TerminalError, match=problem) as caught:
        _register(requested_by=requested_by, approve_as=approve_as)
    assert "robin" not in str(caught.value).lower() and "someone@" not in str(caught.value)
    assert request_context().register.list() == []


def test_auto_approve_records_the_policy_as_approver(
    prefect_server: None, configure: Configure
) -> None:
    configure(auto_approve=True)
    rid = _register()
    subject_request(request_id=rid)
    [decided] = [e for e in events(rid) if e.kind == "approval.decided"]
    assert decided.actor == "policy:auto-approve" and decided.detail["verification"] == "none"


def test_kinds_without_required_approval_do_not_wait(
    prefect_server: None, configure: Configure
) -> None:
    configure(required_for=("access",), auto_approve=False)
    rid = _register()
    outcome = subject_request(request_id=rid)
    assert outcome.status == "completed" and "approval.decided" not in kinds(rid)
    notes = [h.note for h in request_context().register.history(rid)]
    assert "approval not required by policy" in notes
