"""Waiting for a person's answer to a run's question without holding a process.

A run of a deployment *suspends*: its process exits and the worker is free; the Prefect
server keeps the run (surviving ``make stop`` / ``make serve`` and worker restarts) until
someone resumes it with an answer, then the worker runs the flow again from the top, and
``suspend_flow_run`` with the same key returns the answer instead of suspending again. A
run without a deployment (the CLI against a server) cannot be rescheduled, so it *pauses*
in its process. Approvals (``flows.approval_wait``) and operators' confirmations of manual
work (``flows.confirmation_wait``) both wait this way; each names its question's key from
our own tables, announces it, and records the answer before ``forget_input`` deletes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar
from uuid import UUID

from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run

from core.errors import TerminalError
from engine.request_lease import released_while_waiting

FormT = TypeVar("FormT", bound=RunInput)


def suspendable() -> bool:
    """Whether this run can release its process: it belongs to a deployment."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    return run is not None and run.deployment_id is not None


def wait_for_input(
    request_id: str,
    form: type[FormT],
    key: str,
    *,
    timeout: int,
    poll_seconds: int,
    announce: Callable[[], None],
) -> FormT | Literal["timed out"]:
    """The answer to the question ``key`` (suspending or pausing until it comes; a paused
    run looks every ``poll_seconds``); ``announce`` runs when the question is first asked
    (not again on the rerun)."""
    if suspendable():
        if not _asked_before(key):
            announce()
        # Raises Pause (the process ends) the first time; returns the answer on the rerun.
        with released_while_waiting(request_id):
            return suspend_flow_run(wait_for_input=form, timeout=timeout, key=key)
    announce()
    try:
        with released_while_waiting(request_id):  # a CLI answer may carry the request on
            return pause_flow_run(
                wait_for_input=form, timeout=timeout, poll_interval=poll_seconds, key=key
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


def forget_input(request_id: str, key: str, what: str) -> None:
    """Delete the answer Prefect keeps as this run's input (it may hold a free-text note):
    once recorded, it lives on in our tables only. ``what`` names it in an error."""
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
            f"the {what} could not be deleted from flow run {run_id} ({type(e).__name__}); "
            f"it is recorded: delete that run input, or cancel the run and run request "
            f"{request_id} again",
            request_id=request_id,
        ) from None
