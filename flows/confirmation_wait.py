"""Waiting for an operator's confirmation of manual work, as approvals wait for a reviewer.

A store in manual mode (a processor an operator contacts by hand) raises
``AwaitingConfirmation`` once its work is written down as intents. The flow asks the
operator with ``ConfirmationInput``: a run of the ``subject-request`` deployment
*suspends* (its process ends; the worker runs the flow again from the top after Resume,
and ``suspend_flow_run`` with the same key then returns the answer); a run without a
deployment *pauses* in its process (``flows.approval_wait`` explains both). The key names
the question from our own tables (the first open intent's row, and how many answers
from the form were refused), so a rerun asks the same question and a refused answer asks
a new one. The answer is recorded in our tables first (``record_confirmation``) and only
then deleted from Prefect's run input (its note is free text).
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from prefect.events import emit_event
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.runtime import flow_run

from core.errors import TerminalError
from engine.confirmation import CONFIRMATION_TIMEOUT_SECONDS
from engine.request_lease import released_while_waiting
from flows.approval_wait import suspendable
from tasks.confirmation_tasks import ConfirmationInput, ConfirmationQuestion

__all__ = ["CONFIRMATION_TIMEOUT_SECONDS", "forget_confirmation", "wait_for_confirmation"]

CONFIRMATION_POLL_SECONDS = 10


def wait_for_confirmation(
    request_id: str, question: ConfirmationQuestion
) -> ConfirmationInput | Literal["timed out"]:
    """The operator's answer to ``question`` (suspending or pausing until it comes)."""
    form = ConfirmationInput.with_initial_data(description=question.description)
    key = question.key
    if suspendable():
        if not _asked_before(key):
            _announce(request_id, question)
        # Raises Pause (the process ends) the first time; returns the answer on the rerun.
        with released_while_waiting(request_id):
            return suspend_flow_run(
                wait_for_input=form, timeout=CONFIRMATION_TIMEOUT_SECONDS, key=key
            )
    _announce(request_id, question)
    try:
        with released_while_waiting(request_id):  # a CLI answer may carry the request on
            return pause_flow_run(
                wait_for_input=form,
                timeout=CONFIRMATION_TIMEOUT_SECONDS,
                poll_interval=CONFIRMATION_POLL_SECONDS,
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


def _announce(request_id: str, question: ConfirmationQuestion) -> None:
    """A Prefect event automations can notify on: ids, store, action, counts; no subject."""
    emit_event(
        event="lifecycle.request.awaiting-confirmation",
        resource={
            "prefect.resource.id": f"lifecycle.request.{request_id}",
            "prefect.resource.name": request_id,
            "lifecycle.request.store": question.store,
            "lifecycle.request.action": question.action,
            "lifecycle.request.status": "awaiting_confirmation",
        },
        payload={"items": question.items, "timeout_seconds": CONFIRMATION_TIMEOUT_SECONDS},
    )


def forget_confirmation(request_id: str, key: str) -> None:
    """Delete the answer Prefect keeps as this run's input: once recorded, it lives on in
    our tables and the ledger only."""
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
            f"the confirmation answer could not be deleted from flow run {run_id} "
            f"({type(e).__name__}); the answer is recorded: delete that run input, or "
            f"cancel the run and run request {request_id} again",
            request_id=request_id,
        ) from None
