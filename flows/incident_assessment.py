"""The incident-assessment flow: a declared breach's impact, assessed from the stores.

Takes the id of an incident declared a breach with a scope (``lifecycle incident
declare`` / ``scope``). Thin: tasks in ``tasks.incident_tasks`` read each store's
encryption at rest once, count every scope part concurrently (at most ``PART_WORKERS`` at
once, each task run tagged with its store for per-store limits), count distinct subjects
across parts, then judge the risk by the policy's rules and record the assessment and
the notifications it requires (authority 72 h from awareness, subjects, clients) with
the ledger event. Rerunning it assesses again: the newest assessment replaces the last,
and notifications already sent or exempted keep their record. A failed assessment records
nothing but ``incident.assessment-failed`` (the error, if it holds no personal data), so
the incident's timeline shows the attempt; the run fails for the failure automation.

The run is named after the incident id; a value that is no incident id (possibly pasted
personal data) is refused and removed from the run's parameters. The
``incident-assessment`` table artifact and its markdown summary hold counts, names of
stores, tables, categories and regions, and the notifications with their deadlines:
never a key or value.
"""

from __future__ import annotations

from typing import Any, cast

from prefect import flow, tags
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture, wait
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from audit.keystore import keyring_from_settings
from config.schema.model import LifecycleConfig
from core.errors import InvalidInput, TerminalError
from engine.incident_assessment import (
    AssessmentOutcome,
    StoreConnectors,
    failure_text,
    part_at_rest,
    scope_stores,
)
from flows.run_parameters import REMOVED, replace_parameters
from incidents.assessment import PartAssessment
from ops.serve_env import STORE_TAG_PREFIX
from state.incidents import Incident, check_incident_id
from tasks.incident_tasks import (
    check_incident,
    count_part,
    count_subjects,
    incident_config,
    read_at_rest,
    record_assessment,
    record_assessment_failure,
)

__all__ = ["AssessmentSummary", "incident_assessment"]

ARTIFACT_KEY = "incident-assessment"
SUMMARY_KEY = "incident-assessment-summary"
INVALID_RUN_NAME = "invalid-incident-id"
PART_WORKERS = 8
"""Scope parts counted at once (each is one set-based statement or one listing)."""


class AssessmentSummary(BaseModel):
    """What the run recorded: counts, names and deadlines (no key, no value)."""

    incident_id: str
    risk: str
    reasons: list[str]
    records: int
    subjects: int
    categories: list[str]
    high_risk_categories: list[str]
    regions: list[str]
    unintelligible: bool
    parts: list[dict[str, Any]] = Field(default_factory=list)
    notifications: list[dict[str, Any]] = Field(default_factory=list)


def _part_runner() -> TaskRunner[PrefectFuture[Any]]:
    """Threads for counting parts, bounded (Prefect's default pool is not)."""
    return cast("TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=PART_WORKERS))


def _is_incident_id(value: object) -> bool:
    try:
        check_incident_id(str(value))
    except InvalidInput:
        return False
    return True


def _run_name() -> str:
    """The incident id, or a placeholder when the value given is none (it might be
    personal data typed into the field: a run name is shown everywhere)."""
    from prefect.runtime import flow_run

    given = flow_run.parameters.get("incident_id", "")
    return str(given) if _is_incident_id(given) else INVALID_RUN_NAME


@flow(
    name="incident-assessment",
    flow_run_name=_run_name,
    task_runner=_part_runner(),
    persist_result=False,
    log_prints=False,
)
def incident_assessment(incident_id: str) -> AssessmentSummary:
    """Assess a declared breach from its stores and record the risk and the notifications
    due; returns the counts (never a key or value)."""
    if not _is_incident_id(incident_id):
        replace_parameters({"incident_id": REMOVED})  # it may be anything pasted there
        raise TerminalError("give the id of a reported incident (inc_ and 16 hex digits)")
    config = incident_config()
    incident = check_incident(config, incident_id)  # refused: nothing attempted, nothing audited
    try:
        outcome = _assess(config, incident)
    except Exception as e:
        # The timeline shows the attempt; recording it must not hide the error itself.
        record_assessment_failure(incident_id, failure_text(e), return_state=True)
        raise
    _publish(outcome)
    return summary(outcome)


def _assess(config: LifecycleConfig, incident: Incident) -> AssessmentOutcome:
    if incident.scope is None:  # check_incident refuses it; for the type checker
        raise TerminalError(f"incident {incident.id} has no scope yet")
    reading = {store: read_at_rest.submit(config, store) for store in scope_stores(incident)}
    wait(list(reading.values()))
    facts = {store: future.result() for store, future in reading.items()}
    with StoreConnectors(config, keyring_from_settings()) as connectors:
        counting = []
        for part in incident.scope.parts:
            with tags(f"{STORE_TAG_PREFIX}{part.store}"):  # per-store limits (make serve)
                at_rest = part_at_rest(facts[part.store], part)
                counting.append(count_part.submit(connectors, part, at_rest))
        wait(counting)  # every part ends before the connectors close
        parts = [future.result() for future in counting]
        subjects = count_subjects(incident, parts, connectors)
    return record_assessment(config, incident, parts, subjects)


def part_row(p: PartAssessment) -> dict[str, Any]:
    """One scope part as the artifact and the CLI show it."""
    encrypted = {True: "yes", False: "no", None: "unknown"}[p.at_rest.encrypted]
    return {
        "part": p.label,
        "records": p.records,
        "subjects": p.subjects if p.identity else "not counted",
        "identity": p.identity or "-",
        "categories": ", ".join(p.categories) or "-",
        "region": p.region or "-",
        "encrypted": encrypted,
        "key held by": p.at_rest.key_held_by or "-",
    }


def _due(outcome: AssessmentOutcome) -> list[dict[str, Any]]:
    return [
        {
            "audience": n.audience,
            "status": n.status,
            "due": "" if n.due_at is None else f"{n.due_at:%Y-%m-%d %H:%M} UTC",
            "because": n.because,
        }
        for n in outcome.notifications
    ]


def summary(outcome: AssessmentOutcome) -> AssessmentSummary:
    """The run's return value (and the CLI's view)."""
    a = outcome.assessment
    return AssessmentSummary(
        incident_id=outcome.incident_id,
        risk=a.risk,
        reasons=list(a.reasons),
        records=a.records,
        subjects=a.subjects,
        categories=list(a.categories),
        high_risk_categories=list(a.high_risk_categories),
        regions=list(a.regions),
        unintelligible=a.unintelligible,
        parts=[part_row(p) for p in a.parts],
        notifications=_due(outcome),
    )


def _total_row(outcome: AssessmentOutcome) -> dict[str, Any]:
    a = outcome.assessment
    encrypted = [p.at_rest.encrypted for p in a.parts if p.records]
    if not encrypted:
        at_rest = "-"
    else:
        at_rest = "yes" if all(encrypted) else ("no" if not any(encrypted) else "partly")
    key = {True: "key compromised", False: "key not compromised", None: "-"}
    return {
        "part": "total",
        "records": a.records,
        "subjects": a.subjects,
        "identity": ", ".join(a.subjects_by) or "-",
        "categories": ", ".join(a.categories) or "-",
        "region": ", ".join(a.regions) or "-",
        "encrypted": at_rest,
        "key held by": key[a.key_compromised],
    }


def _markdown(outcome: AssessmentOutcome) -> str:
    a = outcome.assessment
    high = f" (high-risk: {', '.join(a.high_risk_categories)})" if a.high_risk_categories else ""
    key = {True: "compromised", False: "not compromised", None: "not known"}[a.key_compromised]
    lines = [
        f"# Incident {outcome.incident_id}: risk {a.risk}",
        "",
        *(f"- {reason}" for reason in a.reasons),
        "",
        f"- records: **{a.records}** in {len(a.parts)} scope part(s)",
        f"- distinct subjects: **{a.subjects}** (by {', '.join(a.subjects_by) or 'no identity'})",
        f"- categories: {', '.join(a.categories) or 'none'}{high}",
        f"- regions: {', '.join(a.regions) or 'none'}",
        f"- clients affected: {len(a.clients)}",
        f"- unintelligible (encrypted at rest, key not compromised): "
        f"{'yes' if a.unintelligible else 'no'}; key: {key}",
        "",
        "| notification | status | due | because |",
        "|---|---|---|---|",
        *(
            f"| {d['audience']} | {d['status']} | {d['due']} | {d['because']} |"
            for d in _due(outcome)
        ),
        "",
        f"Assessed {outcome.assessed_at:%Y-%m-%d %H:%M} UTC; the parts are in the "
        f"`{ARTIFACT_KEY}` artifact, the whole record in `lifecycle incident show "
        f"{outcome.incident_id}`.",
    ]
    return "\n".join(lines) + "\n"


def _publish(outcome: AssessmentOutcome) -> None:
    a = outcome.assessment
    due = [
        f"{d['audience']} {d['status']}" + (f" by {d['due']}" if d["due"] else "")
        for d in _due(outcome)
    ]
    description = (
        f"Incident {outcome.incident_id}: risk {a.risk}, {a.records} records, "
        f"{a.subjects} subjects; " + "; ".join(due)
    )
    rows = [part_row(p) for p in a.parts] + [_total_row(outcome)]
    create_table_artifact(table=rows, key=ARTIFACT_KEY, description=description[:1000])
    create_markdown_artifact(
        markdown=_markdown(outcome), key=SUMMARY_KEY, description=description[:1000]
    )
