"""The request register as operators see it in the Prefect UI, and its deadline events.

``publish_register`` writes the open requests (every status but completed, rejected,
closed and cancelled) as a table artifact, key ``request-register``: request id, kind,
status, received, deadline, days left, overdue, extended (and to when), awaiting approval
since, and the last approval decision (approver name, decision, how it was made) from
``state.approvals``' records. A markdown artifact, key ``request-register-summary``,
carries the one-line count (open, overdue, due soon, awaiting approval). Counts, ids,
dates and approver names only: no identities (the register keeps them sealed and this
module never opens them), no pseudonyms, no requester names, no operator free text.

Prefect events (``prefect.events.emit_event``), for automations to notify operators:

``lifecycle.request.deadline-near``
    an open request's deadline is at most N days away (``DEADLINE_NEAR_DAYS``, the
    request-register flow's ``deadline_near_days``) and not passed.
``lifecycle.request.overdue``
    an open request's deadline has passed.
``lifecycle.request.awaiting-approval``
    emitted by the subject-request flow when its run suspends for a decision (not here);
    same resource and labels.

Every event's resource is ``prefect.resource.id: lifecycle.request.<request id>``, with
``prefect.resource.name`` (the request id), ``lifecycle.request.kind`` (access,
rectification, erasure) and ``lifecycle.request.status``. The payload holds ``request_id``,
``deadline`` (ISO 8601, UTC), ``days_left`` (negative once overdue), ``extended`` and
``within_days``. The daily request-register run emits them once per request and day.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect.events import emit_event
from pydantic import BaseModel
from sqlalchemy import func, select

from core.errors import LifecycleError
from engine.request_support import RequestContext, clean_errors, request_context
from state.register import RequestRecord, RequestStatus
from state.register_tables import database_errors, decisions, history
from tasks.lifecycle_task import lifecycle_task

__all__ = [
    "DEADLINE_NEAR_DAYS",
    "EVENT_DEADLINE_NEAR",
    "EVENT_OVERDUE",
    "REGISTER_KEY",
    "DeadlineAlert",
    "RegisterCounts",
    "RegisterReport",
    "RegisterRow",
    "deadline_alerts",
    "emit_deadline_events",
    "emit_request_deadline_events",
    "open_requests",
    "publish_register",
    "publish_request_register",
    "register_rows",
    "request_resource",
]

REGISTER_KEY = "request-register"
SUMMARY_KEY = "request-register-summary"
DEADLINE_NEAR_DAYS = 3
"""Default warning window: a deadline at most this many days away is "near"."""
EVENT_DEADLINE_NEAR = "lifecycle.request.deadline-near"
EVENT_OVERDUE = "lifecycle.request.overdue"
RESOURCE_PREFIX = "lifecycle.request."
OPEN_STATUSES = tuple(s for s in RequestStatus if not s.terminal)
_CHUNK = 500  # request ids per IN (...) list
log = logging.getLogger(__name__)


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run's logger (its log in the UI) inside a run, else this module's."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return log


def request_resource(request_id: str, kind: str, status: str | None = None) -> dict[str, str]:
    """The Prefect event resource of a request (shared by every ``lifecycle.request.*``)."""
    resource = {
        "prefect.resource.id": f"{RESOURCE_PREFIX}{request_id}",
        "prefect.resource.name": request_id,
        "lifecycle.request.kind": kind,
    }
    if status is not None:
        resource["lifecycle.request.status"] = status
    return resource


# -- reading the register ------------------------------------------------------------------


@dataclass(frozen=True)
class LastDecision:
    """The newest approval decision on a request (``approval_decisions``)."""

    approver: str
    decision: str
    source: str
    verification: str
    decided_at: datetime


@dataclass(frozen=True)
class RegisterRow:
    """One open request as the register artifact shows it (no identity, no free text)."""

    request_id: str
    kind: str
    status: str
    received_at: datetime
    due_at: datetime
    days_left: int
    overdue: bool
    extended: bool
    awaiting_since: datetime | None
    decision: LastDecision | None

    def cells(self) -> dict[str, Any]:
        """The table artifact's row."""
        decision = self.decision
        earlier = (
            decision is not None
            and self.awaiting_since is not None
            and decision.decided_at < self.awaiting_since
        )
        how = ""
        if decision is not None:
            how = f"{decision.decision} ({decision.source}, {decision.verification})"
            how += ", earlier plans" if earlier else ""
        return {
            "request": self.request_id,
            "kind": self.kind,
            "status": self.status,
            "received": _when(self.received_at),
            "deadline": _when(self.due_at),
            "days left": self.days_left,
            "overdue": "yes" if self.overdue else "no",
            "extended": f"yes, to {self.due_at:%Y-%m-%d}" if self.extended else "no",
            "awaiting approval since": _when(self.awaiting_since),
            "approver": "" if decision is None else decision.approver,
            "decision": how,
        }


@dataclass(frozen=True)
class RegisterReport:
    """What ``publish_register`` published: the rows and the counts of its summary line."""

    rows: list[RegisterRow]
    overdue: int
    due_soon: int
    awaiting_approval: int
    within_days: int
    summary: str

    @property
    def open(self) -> int:
        return len(self.rows)


def _when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def open_requests(ctx: RequestContext) -> list[RequestRecord]:
    """Every open request, soonest deadline first (one indexed query per open status)."""
    records = [r for status in OPEN_STATUSES for r in ctx.register.list(status=status)]
    return sorted(records, key=lambda r: (r.due_at, r.id))


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _awaiting_since(ctx: RequestContext, ids: Sequence[str]) -> dict[str, datetime]:
    """When each request last entered awaiting approval (its register history)."""
    since: dict[str, datetime] = {}
    with database_errors("register artifact"), ctx.ledger.engine.connect() as conn:
        for chunk in _chunks(ids):
            query = (
                select(history.c.request_id, func.max(history.c.at))
                .where(
                    history.c.request_id.in_(chunk),
                    history.c.to_status == RequestStatus.AWAITING_APPROVAL.value,
                )
                .group_by(history.c.request_id)
            )
            since.update({row[0]: row[1] for row in conn.execute(query)})
    return since


def _last_decisions(ctx: RequestContext, ids: Sequence[str]) -> dict[str, LastDecision]:
    """The newest approval decision of each request that has one."""
    found: dict[str, LastDecision] = {}
    c = decisions.c
    with database_errors("register artifact"), ctx.ledger.engine.connect() as conn:
        for chunk in _chunks(ids):
            query = (
                select(c.request_id, c.approver, c.decision, c.source, c.verification, c.decided_at)
                .where(c.request_id.in_(chunk))
                .order_by(c.request_id, c.decided_at)
            )
            for row in conn.execute(query):  # oldest first: the newest one stays
                found[row.request_id] = LastDecision(
                    approver=row.approver,
                    decision=row.decision,
                    source=row.source,
                    verification=row.verification,
                    decided_at=row.decided_at,
                )
    return found


def register_rows(ctx: RequestContext, now: datetime | None = None) -> list[RegisterRow]:
    """The open requests with deadlines, approval waits and last decisions, set-based."""
    now = now or datetime.now(UTC)
    records = open_requests(ctx)
    ids = [r.id for r in records]
    waiting = _awaiting_since(ctx, [r.id for r in records if _awaiting(r)])
    decided = _last_decisions(ctx, ids)
    return [
        RegisterRow(
            request_id=r.id,
            kind=r.kind.value,
            status=r.status.value,
            received_at=r.received_at,
            due_at=r.due_at,
            days_left=r.days_left(now),
            overdue=r.overdue(now),
            extended=r.extended,
            awaiting_since=waiting.get(r.id) if _awaiting(r) else None,
            decision=decided.get(r.id),
        )
        for r in records
    ]


def _awaiting(record: RequestRecord) -> bool:
    return record.status is RequestStatus.AWAITING_APPROVAL


def _due_soon(row: RegisterRow, now: datetime, within_days: int) -> bool:
    return not row.overdue and row.due_at - now <= timedelta(days=within_days)


# -- publishing ----------------------------------------------------------------------------


def publish_register(
    ctx: RequestContext, *, within_days: int = DEADLINE_NEAR_DAYS, now: datetime | None = None
) -> RegisterReport:
    """Publish the open requests as the ``request-register`` table artifact, with the
    summary line (open, overdue, due within ``within_days``, awaiting approval) as its
    description and as the ``request-register-summary`` markdown artifact."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    now = now or datetime.now(UTC)
    rows = register_rows(ctx, now)
    overdue = sum(r.overdue for r in rows)
    soon = sum(_due_soon(r, now, within_days) for r in rows)
    awaiting = [r for r in rows if r.status == RequestStatus.AWAITING_APPROVAL.value]
    summary = (
        f"**{len(rows)} open** request{'s' if len(rows) != 1 else ''}: **{overdue} overdue**, "
        f"{soon} due within {within_days} days, **{len(awaiting)} awaiting approval**"
    )
    oldest = min((r.awaiting_since for r in awaiting if r.awaiting_since), default=None)
    if oldest is not None:
        summary += f" (longest since {_when(oldest)})"
    summary += f"; as of {_when(now)}."
    create_table_artifact(table=[r.cells() for r in rows], key=REGISTER_KEY, description=summary)
    create_markdown_artifact(
        markdown=f"# Request register\n\n{summary}\n\nThe open requests are in the "
        f"`{REGISTER_KEY}` artifact; `lifecycle request list` shows the same.\n",
        key=SUMMARY_KEY,
        description="Open requests, overdue, awaiting approval",
    )
    return RegisterReport(
        rows=rows,
        overdue=overdue,
        due_soon=soon,
        awaiting_approval=len(awaiting),
        within_days=within_days,
        summary=summary,
    )


class RegisterCounts(BaseModel):
    """The summary line's counts (what a flow returns; no ids)."""

    open: int
    overdue: int
    due_soon: int
    awaiting_approval: int


@lifecycle_task("publish-request-register")
def publish_request_register(
    best_effort: bool = True, within_days: int = DEADLINE_NEAR_DAYS
) -> RegisterCounts | None:
    """Publish the register artifact (``publish_register``); its counts.

    ``best_effort`` (the end of a subject-request run): a failure is logged and None
    returned, so the request's own outcome stands; the daily flow passes False to fail
    loudly.
    """
    try:
        with clean_errors("publishing the request register"):
            report = publish_register(request_context(), within_days=within_days)
    except LifecycleError as e:  # clean_errors turned anything else into one
        if not best_effort:
            raise
        run_logger().warning("the request register artifact was not published: %s", e.message)
        return None
    return RegisterCounts(
        open=report.open,
        overdue=report.overdue,
        due_soon=report.due_soon,
        awaiting_approval=report.awaiting_approval,
    )


# -- deadline events -----------------------------------------------------------------------


@dataclass(frozen=True)
class DeadlineAlert:
    """An open request whose deadline is near or passed: one Prefect event."""

    event: str
    request_id: str
    kind: str
    status: str
    due_at: datetime
    days_left: int
    extended: bool

    def payload(self, within_days: int) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "deadline": self.due_at.astimezone(UTC).isoformat(),
            "days_left": self.days_left,
            "extended": self.extended,
            "within_days": within_days,
        }


def deadline_alerts(
    rows: Iterable[RegisterRow], *, within_days: int, now: datetime
) -> list[DeadlineAlert]:
    """The requests overdue, and those due within ``within_days`` (pure)."""
    alerts = []
    for row in rows:
        if row.overdue:
            event = EVENT_OVERDUE
        elif _due_soon(row, now, within_days):
            event = EVENT_DEADLINE_NEAR
        else:
            continue
        alerts.append(
            DeadlineAlert(
                event=event,
                request_id=row.request_id,
                kind=row.kind,
                status=row.status,
                due_at=row.due_at,
                days_left=row.days_left,
                extended=row.extended,
            )
        )
    return alerts


def emit_deadline_events(
    ctx: RequestContext, *, within_days: int = DEADLINE_NEAR_DAYS, now: datetime | None = None
) -> list[DeadlineAlert]:
    """Emit ``lifecycle.request.deadline-near`` / ``.overdue`` for each open request due
    within ``within_days`` or past due (see the module); the alerts emitted."""
    now = now or datetime.now(UTC)
    alerts = deadline_alerts(register_rows(ctx, now), within_days=within_days, now=now)
    for alert in alerts:
        emit_event(
            event=alert.event,
            resource=request_resource(alert.request_id, alert.kind, alert.status),
            occurred=now,
            payload=alert.payload(within_days),
        )
    return alerts


@lifecycle_task("emit-deadline-events")
def emit_request_deadline_events(within_days: int = DEADLINE_NEAR_DAYS) -> dict[str, list[str]]:
    """Emit the deadline events (``emit_deadline_events``); request ids by event name."""
    with clean_errors("emitting deadline events"):
        alerts = emit_deadline_events(request_context(), within_days=within_days)
    emitted: dict[str, list[str]] = {}
    for alert in alerts:
        emitted.setdefault(alert.event, []).append(alert.request_id)
    return emitted
