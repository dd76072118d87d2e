"""The hourly incident-deadlines flow: the notification clock of every open breach.

Emits ``lifecycle.incident.deadline-near`` (a required notification due within the
policy's ``incidents.warn_hours``) and ``lifecycle.incident.overdue`` (past its deadline,
still neither sent nor exempt) for the automations in
``automations/notify-operators.yaml``: once per notification and deadline when near, and
once a day while overdue (``engine.incident_deadlines``; the ledger records each alert).
Then publishes the open incidents as the ``incident-register`` table artifact: state,
risk, next deadline and for whom, how many notifications are due, near and overdue.

Incident ids, audiences, risk levels and times only: no summary, no personal data.
"""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel, Field

from tasks.incident_tasks import emit_deadline_events, publish_incident_register

__all__ = ["DeadlinesOutcome", "incident_deadlines"]


class DeadlinesOutcome(BaseModel):
    """What the run emitted and published (incident ids and counts)."""

    events: dict[str, list[str]] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)


@flow(name="incident-deadlines", persist_result=False, log_prints=False)
def incident_deadlines() -> DeadlinesOutcome:
    """Alert operators of incident notifications near or past their deadline, then
    publish the open incidents."""
    # Publishing must not hide a failed emission, nor the reverse: both run, then both
    # results are read (the first error fails the run, so the failure automation notifies).
    emitting = emit_deadline_events(return_state=True)
    publishing = publish_incident_register(return_state=True)
    return DeadlinesOutcome(events=emitting.result(), counts=publishing.result())
