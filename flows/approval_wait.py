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
from uuid import UUID

from prefect.events import emit_event
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.runtime import flow_run

from core.errors import TerminalError
from engine.approval import APPROVAL_TIMEOUT_SECONDS, plans_digest
from engine.request_lease import released_while_waiting
from engine.request_support import request_context
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


def suspendable() -> bool:
    """Whether this run can release its process: it belongs to a deployment."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    return run is not None and run.deployment_id is not None


def wait_for_decision(
    request_id: str, kind: str, summary: str, key: str
) -> ApprovalInput | Literal["timed out"]:
    """The reviewer's answer to the question ``key`` (suspending or pausing until it comes)."""
    form = ApprovalInput.with_initial_data(description=summary)
    if suspendable():
        if not _asked_before(key):
            _announce(request_id, kind)
        # Raises Pause (the process ends) the first time; returns the answer on the rerun.
        with released_while_waiting(request_id):
            return suspend_flow_run(wait_for_input=form, timeout=APPROVAL_TIMEOUT_SECONDS, key=key)
    _announce(request_id, kind)
    try:
        with released_while_waiting(request_id):  # a CLI approval may carry the request on
            return pause_flow_run(
                wait_for_input=form,
                timeout=APPROVAL_TIMEOUT_SECONDS,
                poll_interval=APPROVAL_POLL_SECONDS,
                key=key,
            )
    except FlowPauseTimeout:
        return "timed out"


def _asked_before(key: str) -> bool:
    """Whether this run already waited on ``key`` (so this is the rerun after the answer)."""
    from prefect.client.orchestration import get_client

    run_id = flow_run.get_id()
    if run_id is None:
        return False
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
    return key in (run.empirical_policy.pause_keys or set())


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
    from prefect.client.orchestration import get_client
    from prefect.input.run_input import keyset_from_base_key

    run_id = flow_run.get_id()
    if run_id is None:
        return
    state = "suspended" if suspendable() else "paused"  # Prefect names inputs by state
    response = keyset_from_base_key(f"{state}-{key}")["response"]
    try:
        with get_client(sync_client=True) as client:
            client.delete_flow_run_input(UUID(run_id), response)
    except Exception as e:
        raise TerminalError(
            f"the approval answer could not be deleted from flow run {run_id} "
            f"({type(e).__name__}); the decision is recorded: delete that run input, or "
            f"cancel the run and run request {request_id} again",
            request_id=request_id,
        ) from None
