"""Waiting for a reviewer's decision without holding a process: suspend, or pause.

A run of the ``subject-request`` deployment *suspends*: its process exits and the worker
is free; the Prefect server keeps the run (surviving ``make stop`` / ``make serve`` and
worker restarts) until a reviewer resumes it with a decision, then the worker runs the
flow again from the top. Every step before the approval finds its work recorded in our
tables and does nothing, and ``suspend_flow_run`` with the same key returns the decision
instead of suspending again. A run without a deployment (the CLI against a server) cannot
be rescheduled, so it *pauses* in its process, as before.

Pause keys are derived from what is decided on (the plans' digest) and how many answers
from the form were refused so far, both read from our own tables: a rerun asks with the
key it asked with before, and a new question (a grown plan, a refused answer) gets a new
key. The answer is recorded in our register first and only then deleted from Prefect's
run input, so a crash in between loses nothing.
"""

from __future__ import annotations

from typing import Literal

from prefect.events import emit_event

from engine.approval import APPROVAL_TIMEOUT_SECONDS, plans_digest
from engine.request_support import request_context
from flows.input_wait import forget_input, wait_for_input
from tasks.approval_tasks import ApprovalInput

__all__ = [
    "APPROVAL_TIMEOUT_SECONDS",
    "forget_answer",
    "pause_key",
    "ui_refusals",
    "wait_for_decision",
]

APPROVAL_POLL_SECONDS = 10


def ui_refusals(request_id: str) -> int:
    """Answers from the form refused so far (four-eyes, signature): each asks anew."""
    ledger = request_context().ledger
    refused = ledger.events(request_id=request_id, kinds=["approval.refused"])
    return sum(1 for e in refused if e.detail.get("source") == "ui")


def pause_key(request_id: str) -> str:
    """The key of the question this run asks now; the same on a rerun of the same question."""
    digest = plans_digest(request_context(), request_id)
    return f"approval-{digest[:12]}-{ui_refusals(request_id) + 1}"


def wait_for_decision(
    request_id: str, kind: str, summary: str, key: str
) -> ApprovalInput | Literal["timed out"]:
    """The reviewer's answer to the question ``key`` (suspending or pausing until it comes)."""
    form = ApprovalInput.with_initial_data(description=summary)
    return wait_for_input(
        request_id,
        form,
        key,
        timeout=APPROVAL_TIMEOUT_SECONDS,
        poll_seconds=APPROVAL_POLL_SECONDS,
        announce=lambda: _announce(request_id, kind),
    )


def _announce(request_id: str, kind: str) -> None:
    """A Prefect event automations can notify on: ids and kind only, never the subject."""
    emit_event(
        event="lifecycle.request.awaiting-approval",
        resource={
            "prefect.resource.id": f"lifecycle.request.{request_id}",
            "prefect.resource.name": request_id,
            "lifecycle.request.kind": kind,
            "lifecycle.request.status": "awaiting_approval",
        },
        payload={"timeout_seconds": APPROVAL_TIMEOUT_SECONDS},
    )


def forget_answer(request_id: str, key: str) -> None:
    """Delete the answer Prefect keeps as this run's input (its note is free text): once
    recorded, it lives on in our register only."""
    forget_input(request_id, key, "approval answer")
