"""Tasks of the incident flows: each wraps one side effect, retried only when transient.

Assessment (``flows.incident_assessment``): check the incident, read one store's
encryption at rest, count one scope part, count distinct subjects across parts, record
the assessment. Report (``flows.incident_report``): open an incident from a concern.
Deadlines (``flows.incident_deadlines``): emit the deadline events, publish the register.
The work itself is ``engine.incident_assessment`` and ``engine.incident_deadlines``
(Prefect-free); these add the task runs and keep exception chains out of Prefect's logs
(``clean_errors``). Nothing returned or logged holds a key, a value or the summary.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event

from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from config.schema.model import LifecycleConfig
from engine import incident_assessment as engine
from engine.events import run_ids
from engine.incident_assessment import AssessmentOutcome, Connectors
from engine.incident_deadlines import (
    deadline_alerts,
    not_yet_alerted,
    record_alerts,
    register_rows,
)
from engine.request_support import clean_errors, current_config
from incidents.assessment import AtRestFact, PartAssessment
from incidents.scope import ScopePart
from state.incidents import Incident, IncidentRegister
from tasks.lifecycle_task import lifecycle_task
from transfers.at_rest import AtRest

ASSESS_ACTOR = "flow:incident-assessment"
REPORT_ACTOR = "flow:incident-report"
DEADLINES_ACTOR = "flow:incident-deadlines"
REGISTER_KEY = "incident-register"
REGISTER_SUMMARY_KEY = "incident-register-summary"


def incident_register(actor: str) -> IncidentRegister:
    """The incident register of the configured audit database, writing as ``actor``."""
    return IncidentRegister(Ledger.open(keys=keyring_from_settings(), actor=actor), run_ids)


def incident_config() -> LifecycleConfig:
    """The configuration the incident flows run against (reused while unchanged)."""
    return current_config()


# -- assessment ---------------------------------------------------------------------------


@lifecycle_task("check-incident")
def check_incident(config: LifecycleConfig, incident_id: str) -> Incident:
    """The incident, if it is a declared breach with a scope the inventory accepts."""
    with clean_errors(f"reading incident {incident_id}"):
        return engine.assessable(config, incident_register(ASSESS_ACTOR), incident_id)


@lifecycle_task("read-at-rest")
def read_at_rest(config: LifecycleConfig, store: str) -> dict[str, AtRest]:
    """One store's encryption at rest, per resource (its type's posture hook)."""
    with clean_errors(f"reading the encryption at rest of store '{store}'"):
        return engine.store_at_rest(config, store)


@lifecycle_task("count-incident-part")
def count_part(connectors: Connectors, part: ScopePart, at_rest: AtRestFact) -> PartAssessment:
    """Records, distinct subjects, categories and region of one scope part."""
    with clean_errors(f"counting {part.label}"):
        return engine.count_part(connectors, part, at_rest)


@lifecycle_task("count-distinct-subjects")
def count_subjects(
    incident: Incident, parts: list[PartAssessment], connectors: Connectors
) -> dict[str, int]:
    """Distinct subjects per identity over every part (keys read only for several parts)."""
    with clean_errors("counting the distinct subjects"):
        return engine.subjects_by_identity(incident, parts, connectors)


@lifecycle_task("record-incident-assessment")
def record_assessment(
    config: LifecycleConfig,
    incident: Incident,
    parts: list[PartAssessment],
    subjects: dict[str, int],
) -> AssessmentOutcome:
    """Judge the risk, work out the notifications due and record both with the ledger."""
    with clean_errors(f"recording the assessment of incident {incident.id}"):
        register = incident_register(ASSESS_ACTOR)
        return engine.record(config, register, incident, parts, subjects, actor=ASSESS_ACTOR)


@lifecycle_task("record-assessment-failure")
def record_assessment_failure(incident_id: str, error: str) -> None:
    """Record in the ledger that the assessment failed, and why (``engine.failure_text``)."""
    with clean_errors(f"recording the failed assessment of incident {incident_id}"):
        ledger = Ledger.open(keys=keyring_from_settings(), actor=ASSESS_ACTOR)
        engine.record_failure(ledger, incident_id, error, actor=ASSESS_ACTOR)


# -- report -------------------------------------------------------------------------------


@lifecycle_task("report-incident")
def report_incident(
    summary: str, reported_by: str, detected_at: datetime | None, incident_id: str
) -> str:
    """Open incident ``incident_id`` in triage (a rerun of the same run finds it open)."""
    from core.errors import NotFoundError

    with clean_errors("reporting the incident"):
        register = incident_register(REPORT_ACTOR)
        try:
            return register.get(incident_id).id
        except NotFoundError:
            pass
        found = register.report(
            summary,
            reported_by=reported_by,
            actor=REPORT_ACTOR,
            detected_at=detected_at,
            incident_id=incident_id,
        )
        return found.id


# -- deadlines ----------------------------------------------------------------------------


@lifecycle_task("emit-incident-deadline-events")
def emit_deadline_events(now: datetime | None = None) -> dict[str, list[str]]:
    """Emit ``lifecycle.incident.deadline-near`` / ``.overdue`` for each required
    notification near or past its deadline not alerted yet (``engine.incident_deadlines``),
    and record them in the ledger; incident ids by event name."""
    with clean_errors("emitting incident deadline events"):
        now = now or datetime.now(UTC)
        warn_hours = incident_config().policy.incidents.warn_hours
        register = incident_register(DEADLINES_ACTOR)
        ledger = Ledger.open(keys=keyring_from_settings(), actor=DEADLINES_ACTOR)
        alerts = deadline_alerts(register.due(), warn_hours=warn_hours, now=now)
        fresh = not_yet_alerted(ledger, alerts, now)
        for alert in fresh:
            emit_event(
                event=alert.event,
                resource=alert.resource(),
                occurred=now,
                payload=alert.payload(warn_hours),
            )
        if fresh:
            record_alerts(ledger, fresh, actor=DEADLINES_ACTOR)
    emitted: dict[str, list[str]] = {}
    for alert in fresh:
        emitted.setdefault(alert.event, []).append(alert.incident_id)
    return emitted


@lifecycle_task("publish-incident-register")
def publish_incident_register(now: datetime | None = None) -> dict[str, int]:
    """Publish the open incidents as the ``incident-register`` table artifact (state, risk,
    next deadline, overdue count) with a one-line summary; its counts."""
    with clean_errors("publishing the incident register"):
        now = now or datetime.now(UTC)
        warn_hours = incident_config().policy.incidents.warn_hours
        rows = register_rows(incident_register(DEADLINES_ACTOR), now, warn_hours=warn_hours)
    overdue = sum(1 for r in rows if r.overdue)
    near = sum(1 for r in rows if r.near)
    triage = sum(1 for r in rows if r.state == "triage")
    summary = (
        f"**{len(rows)} open** incident{'s' if len(rows) != 1 else ''} ({triage} in triage): "
        f"**{overdue} with an overdue notification**, {near} due within {warn_hours} h; "
        f"as of {now:%Y-%m-%d %H:%M} UTC."
    )
    table: list[dict[str, Any]] = [r.cells(now) for r in rows]
    create_table_artifact(table=table, key=REGISTER_KEY, description=summary)
    create_markdown_artifact(
        markdown=f"# Incident register\n\n{summary}\n\nThe open incidents are in the "
        f"`{REGISTER_KEY}` artifact; `lifecycle incident list` shows the same.\n",
        key=REGISTER_SUMMARY_KEY,
        description="Open incidents and notification deadlines",
    )
    return {"open": len(rows), "overdue": overdue, "near": near, "triage": triage}
