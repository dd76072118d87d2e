"""Bring the register in line with subject-request runs that ended without running our code.

A run waiting for an approval decision holds no process once it is suspended, so two
ways it can end run nothing of ours: an operator cancels it in the Prefect UI, or its
pause timeout passes and Prefect fails it ("The flow was suspended/paused and never
resumed."). ``reconcile_waiting`` finds them through the run each undecided request
(received, planned, awaiting approval) last waited in (``RequestRuns.waiting_run``) and
does what our code would have done:

- **Cancelled or Cancelling** in Prefect: the request is cancelled in our register as
  ``lifecycle request cancel`` does it (``tasks.cancellation.cancel_request``: identity
  destroyed, findings and plans cleared, "request.cancelled" in the ledger), with the
  reason "its flow run was cancelled in the Prefect UI".
- **Failed at its pause timeout** (the state before Failed is the pause, and its timeout
  had passed, or Prefect's message says it never resumed): the approval timeout is
  recorded as the waiting run records it (``approval_timed_out``: "approval.timed_out",
  then the request ends rejected unless a decision stood meanwhile).

Left alone: a request whose waiting run is still paused or suspended, running, failed for
another reason, or unknown to this Prefect server (a CLI run on a temporary one); a request
another run of it is carrying on (it holds the request's lease, or a subject-request run
with its id is scheduled, pending, running or paused): that run decides. Each change is
made under the request's lease and after re-reading the request, so a rerun, or two
reconciliations at once, change nothing twice. Prefect's records only point at what to
check; what is done is read from, and recorded in, our own tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from config.settings import get_settings
from core.errors import LifecycleError, TerminalError
from engine.approval import approval_timed_out, span
from engine.request_lease import lease_name
from engine.request_support import RequestContext, clean_errors, lease_owner, request_context
from state.leases import Lease
from state.register import RequestRecord, RequestStatus
from tasks.cancellation import SUBJECT_REQUEST_FLOW, cancel_request
from tasks.lifecycle_task import lifecycle_task
from tasks.register_artifact import run_logger

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun, State

__all__ = ["CANCEL_REASON", "RECONCILE_ACTOR", "reconcile_waiting", "reconcile_waiting_runs"]

RECONCILE_ACTOR = "flow:request-register"
CANCEL_REASON = "its flow run was cancelled in the Prefect UI"
UNDECIDED = (RequestStatus.RECEIVED, RequestStatus.PLANNED, RequestStatus.AWAITING_APPROVAL)
_OPEN_RUN_STATES = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED")
_NEVER_RESUMED = re.compile(r"was (paused|suspended) and never resumed", re.IGNORECASE)
_PAGE = 200

Ending = Literal["cancelled", "timed-out"]


@dataclass(frozen=True)
class Waiting:
    """An undecided request and the flow run it last waited for a decision in."""

    request_id: str
    flow_run_id: str


@dataclass(frozen=True)
class Ended:
    """How a waiting run ended without our code: cancelled, or its pause timed out."""

    how: Ending
    state: str
    waited_seconds: int = 0


def reconcile_waiting(ctx: RequestContext) -> list[str]:
    """Settle requests whose waiting run was cancelled or timed out in Prefect (see the
    module); one line per request changed. TerminalError when the Prefect API cannot be
    read, or (after the others were settled) when a request could not be."""
    changes: list[str] = []
    failed: list[str] = []
    for item, ended in _ended_runs(_waiting(ctx)):
        try:
            change = _settle(ctx, item, ended)
        except LifecycleError as e:
            run_logger().warning("request %s was not reconciled: %s", item.request_id, e.message)
            failed.append(item.request_id)
            continue
        if change is not None:
            run_logger().info("%s", change)
            changes.append(change)
    if failed:
        raise TerminalError(
            f"{len(failed)} request(s) could not be reconciled ({', '.join(failed)}); "
            f"settled meanwhile: {len(changes)}. Run request-register again."
        )
    return changes


def _ended_runs(waiting: list[Waiting]) -> list[tuple[Waiting, Ended]]:
    """The waiting runs that ended without our code, and how; none that another open run
    of the same request may still carry on (Prefect is only read here)."""
    from prefect.client.orchestration import get_client

    if not waiting:
        return []
    found: list[tuple[Waiting, Ended]] = []
    try:
        with get_client(sync_client=True) as client:
            runs = _read_runs(client, [w.flow_run_id for w in waiting])
            busy = _requests_with_open_runs(client)
            for item in waiting:
                run = runs.get(item.flow_run_id)
                ended = None if run is None else _ended(client, run)
                if ended is None:
                    continue
                others = busy.get(item.request_id, set()) - {item.flow_run_id}
                if others:
                    run_logger().warning(
                        "request %s: its waiting flow run %s is %s, but run %s of the "
                        "request is open; that run decides",
                        item.request_id,
                        item.flow_run_id,
                        ended.state,
                        ", ".join(sorted(others)),
                    )
                    continue
                found.append((item, ended))
    except Exception as e:
        raise TerminalError(
            f"the Prefect API could not be read to reconcile waiting runs ({type(e).__name__})"
        ) from None
    return found


@lifecycle_task("reconcile-waiting-runs")
def reconcile_waiting_runs() -> list[str]:
    """The task of ``reconcile_waiting`` (the request-register flow runs it first)."""
    with clean_errors("reconciling waiting runs"):
        return reconcile_waiting(request_context())


# -- what to look at -----------------------------------------------------------------------


def _waiting(ctx: RequestContext) -> list[Waiting]:
    found = []
    for status in UNDECIDED:
        for record in ctx.register.list(status=status):
            run_id = ctx.progress.runs.waiting_run(record.id)
            if run_id is not None:
                found.append(Waiting(record.id, run_id))
    return found


def _read_runs(client: Any, run_ids: Iterable[str]) -> dict[str, FlowRun]:
    """The flow runs among ``run_ids`` this Prefect server knows, by id."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    ids = sorted({UUID(r) for r in run_ids}, key=str)
    found: dict[str, FlowRun] = {}
    for start in range(0, len(ids), _PAGE):
        chunk = ids[start : start + _PAGE]
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
        )
        found.update({str(run.id): run for run in runs})
    return found


def _requests_with_open_runs(client: Any) -> dict[str, set[str]]:
    """Request id -> ids of its subject-request runs that are scheduled, pending, running
    or paused (by the run's ``request_id`` parameter)."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    open_filter = FlowRunFilter(
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType(s) for s in _OPEN_RUN_STATES])
        )
    )
    by_request: dict[str, set[str]] = {}
    offset = 0
    while True:
        page = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[SUBJECT_REQUEST_FLOW])),
            flow_run_filter=open_filter,
            limit=_PAGE,
            offset=offset,
        )
        for run in page:
            request_id = (run.parameters or {}).get("request_id")
            if isinstance(request_id, str):
                by_request.setdefault(request_id, set()).add(str(run.id))
        if len(page) < _PAGE:
            return by_request
        offset += _PAGE


def _ended(client: Any, run: FlowRun) -> Ended | None:
    """How ``run`` ended without our code, or None (still waiting, or anything else)."""
    state = run.state
    if state is None:
        return None
    kind = state.type.value
    if kind in ("CANCELLED", "CANCELLING"):
        return Ended("cancelled", kind)
    if kind != "FAILED":
        return None
    waited = _pause_timed_out(client.read_flow_run_states(run.id), state)
    return None if waited is None else Ended("timed-out", kind, waited)


def _pause_timed_out(history: list[State[Any]], failed: State[Any]) -> int | None:
    """Seconds the run waited (to the minute), when its failure is the pause timing out;
    else None.

    Prefect fails a paused or suspended run past its ``pause_timeout`` (its
    pause-expirations service, or a refused resume) straight from the pause: the state
    before Failed is the pause, and its timeout had passed when it failed.
    """
    ordered = sorted(history, key=lambda s: s.timestamp)
    failures = [i for i, s in enumerate(ordered) if s.type.value == "FAILED"]
    if not failures or failures[-1] == 0:
        return None
    last = failures[-1]
    pause, failure = ordered[last - 1], ordered[last]
    if pause.type.value != "PAUSED":
        return None
    timeout = pause.state_details.pause_timeout
    expired = timeout is not None and timeout <= failure.timestamp
    message = failure.message or failed.message or ""
    if not expired and not _NEVER_RESUMED.search(message):
        return None
    until = timeout if timeout is not None else failure.timestamp
    # The pause state's timestamp is when the server stored it, a moment after the run
    # computed its timeout: to the minute, the wait is the timeout the run asked for.
    seconds = (until - pause.timestamp).total_seconds()
    return max(0, round(seconds / 60) * 60 if seconds >= 60 else round(seconds))


# -- settling one request ------------------------------------------------------------------


def _settle(ctx: RequestContext, item: Waiting, ended: Ended) -> str | None:
    """Cancel or time out ``item``'s request under its lease; what changed, or None."""
    settings = get_settings()
    lease = Lease(
        ctx.ledger.engine,
        lease_name(item.request_id),
        ttl=timedelta(seconds=settings.request_lease_seconds),
        owner=lease_owner(),
        job=f"request {item.request_id}",
    )
    holder = lease.try_acquire()
    if holder is not None:
        run_logger().warning(
            "request %s: its waiting flow run %s is %s, but the request is %s; left to it",
            item.request_id,
            item.flow_run_id,
            ended.state,
            holder.describe(),
        )
        return None
    try:
        record = ctx.record(item.request_id)
        if record.status not in UNDECIDED:
            return None  # moved on since we looked
        if ctx.progress.runs.waiting_run(item.request_id) != item.flow_run_id:
            return None  # a newer run waits now
        if ended.how == "cancelled":
            return _cancel(ctx, record, item, ended)
        return _time_out(ctx, item, ended)
    finally:
        lease.release()


def _cancel(ctx: RequestContext, record: RequestRecord, item: Waiting, ended: Ended) -> str:
    cancel_request(
        ctx.register,
        ctx.progress,
        record.id,
        reason=CANCEL_REASON,
        actor=RECONCILE_ACTOR,
    )
    return (
        f"{record.id}: cancelled (was {record.status.value}): its flow run "
        f"{item.flow_run_id} is {ended.state.lower()} in Prefect"
    )


def _time_out(ctx: RequestContext, item: Waiting, ended: Ended) -> str:
    verdict = approval_timed_out(
        ctx, item.request_id, ended.waited_seconds, noticed_by=RECONCILE_ACTOR
    )
    waited = span(ended.waited_seconds)
    if verdict == "approved":
        approval = ctx.progress.runs.run(item.request_id).approval
        who = approval.reviewer if approval is not None else "a reviewer"
        run_logger().warning(
            "request %s: its run timed out waiting, but %s had approved it meanwhile; "
            "run it again: lifecycle request submit --resume %s",
            item.request_id,
            who,
            item.request_id,
        )
        return (
            f"{item.request_id}: approved (by {who} while flow run {item.flow_run_id} "
            f"waited; it failed at its {waited} pause timeout): run the request again"
        )
    return (
        f"{item.request_id}: {verdict} (approval timed out: flow run {item.flow_run_id} "
        f"waited {waited} for a decision and Prefect failed it)"
    )
