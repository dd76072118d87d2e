"""Taking a decision on a request's plans: policy, signed decisions, four-eyes, timeout.

Every decision, whoever takes it (the Prefect form, the CLI, a pre-approval at
submission, the policy's auto-approval, the pause timing out), goes through
``take_decision``: checked (``state.approvals.check_attempt``: the signature against the
policy's public key, this request and these plans, four-eyes), then recorded once with
its ``approval.decided`` event. A refused decision is recorded as ``approval.refused``
with the problem; the caller then carries on with the decision that stands
(``in_force``), if one does, or asks again. Reviewer notes reach the ledger only as a
SHA-256.

Prefect-free: the Prefect tasks, the pause form (``ApprovalInput``) and the feedback on a
refused form decision live in ``tasks.approval_tasks`` and ``tasks.approval_feedback``.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from audit.events import EventStatus, NewEvent
from config.schema.policy import Approval as ApprovalPolicy
from config.settings import get_settings
from core.approver_keys import (
    PRE_APPROVAL,
    Decision,
    SigningKeyError,
    parse_token,
)
from core.crash_points import crash_point
from core.free_text import FreeTextRefused, check_free_text
from engine.request_support import (
    FLOW_ACTOR,
    RequestContext,
    status_past,
)
from state.approvals import (
    ApprovalBook,
    Attempt,
    DecisionRefused,
    Signer,
    Verified,
    check_attempt,
    current_scope,
    decision_row,
    signer_for,
)
from state.approvals import plans_digest as digest_of_plans
from state.progress import Phase
from state.register import RequestStatus
from state.register_model import text_fingerprint

__all__ = [
    "APPROVAL_TIMEOUT_SECONDS",
    "AUTO_APPROVER",
    "Signer",
    "Verdict",
    "approval_summary",
    "approval_timed_out",
    "decided",
    "four_eyes_problem",
    "in_force",
    "plans_digest",
    "pre_approve",
    "review",
    "span",
    "take_decision",
    "timeout_notice",
]

Verdict = Literal["approved", "rejected", "refused", "finished"]
"""The decision that stands after a review: "refused" when none does."""

AUTO_APPROVER = "policy:auto-approve"

APPROVAL_TIMEOUT_SECONDS = 7 * 24 * 3600
"""How long a run waits for a decision before the request ends rejected (the form says so)."""


def four_eyes_problem(policy: ApprovalPolicy, reviewer: Signer, requested_by: str) -> str | None:
    """Why ``reviewer`` may not decide on a request by ``requested_by``, or None if they may."""
    try:
        signer = signer_for(policy, reviewer.name, reviewer.key)
    except DecisionRefused as refused:
        return refused.problem
    if signer.name.casefold() == requested_by.strip().casefold():
        return f"{signer.name} requested this request; four-eyes needs someone else"
    return None


def plans_digest(ctx: RequestContext, request_id: str) -> str:
    """One digest over every store's plan digest, in inventory order: what is decided on."""
    return digest_of_plans(ctx.progress, request_id)


def approval_summary(
    ctx: RequestContext, request_id: str, timeout_seconds: int = APPROVAL_TIMEOUT_SECONDS
) -> str:
    """Markdown for the approval form: counts per store and table, actions, deferrals,
    and how long the run waits for a decision (``timeout_seconds``) and what happens then."""
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
    lines += [
        "",
        f"Plans digest `{plans_digest(ctx, request_id)}`. Sign your decision with "
        f"`lifecycle approver sign {request_id} --key YOUR_KEY` (add `--reject` to reject) "
        "and paste the line it prints as the signature.",
        "",
        timeout_notice(request_id, timeout_seconds),
    ]
    return "\n".join(lines) + "\n"


def timeout_notice(request_id: str, timeout_seconds: int, now: datetime | None = None) -> str:
    """What the form says about waiting: how long, until when, and what happens then.

    True of both ways a wait ends: a paused run records the timeout itself; a suspended
    run that Prefect fails at its timeout has it recorded by ``tasks.reconcile`` (the
    request-register flow). Either way ``approval_timed_out`` rejects the request.
    """
    until = (now or datetime.now(UTC)) + timedelta(seconds=timeout_seconds)
    return (
        f"**If nobody decides within {span(timeout_seconds)}** (by {until:%Y-%m-%d %H:%M} UTC), "
        "the request ends **rejected** as timed out: nothing is erased or changed in any "
        "store, the subject's identity is destroyed, and answering the subject needs a new "
        "request. A decision taken before then (here, or with `lifecycle request submit "
        f"--resume {request_id} --approve`) stands."
    )


def span(seconds: int) -> str:
    """``seconds`` as people say it: "7 days", "36 hours", "90 seconds"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


# -- taking a decision ---------------------------------------------------------------------


def take_decision(ctx: RequestContext, request_id: str, attempt: Attempt) -> Verified:
    """Check ``attempt`` and record it as the decision, with its ``approval.decided`` event.

    DecisionRefused, after recording ``approval.refused`` with the problem, when it fails a
    check or when the request is finished or decided already (``taken``).
    """
    record = ctx.record(request_id)
    scope = current_scope(record, ctx.progress)
    book = ApprovalBook(ctx.ledger, ctx.progress)
    verified: Verified | None = None
    try:
        _check_note(attempt.note)
        verified = check_attempt(ctx.config.policy.requests.approval, record, scope, attempt)
        note_sha256 = str(text_fingerprint(attempt.note)["sha256"]) if attempt.note else None
        event = _decided_event(ctx, request_id, scope, attempt, verified, note_sha256=note_sha256)
        book.take(event, decision_row(request_id, scope, attempt, verified, note_sha256))
    except DecisionRefused as refused:
        known = verified or refused.verified
        book.record(_refused_event(ctx, request_id, attempt, known, refused))
        raise
    return verified


def _check_note(note: str) -> None:
    if not note:
        return
    try:
        check_free_text("note", note)
    except FreeTextRefused as e:
        problem = f"the note holds {e.found}; notes must not contain personal data"
        raise DecisionRefused(problem) from None


def _decided_event(
    ctx: RequestContext,
    request_id: str,
    scope: str,
    attempt: Attempt,
    verified: Verified,
    *,
    note_sha256: str | None,
) -> NewEvent:
    detail: dict[str, Any] = {
        "decision": attempt.decision,
        "source": attempt.source,
        "approver": verified.approver,
        "verification": verified.verification,
        "scope": "pre-approval" if scope == PRE_APPROVAL else "plans",
        "plans_digest": None if scope == PRE_APPROVAL else scope,
    }
    signed = attempt.signed
    if verified.verification == "verified" and signed is not None:
        detail |= {
            "key_fingerprint": verified.key_fingerprint,
            "signature_sha256": signed.signature_sha256(),
            "signed_at": signed.signed_at,
        }
    if verified.verification == "unverified":
        # What the Prefect UI knows of the person: the server's basic auth is one shared
        # password, so at best "someone who had it"; without it, anyone reaching the API.
        detail["ui_user"] = "Prefect UI user (basic auth)" if _basic_auth() else "Prefect UI user"
    if note_sha256 is not None:
        detail["note_sha256"] = note_sha256
    approved = attempt.decision == "approved"
    return ctx.event(
        "approval.decided",
        EventStatus.APPROVED if approved else EventStatus.FAILED,
        request_id,
        detail=detail,
        actor=verified.approver,
    )


def _basic_auth() -> bool:
    """Whether the Prefect server asks for basic auth (a form decision runs under Prefect)."""
    if os.environ.get("PREFECT_API_AUTH_STRING"):
        return True
    if "prefect" not in sys.modules:
        return False
    from prefect.settings import PREFECT_API_AUTH_STRING

    return bool(PREFECT_API_AUTH_STRING.value())


def _refused_event(
    ctx: RequestContext,
    request_id: str,
    attempt: Attempt,
    verified: Verified | None,
    refused: DecisionRefused,
) -> NewEvent:
    detail: dict[str, Any] = {
        "problem": refused.problem,
        "decision": attempt.decision,
        "source": attempt.source,
        "signature": "missing" if attempt.signed is None else "given",
    }
    policy = ctx.config.policy.requests.approval
    signed = attempt.signed
    entry = policy.approver(signed.approver if signed is not None else attempt.approver)
    if verified is not None:
        detail["approver"] = verified.approver
        detail["verification"] = verified.verification
        if verified.key_fingerprint is not None:
            detail["key_fingerprint"] = verified.key_fingerprint
    elif entry is not None:
        detail["approver"] = entry.name  # the name claimed: a listed one, not verified
    elif attempt.approver:
        detail["approver"] = text_fingerprint(attempt.approver)  # typed: maybe anything
    # Who sent it, as far as this process knows: the CLI's user, or the flow for the form.
    actor = get_settings().actor if attempt.source in ("cli", "pre-approved") else None
    return ctx.event("approval.refused", EventStatus.FAILED, request_id, detail=detail, actor=actor)


def _to_approved(ctx: RequestContext, request_id: str, actor: str, note: str | None) -> None:
    status = ctx.record(request_id).status
    if status in (RequestStatus.PLANNED, RequestStatus.AWAITING_APPROVAL):
        ctx.register.transition(
            request_id, RequestStatus.APPROVED, actor=actor, note=note, expected=status
        )
    ctx.progress.mark_approved(request_id)
    crash_point("approved")


def _close_rejected(ctx: RequestContext, request_id: str, actor: str, note: str | None) -> None:
    status = ctx.record(request_id).status
    if not status.terminal:
        ctx.progress.forget(request_id)
        ctx.register.close(
            request_id, outcome=RequestStatus.REJECTED, actor=actor, note=note, expected=status
        )
        ctx.progress.vacuum()


def in_force(ctx: RequestContext, request_id: str, note: str | None = None) -> Verdict:
    """Carry out the decision that stands (idempotent); "refused" when none does."""
    approval = ctx.progress.runs.run(request_id).approval
    record = ctx.record(request_id)
    if approval is None:
        return "finished" if record.status.terminal else "refused"
    if approval.decision == "rejected":
        _close_rejected(ctx, request_id, approval.reviewer, note)
        return "rejected"
    if record.status.terminal:
        return "finished"  # another run carried it out; nothing is done twice
    _to_approved(ctx, request_id, approval.reviewer, note)
    return "approved"


def decided(ctx: RequestContext, request_id: str) -> Literal["approved", "rejected"] | None:
    """The decision already taken (by a reviewer, at submission or by policy); else None."""
    record = ctx.record(request_id)
    approval = ctx.progress.runs.run(request_id).approval
    policy = ctx.config.policy.requests.approval
    if record.status is RequestStatus.REJECTED or (
        approval is not None and approval.decision == "rejected"
    ):
        return "rejected"
    if approval is not None:
        if approval.digest is None:  # a pre-approval: bind it to the plans made since
            _bind(ctx, request_id, approval.reviewer, approval.source)
        _to_approved(ctx, request_id, approval.reviewer, None)
    elif status_past(record.status, RequestStatus.AWAITING_APPROVAL):
        pass  # a rerun after the decision
    elif record.kind.value not in policy.required_for:
        _to_approved(ctx, request_id, FLOW_ACTOR, "approval not required by policy")
    elif policy.auto_approve:
        try:
            take_decision(ctx, request_id, Attempt("approved", AUTO_APPROVER, AUTO_APPROVER))
        except DecisionRefused as refused:
            if not refused.taken:
                raise
        return _as_decision(in_force(ctx, request_id))
    else:
        return None
    return "approved"


def _as_decision(verdict: Verdict) -> Literal["approved", "rejected"]:
    if verdict == "approved":
        return "approved"
    return "rejected"


def _bind(ctx: RequestContext, request_id: str, approver: str, source: str) -> None:
    digest = plans_digest(ctx, request_id)
    if ctx.progress.runs.bind_approval(request_id, digest):
        ctx.audit(
            ctx.event(
                "approval.bound",
                EventStatus.APPROVED,
                request_id,
                detail={"source": source, "plans_digest": digest},
                actor=approver,
            )
        )


def form_attempt(decision: str, reviewer: str, note: str, signature: str) -> Attempt:
    """The form's answer as an attempt (an unreadable signature counts as a forged one)."""
    verdict: Decision = "approved" if decision == "approve" else "rejected"
    signed = parse_token(signature) if signature.strip() else None
    return Attempt(verdict, "ui", reviewer, signed, note)


def review(
    ctx: RequestContext, request_id: str, *, decision: str, reviewer: str, note: str, signature: str
) -> tuple[Verdict, str | None]:
    """Apply a reviewer's answer from the pause form: the decision that stands, and the
    problem when the answer was refused (recorded in the ledger already).

    "approved" or "rejected" (this answer's decision, or one taken first elsewhere, such
    as from the CLI, which then resumed the run with it), "finished" when another run
    already carried the request out, "refused" when the answer failed its checks and no
    decision stands (the flow asks again).
    """
    note_kept: str | None = None
    problem: str | None = None
    try:
        attempt = form_attempt(decision, reviewer, note, signature)
    except SigningKeyError as e:
        attempt = Attempt("approved" if decision == "approve" else "rejected", "ui", reviewer)
        _record_unreadable(ctx, request_id, attempt, e.message)
        problem = e.message
    else:
        if not _already_taken(ctx, request_id, attempt):
            try:
                take_decision(ctx, request_id, attempt)
                note_kept = note or None
            except DecisionRefused as refused:
                problem = refused.problem  # recorded; the decision that stands applies
    return in_force(ctx, request_id, note_kept), problem


def _already_taken(ctx: RequestContext, request_id: str, attempt: Attempt) -> bool:
    """Whether ``attempt`` is the decision already recorded (the CLI took it, then resumed
    this run with it): then it is carried out, not refused as a second decision."""
    if attempt.signed is None:
        return False
    book = ApprovalBook(ctx.ledger, ctx.progress)
    stored = book.get(request_id, attempt.signed.scope)
    return stored is not None and stored.signature == attempt.signed.signature


def _record_unreadable(
    ctx: RequestContext, request_id: str, attempt: Attempt, problem: str
) -> None:
    refused = DecisionRefused(problem)
    ApprovalBook(ctx.ledger, ctx.progress).record(
        _refused_event(ctx, request_id, attempt, None, refused)
    )


def approval_timed_out(
    ctx: RequestContext, request_id: str, waited_seconds: int, *, noticed_by: str | None = None
) -> Verdict:
    """Record that nobody decided within ``waited_seconds``: "approval.timed_out", then a
    rejection (source "timeout"), unless a decision stands; the decision in force.

    ``noticed_by`` names who found the timeout when it was not the waiting run itself
    (``tasks.reconcile``, for a run Prefect failed at its pause timeout). A finished
    request records nothing (a second noticer after the first).
    """
    if ctx.record(request_id).status.terminal:
        return in_force(ctx, request_id)
    detail: dict[str, Any] = {"waited_seconds": waited_seconds}
    if noticed_by is not None:
        detail["noticed_by"] = noticed_by
    ctx.audit(ctx.event("approval.timed_out", EventStatus.SKIPPED, request_id, detail=detail))
    try:
        take_decision(ctx, request_id, Attempt("rejected", "timeout", FLOW_ACTOR))
    except DecisionRefused as refused:
        if not refused.taken:
            raise
    return in_force(ctx, request_id)


def pre_approve(ctx: RequestContext, request_id: str, signer: Signer, note: str = "") -> None:
    """Approve a request at submission, before its plans exist (signed as a pre-approval)."""
    signed = signer.sign(request_id, PRE_APPROVAL, "approved")
    take_decision(ctx, request_id, Attempt("approved", "pre-approved", signer.name, signed, note))
