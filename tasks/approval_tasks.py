"""Approval of a request's plans: policy, pre-approval, four-eyes review, rejection, timeout.

Policy (``policy.requests.approval``) says which kinds need a human decision. When one is
needed and not given at submission, the flow pauses with ``ApprovalInput``: the form shows
the plan summary (counts per store and table, actions, deferrals, warnings; no personal
data). Four-eyes: the reviewer must be one of the policy's approvers (compared without
case) and not the person who requested it; a refused decision is audited and the flow
asks again. Reviewer notes reach the ledger only as length and SHA-256.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from prefect.input import RunInput
from pydantic import BaseModel, Field

from audit.events import EventStatus
from audit.guard import check_text
from audit.progress import Phase
from audit.register import RequestStatus
from audit.register_model import text_fingerprint
from config.schema.policy import Approval as ApprovalPolicy
from core.errors import PersonalDataRefused, TerminalError
from tasks.request_support import (
    FLOW_ACTOR,
    RequestContext,
    clean_errors,
    crash_point,
    request_context,
    request_task,
    status_past,
)

AUTO_APPROVER = "policy:auto-approve"


class ApprovalInput(RunInput):
    """The reviewer's decision on a request's plans (shown as a form in the Prefect UI)."""

    decision: Literal["approve", "reject"] = Field(
        description="Approve to carry out the plans shown; reject to end the request untouched."
    )
    reviewer: str = Field(
        description="Your name or role: one of the policy's approvers, not the requester."
    )
    note: str = Field(default="", description="Why (kept in the register; hashed in the ledger).")


class ApprovalCheck(BaseModel):
    """Where approval stands: decided ("approved"/"rejected") or "required" with the summary."""

    state: Literal["approved", "rejected", "required"]
    summary: str = ""


def four_eyes_problem(policy: ApprovalPolicy, reviewer: str, requested_by: str) -> str | None:
    """Why ``reviewer`` may not decide on a request by ``requested_by``, or None if they may."""
    name = reviewer.strip()
    if not name:
        return "the reviewer is missing"
    try:
        check_text(name, "reviewer")
    except PersonalDataRefused:
        return "the reviewer must be a name or role, not contact details"
    if name.casefold() not in {a.casefold() for a in policy.approvers}:
        return "the reviewer is not one of the policy's approvers"
    if name.casefold() == requested_by.strip().casefold():
        return "the reviewer requested this request; four-eyes needs someone else"
    return None


def plans_digest(ctx: RequestContext, request_id: str) -> str:
    """One digest over every store's plan digest, in inventory order: what was approved."""
    lines = [
        f"{row.store}:{row.plan_digest or '-'}"
        for row in ctx.progress.stores(request_id)
        if row.phase is not Phase.SKIPPED
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def approval_summary(ctx: RequestContext, request_id: str) -> str:
    """Markdown for the approval form: counts per store and table, actions, deferrals."""
    record = ctx.record(request_id)
    lines = [f"## {record.kind.value.capitalize()} request {request_id}", ""]
    lines += [f"Requested by **{record.requested_by}**; due {record.due_at:%Y-%m-%d}.", ""]
    lines += ["| store | table | action | rows | reason |", "|---|---|---|---:|---|"]
    deferrals: list[str] = []
    for row in ctx.progress.stores(request_id):
        if row.phase is Phase.SKIPPED:
            lines.append(f"| {row.store} | * | skipped | 0 | {row.skip_reason} |")
            continue
        steps = row.plan_summary or [
            {"target": t, "action": "found", "count": n, "reason": None, "until": None}
            for t, n in row.counts.items()
        ]
        for s in steps:
            lines.append(
                f"| {row.store} | {s['target']} | {s['action']} | {s['count']} "
                f"| {s['reason'] or ''} |"
            )
            if s["action"] == "defer" and s["count"]:
                until = f" until {s['until']}" if s["until"] else ""
                deferrals.append(f"- {row.store}.{s['target']}: {s['reason']}{until}")
    if deferrals:
        lines += ["", "**Deferred (not erased now):**", *deferrals]
    warnings = ctx.ledger.events(request_id=request_id, kinds=["erasure.planned"])
    notes = sorted({w for e in warnings for w in e.detail.get("warnings", [])})
    if notes:
        lines += ["", "**Warnings:**", *(f"- {w}" for w in notes)]
    return "\n".join(lines) + "\n"


def _grant(
    ctx: RequestContext,
    request_id: str,
    reviewer: str,
    source: str,
    *,
    note: str = "",
    note_sha256: str | None = None,
) -> None:
    """Record an approval everywhere: progress, ledger, register, store phases."""
    digest = plans_digest(ctx, request_id)
    if note:
        note_sha256 = str(text_fingerprint(note)["sha256"])
    ctx.progress.runs.record_approval(
        request_id,
        decision="approved",
        reviewer=reviewer,
        source=source,
        note_sha256=note_sha256,
        digest=digest,
    )
    detail: dict[str, object] = {"source": source, "plans_digest": digest}
    if note_sha256 is not None:
        detail["note_sha256"] = note_sha256
    ctx.audit(
        ctx.event(
            "approval.granted", EventStatus.APPROVED, request_id, detail=detail, actor=reviewer
        )
    )
    _to_approved(ctx, request_id, reviewer, note or None)


def _to_approved(ctx: RequestContext, request_id: str, actor: str, note: str | None) -> None:
    status = ctx.record(request_id).status
    if status in (RequestStatus.PLANNED, RequestStatus.AWAITING_APPROVAL):
        ctx.register.transition(
            request_id, RequestStatus.APPROVED, actor=actor, note=note, expected=status
        )
    ctx.progress.mark_approved(request_id)
    crash_point("approved")


@request_task("check-approval")
def check_approval(request_id: str) -> ApprovalCheck:
    """Apply policy or a pre-approval; otherwise mark the request awaiting a reviewer."""
    with clean_errors("checking the approval"):
        ctx = request_context()
        decided = _decided(ctx, request_id)
        if decided is not None:
            return ApprovalCheck(state=decided)
        if ctx.record(request_id).status == RequestStatus.PLANNED:
            ctx.register.transition(
                request_id,
                RequestStatus.AWAITING_APPROVAL,
                actor=FLOW_ACTOR,
                expected=RequestStatus.PLANNED,
            )
        return ApprovalCheck(state="required", summary=approval_summary(ctx, request_id))


def _decided(ctx: RequestContext, request_id: str) -> Literal["approved", "rejected"] | None:
    """The decision already taken, by a reviewer, at submission or by policy; else None."""
    record = ctx.record(request_id)
    approval = ctx.progress.runs.run(request_id).approval
    policy = ctx.config.policy.requests.approval
    if record.status is RequestStatus.REJECTED or (
        approval is not None and approval.decision == "rejected"
    ):
        return "rejected"
    if approval is not None and approval.digest is not None:
        _to_approved(ctx, request_id, approval.reviewer, None)  # a crash after deciding
    elif approval is not None:  # given at submission: bind it to the plans now
        _grant(
            ctx, request_id, approval.reviewer, approval.source, note_sha256=approval.note_sha256
        )
    elif status_past(record.status, RequestStatus.AWAITING_APPROVAL):
        pass  # a rerun after the decision
    elif record.kind.value not in policy.required_for:
        _to_approved(ctx, request_id, FLOW_ACTOR, "approval not required by policy")
    elif policy.auto_approve:
        _grant(ctx, request_id, AUTO_APPROVER, AUTO_APPROVER)
    else:
        return None
    return "approved"


@request_task("record-review")
def record_review(request_id: str, decision: str, reviewer: str, note: str) -> str:
    """Apply a reviewer's decision under four-eyes; returns approved, rejected or refused."""
    with clean_errors("recording the review"):
        ctx = request_context()
        record = ctx.record(request_id)
        policy = ctx.config.policy.requests.approval
        problem = four_eyes_problem(policy, reviewer, record.requested_by)
        if problem is not None:
            ctx.audit(
                ctx.event(
                    "approval.refused",
                    EventStatus.FAILED,
                    request_id,
                    detail={
                        "problem": problem,
                        "decision": decision,
                        "reviewer": text_fingerprint(reviewer),
                    },
                )
            )
            return "refused"
        if decision == "approve":
            _grant(ctx, request_id, reviewer.strip(), "reviewer", note=note)
            return "approved"
        _reject(ctx, request_id, reviewer.strip(), "approval.rejected", note)
        return "rejected"


def _reject(
    ctx: RequestContext,
    request_id: str,
    actor: str,
    kind: str,
    note: str,
    *,
    extra: dict[str, object] | None = None,
) -> None:
    note_print = text_fingerprint(note) if note else None
    ctx.progress.runs.record_approval(
        request_id,
        decision="rejected",
        reviewer=actor,
        source="reviewer" if actor != FLOW_ACTOR else "timeout",
        note_sha256=None if note_print is None else str(note_print["sha256"]),
        digest=plans_digest(ctx, request_id),
    )
    detail: dict[str, object] = dict(extra or {})
    if note_print is not None:
        detail["note"] = note_print
    ctx.audit(ctx.event(kind, EventStatus.FAILED, request_id, detail=detail, actor=actor))
    status = ctx.record(request_id).status
    if not status.terminal:
        ctx.progress.forget(request_id)
        ctx.register.close(
            request_id,
            outcome=RequestStatus.REJECTED,
            actor=actor,
            note=note or None,
            expected=status,
        )
        ctx.progress.vacuum()


@request_task("record-approval-timeout")
def record_approval_timeout(request_id: str, waited_seconds: int) -> None:
    """Nobody decided in time: the request ends rejected, data untouched."""
    with clean_errors("recording the approval timeout"):
        ctx = request_context()
        extra: dict[str, object] = {"waited_seconds": waited_seconds}
        _reject(ctx, request_id, FLOW_ACTOR, "approval.timed_out", "", extra=extra)


@request_task("record-approval-refused")
def record_approval_gave_up(request_id: str, attempts: int) -> None:
    """Too many refused decisions: fail clearly (the request stays awaiting approval)."""
    with clean_errors("recording refused approvals"):
        ctx = request_context()
        ctx.audit(
            ctx.event(
                "approval.abandoned",
                EventStatus.FAILED,
                request_id,
                counts={"refused": attempts},
            )
        )
    raise TerminalError(
        f"request {request_id}: {attempts} approval decisions were refused (four-eyes); "
        "the request still awaits an approver",
        request_id=request_id,
    )
