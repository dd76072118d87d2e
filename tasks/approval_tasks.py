"""Approval of a request's plans: policy, signed decisions, four-eyes, rejection, timeout.

Policy (``policy.requests.approval``) says which kinds need a human decision. When one is
needed and not given yet, the flow records its run id (so a decision taken from the CLI
resumes this run) and pauses with ``ApprovalInput``: the form shows the plan summary
(counts per store and table, actions, deferrals, warnings; no personal data) and takes
the decision with the approver's signature (``lifecycle approver sign``).

Every decision, whoever takes it (the form, the CLI, a pre-approval at submission, the
policy's auto-approval, the pause timing out), goes through ``take_decision`` in
``engine.approval`` (Prefect-free): checked, then recorded once with its
``approval.decided`` event, or recorded as ``approval.refused`` with the problem; the flow
then carries on with the decision that stands, if one does, or asks again. These tasks
wrap it for the flow.

A decision from the form that is refused also tells the person who sent it: a WARNING on
the run's log and an ``approval-refused`` markdown artifact saying why (the ledger's
problem: approver names at most, never the subject) and what to do. The form itself
states how long the run waits (``APPROVAL_TIMEOUT_SECONDS``) and what happens then: the
request ends rejected, nothing changed (``record_approval_timeout``).
"""

from __future__ import annotations

from typing import Literal

from prefect.input import RunInput
from pydantic import BaseModel, Field

from audit.events import EventStatus
from core.errors import TerminalError
from engine.approval import (
    APPROVAL_TIMEOUT_SECONDS,
    Verdict,
    approval_summary,
    approval_timed_out,
    decided,
    review,
)
from engine.events import run_ids
from engine.request_support import FLOW_ACTOR, clean_errors, request_context
from state.register import RequestStatus
from tasks.approval_feedback import refusal_feedback
from tasks.lifecycle_task import lifecycle_task

__all__ = [
    "ApprovalCheck",
    "ApprovalInput",
    "check_approval",
    "record_approval_gave_up",
    "record_approval_timeout",
    "record_review",
]


class ApprovalInput(RunInput):
    """The reviewer's decision on a request's plans (shown as a form in the Prefect UI)."""

    decision: Literal["approve", "reject"] = Field(
        description="Approve to carry out the plans shown; reject to end the request untouched."
    )
    reviewer: str = Field(
        description="Your name as the policy lists it: an approver, not the requester."
    )
    signature: str = Field(
        default="",
        description="The line 'lifecycle approver sign REQUEST_ID --key YOUR_KEY' prints (add "
        "--reject to reject). Required unless the policy accepts unverified UI decisions.",
    )
    note: str = Field(
        default="",
        description="Why (kept in the register, hashed in the ledger; no personal data).",
    )


class ApprovalCheck(BaseModel):
    """Where approval stands: decided ("approved"/"rejected") or "required" with the summary."""

    state: Literal["approved", "rejected", "required"]
    summary: str = ""


# -- tasks ---------------------------------------------------------------------------------


@lifecycle_task("check-approval")
def check_approval(
    request_id: str, timeout_seconds: int = APPROVAL_TIMEOUT_SECONDS
) -> ApprovalCheck:
    """Apply policy or a standing decision; otherwise mark the request awaiting a reviewer.

    ``timeout_seconds``: how long the run will wait for the decision (the form says so).
    """
    with clean_errors("checking the approval"):
        ctx = request_context()
        standing = decided(ctx, request_id)
        if standing is not None:
            return ApprovalCheck(state=standing)
        if ctx.record(request_id).status == RequestStatus.PLANNED:
            ctx.register.transition(
                request_id,
                RequestStatus.AWAITING_APPROVAL,
                actor=FLOW_ACTOR,
                expected=RequestStatus.PLANNED,
            )
        flow_run_id = run_ids()["flow_run_id"]
        if flow_run_id is not None:
            ctx.progress.runs.set_waiting_run(request_id, flow_run_id)
        summary = approval_summary(ctx, request_id, timeout_seconds)
        return ApprovalCheck(state="required", summary=summary)


@lifecycle_task("record-review")
def record_review(
    request_id: str, decision: str, reviewer: str, note: str, signature: str = ""
) -> Verdict:
    """Apply a reviewer's answer from the pause form; returns the decision that stands.

    "approved" or "rejected" (this answer's decision, or one taken first elsewhere, such
    as from the CLI, which then resumed this run with it), "finished" when another run
    already carried the request out, "refused" when the answer failed its checks and no
    decision stands (the flow asks again). A refused answer is explained on the run's log
    and in the ``approval-refused`` artifact (``refusal_feedback``).
    """
    with clean_errors("recording the review"):
        ctx = request_context()
        verdict, problem = review(
            ctx, request_id, decision=decision, reviewer=reviewer, note=note, signature=signature
        )
        if problem is not None:
            refusal_feedback(ctx, request_id, problem, verdict)
        return verdict


@lifecycle_task("record-approval-timeout")
def record_approval_timeout(request_id: str, waited_seconds: int) -> Verdict:
    """Nobody decided in time: the request ends rejected, data untouched, unless a
    decision was taken meanwhile (then that one stands)."""
    with clean_errors("recording the approval timeout"):
        return approval_timed_out(request_context(), request_id, waited_seconds)


@lifecycle_task("record-approval-refused")
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
        f"request {request_id}: {attempts} approval decisions were refused; "
        "the request still awaits an approver",
        request_id=request_id,
    )
