"""Waiting for an operator's confirmation of manual work, as approvals wait for a reviewer.

A store in manual mode (a processor an operator contacts by hand) raises
``AwaitingConfirmation`` once its work is written down as intents. The flow asks the
operator with ``ConfirmationInput``: a run of the ``subject-request`` deployment
*suspends* (its process ends; the worker runs the flow again from the top after Resume,
and ``suspend_flow_run`` with the same key then returns the answer); a run without a
deployment *pauses* in its process (``flows.input_wait``). The key names
the question from our own tables (the first open intent's row, and how many answers
from the form were refused), so a rerun asks the same question and a refused answer asks
a new one. The answer is recorded in our tables first (``record_confirmation``) and only
then deleted from Prefect's run input (its note is free text).
"""

from __future__ import annotations

from typing import Literal

from prefect.events import emit_event

from engine.confirmation import CONFIRMATION_TIMEOUT_SECONDS
from flows.input_wait import forget_input, wait_for_input
from tasks.confirmation_tasks import ConfirmationInput, ConfirmationQuestion

__all__ = ["CONFIRMATION_TIMEOUT_SECONDS", "forget_confirmation", "wait_for_confirmation"]

CONFIRMATION_POLL_SECONDS = 10


def wait_for_confirmation(
    request_id: str, question: ConfirmationQuestion
) -> ConfirmationInput | Literal["timed out"]:
    """The operator's answer to ``question`` (suspending or pausing until it comes)."""
    form = ConfirmationInput.with_initial_data(description=question.description)
    return wait_for_input(
        request_id,
        form,
        question.key,
        timeout=CONFIRMATION_TIMEOUT_SECONDS,
        poll_seconds=CONFIRMATION_POLL_SECONDS,
        announce=lambda: _announce(request_id, question),
    )


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
    forget_input(request_id, key, "confirmation answer")
