"""Cancelling a data-subject request: the register, our progress tables, Prefect's flow runs.

Shared by ``lifecycle request cancel`` and the ``cancel-request`` flow (the UI's way). Any
open or failed request can be cancelled; a closed one (completed, rejected, closed,
cancelled) is refused, naming its status. Cancelling is closing: the identity is
destroyed as ``RequestRegister.close`` does (ciphertext nulled, register storage
vacuumed), findings, plans and derived identities are cleared from the progress tables,
and the ledger gets "request.cancelled" with the reason's length and digest. The reason
is operator free text kept in the register's history: one holding an e-mail address or
phone number is refused before anything changes.

Then the request's flow runs that have not finished (paused for approval, scheduled,
running) are cancelled through the Prefect API: the runs the ledger names for the request,
and subject-request runs whose ``request_id`` parameter is the request. A run started by
a worker goes to Cancelling (the worker stops its process); a run without a deployment
(started in a ``lifecycle request submit`` process) goes to Cancelled. A run that is not
cancelled still can do nothing more: every step reads the register, which refuses a
closed request. This module imports Prefect only to cancel runs: the CLI runs no flow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from audit.ledger import Ledger
from core.errors import TerminalError
from core.free_text import check_free_text
from state.progress import RequestProgress
from state.register import RequestRecord, RequestRegister
from state.register_model import check_free_text as check_note
from state.register_model import check_request_id

SUBJECT_REQUEST_FLOW = "subject-request"
_OPEN_STATES = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED")
_MESSAGE = "data-subject request cancelled"  # never the reason: it stays in our register


@dataclass(frozen=True)
class RunCancellation:
    """One Prefect flow run of the request: its state before, and what became of it."""

    flow_run_id: str
    state: str
    cancelled: bool
    problem: str | None = None


def check_reason(field: str, reason: str) -> str:
    """The reason if the register may keep it: non-empty, bounded, no personal data.

    ``field`` names it for the person who typed it (``--reason``, ``reason``).
    """
    check_free_text(field, reason)
    return check_note(reason, field)


def cancel_request(
    register: RequestRegister,
    progress: RequestProgress,
    request_id: str,
    *,
    reason: str,
    actor: str,
    field: str = "reason",
) -> RequestRecord:
    """Cancel the request in our own tables (see the module); refused for closed requests."""
    check_request_id(request_id)
    check_reason(field, reason)
    status = register.get(request_id).status
    if status.terminal:
        raise TerminalError(
            f"request {request_id} is already {status}; only an open or failed request "
            "can be cancelled",
            request_id=request_id,
        )
    progress.forget(request_id)
    record = register.cancel(request_id, reason=reason, actor=actor)
    progress.vacuum()
    return record


def ledger_flow_runs(ledger: Ledger, request_id: str) -> list[str]:
    """The flow runs the ledger saw working on the request, newest first."""
    seen: list[str] = []
    for event in ledger.events(request_id=request_id, newest_first=True):
        if event.flow_run_id and event.flow_run_id not in seen:
            seen.append(event.flow_run_id)
    return seen


def cancel_flow_runs(
    request_id: str, known: Iterable[str], *, skip: str | None = None
) -> list[RunCancellation]:
    """Cancel the request's unfinished flow runs through the Prefect API (see the module).

    ``known``: run ids the ledger names; ``skip``: the calling run's own id. Raises
    TerminalError when the Prefect API cannot be reached.
    """
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            runs = _candidates(client, request_id, known, skip)
            return [_cancel(client, run) for run in runs]
    except TerminalError:
        raise
    except Exception as e:
        raise TerminalError(
            f"the Prefect API could not be reached to cancel the flow runs of request "
            f"{request_id} ({type(e).__name__})",
            request_id=request_id,
        ) from None


def _candidates(client: Any, request_id: str, known: Iterable[str], skip: str | None) -> list[Any]:
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    runs: dict[str, Any] = {}
    open_filter = FlowRunFilter(
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType(s) for s in _OPEN_STATES])
        )
    )
    for run in client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[SUBJECT_REQUEST_FLOW])),
        flow_run_filter=open_filter,
    ):
        if (run.parameters or {}).get("request_id") == request_id:
            runs[str(run.id)] = run
    for run_id in known:
        if run_id not in runs and run_id != skip:
            try:
                runs[run_id] = client.read_flow_run(UUID(run_id))
            except Exception:  # deleted from Prefect meanwhile: nothing left to cancel
                continue
    runs.pop(skip or "", None)
    return [r for r in runs.values() if r.state is not None and r.state.type.value in _OPEN_STATES]


def _cancel(client: Any, run: Any) -> RunCancellation:
    from prefect.client.schemas.objects import State
    from prefect.states import Cancelled, Cancelling

    before = run.state.type.value
    # A worker tears down what it started once it sees Cancelling; a run without a
    # deployment has no worker watching it, so it is ended directly.
    state: State[Any] = (
        Cancelling(message=_MESSAGE) if run.deployment_id else Cancelled(message=_MESSAGE)
    )
    result = client.set_flow_run_state(run.id, state)
    # The server may answer with another state than proposed (Cancelled for a scheduled
    # run with no process yet): what counts is where the run is now.
    now = None if result.state is None else result.state.type.value
    if now in ("CANCELLING", "CANCELLED"):
        return RunCancellation(str(run.id), before, cancelled=True)
    reason = getattr(result.details, "reason", None) or f"the server answered {now or 'nothing'}"
    return RunCancellation(str(run.id), before, cancelled=False, problem=str(reason))
