"""The incident clock: notifications near or past their deadline, and the open incidents.

Prefect-free (the ``incident-deadlines`` flow emits the Prefect events, the CLI may list
the same). Each notification still required with a deadline (authority: 72 h from
awareness; subjects; clients by contract) gives at most one alert per hourly run:

``lifecycle.incident.deadline-near``
    due within the policy's ``incidents.warn_hours`` and not passed: alerted once per
    notification and deadline (a later assessment that moves the deadline alerts again).
``lifecycle.incident.overdue``
    the deadline has passed and the notification is still not recorded as sent or exempt:
    alerted once, then again every ``OVERDUE_REPEAT`` until it is.

An hourly run must not notify operators every hour: what was alerted is recorded in the
ledger (``incident.deadline-alert``: audience, which alert, the deadline), which also
documents that operators were warned (GDPR Art. 33(5)); the next run reads it back.
Ids, audiences, risk levels and times only: no summary, no personal data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from audit.events import EventStatus
from audit.ledger import Ledger
from engine.events import ledger_event
from incidents.rules import REQUIRED
from state.incidents import BREACH, TRIAGE, Incident, IncidentRegister, Notification

EVENT_DEADLINE_NEAR = "lifecycle.incident.deadline-near"
EVENT_OVERDUE = "lifecycle.incident.overdue"
RESOURCE_PREFIX = "lifecycle.incident."
ALERT_KIND = "incident.deadline-alert"
NEAR, OVERDUE = "near", "overdue"
OVERDUE_REPEAT = timedelta(hours=24)
"""How often an overdue notification is alerted again while it stays overdue."""
_EARLY = timedelta(minutes=30)
"""Slack for the repeat: an hourly run starting a little earlier than yesterday's repeats."""


def incident_resource(incident_id: str, audience: str, risk: str | None) -> dict[str, str]:
    """The Prefect event resource of one incident notification."""
    return {
        "prefect.resource.id": f"{RESOURCE_PREFIX}{incident_id}",
        "prefect.resource.name": incident_id,
        "lifecycle.incident.audience": audience,
        "lifecycle.incident.risk": risk or "unassessed",
    }


def _when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def hours_left(due_at: datetime, now: datetime) -> int:
    """Whole hours to ``due_at`` (negative once passed: -3 is three hours late or more)."""
    return math.floor((due_at - now).total_seconds() / 3600)


@dataclass(frozen=True)
class DeadlineAlert:
    """One notification near or past its deadline: one Prefect event."""

    event: str
    incident_id: str
    audience: str
    risk: str | None
    due_at: datetime
    hours_left: int

    @property
    def which(self) -> str:
        return OVERDUE if self.event == EVENT_OVERDUE else NEAR

    def resource(self) -> dict[str, str]:
        return incident_resource(self.incident_id, self.audience, self.risk)

    def payload(self, warn_hours: int) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "audience": self.audience,
            "deadline": _iso(self.due_at),
            "hours_left": self.hours_left,
            "warn_hours": warn_hours,
        }


def deadline_alerts(
    due: Iterable[tuple[Incident, Notification]], *, warn_hours: int, now: datetime
) -> list[DeadlineAlert]:
    """The required notifications overdue or due within ``warn_hours`` (pure)."""
    alerts = []
    for incident, n in due:
        if n.due_at is None or n.status != REQUIRED:
            continue
        if n.overdue(now):
            event = EVENT_OVERDUE
        elif n.due_at - now <= timedelta(hours=warn_hours):
            event = EVENT_DEADLINE_NEAR
        else:
            continue
        left = hours_left(n.due_at, now)
        alerts.append(DeadlineAlert(event, incident.id, n.audience, incident.risk, n.due_at, left))
    return alerts


def not_yet_alerted(
    ledger: Ledger, alerts: Sequence[DeadlineAlert], now: datetime
) -> list[DeadlineAlert]:
    """``alerts`` less those already given: a near deadline once, an overdue one once per
    ``OVERDUE_REPEAT`` (by the ``incident.deadline-alert`` events in the ledger)."""
    last: dict[tuple[str, str, str, str], datetime] = {}
    for incident_id in dict.fromkeys(a.incident_id for a in alerts):
        for e in ledger.events(request_id=incident_id, kinds=[ALERT_KIND]):
            d = e.detail
            key = (incident_id, str(d.get("alert")), str(d.get("audience")), str(d.get("due_at")))
            last[key] = e.occurred_at
    fresh = []
    for a in alerts:
        given = last.get((a.incident_id, a.which, a.audience, _iso(a.due_at)))
        if given is None or (a.which == OVERDUE and now - given >= OVERDUE_REPEAT - _EARLY):
            fresh.append(a)
    return fresh


def record_alerts(ledger: Ledger, alerts: Sequence[DeadlineAlert], *, actor: str) -> None:
    """One ``incident.deadline-alert`` ledger event per alert given, in one transaction."""
    ledger.append_many(
        [
            ledger_event(
                ALERT_KIND,
                EventStatus.SUCCEEDED,  # the alert was given (the detail says which)
                a.incident_id,
                actor=actor,
                detail={
                    "alert": a.which,
                    "audience": a.audience,
                    "due_at": _iso(a.due_at),
                    "hours_left": a.hours_left,
                },
            )
            for a in alerts
        ]
    )


# -- the register as operators see it ------------------------------------------------------


@dataclass(frozen=True)
class IncidentRow:
    """One open incident: state, risk, its next deadline and how many are overdue."""

    incident_id: str
    state: str
    risk: str | None
    reported_at: datetime
    aware_at: datetime | None
    next_audience: str | None
    next_due: datetime | None
    required: int
    overdue: int
    near: int  # required, not passed, due within warn_hours

    def cells(self, now: datetime) -> dict[str, Any]:
        """The table artifact's row."""
        return {
            "incident": self.incident_id,
            "state": self.state,
            "risk": self.risk or ("not assessed" if self.state == BREACH else "-"),
            "reported": _when(self.reported_at),
            "aware since": _when(self.aware_at),
            "next deadline": _when(self.next_due),
            "for": self.next_audience or "",
            "hours left": "" if self.next_due is None else hours_left(self.next_due, now),
            "notifications due": self.required,
            "overdue": self.overdue,
            "near": self.near,
        }


def register_rows(
    register: IncidentRegister, now: datetime, *, warn_hours: int
) -> list[IncidentRow]:
    """Every open incident (triage or breach), soonest deadline first, then newest."""
    window = timedelta(hours=warn_hours)
    pending: dict[str, list[Notification]] = {}
    for incident, n in register.due():
        pending.setdefault(incident.id, []).append(n)
    rows = []
    for incident in register.list(states=[TRIAGE, BREACH]):
        due = sorted(pending.get(incident.id, []), key=lambda n: n.due_at or now)
        first = due[0] if due else None
        rows.append(
            IncidentRow(
                incident_id=incident.id,
                state=incident.state,
                risk=incident.risk,
                reported_at=incident.reported_at,
                aware_at=incident.aware_at,
                next_audience=first.audience if first else None,
                next_due=first.due_at if first else None,
                required=len(due),
                overdue=sum(n.overdue(now) for n in due),
                near=sum(
                    not n.overdue(now) and n.due_at is not None and n.due_at - now <= window
                    for n in due
                ),
            )
        )
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: (r.next_due or far, -r.reported_at.timestamp()))
