"""The incident-report flow: the Prefect UI form for reporting a privacy or security concern.

It does what ``lifecycle incident report`` does: the concern becomes an incident in
``triage`` (the register keeps the summary, the ledger its length and digest) and the
run returns its id. The summary is operator free text under the rules of notes: one
holding an e-mail address or a phone number is refused. Prefect keeps a run's parameters
in clear, so the summary never stays there: refused, it is removed and the run fails
saying why (never quoting it); accepted, it is replaced by the incident id that now
holds it. A "reported by" that is not a role or label (or not one of the policy's
``incidents.report_roles``, when it lists any) is refused and removed the same way.
Neither is ever logged.

A rerun of the same flow run finds the incident it opened (its id comes from the flow
run id), so a retried run does not report the concern twice.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Annotated

from prefect import flow
from pydantic import Field

from core.errors import InvalidInput, LifecycleError, TerminalError
from flows.run_parameters import REMOVED, replace_parameters
from state.incident_model import aware_time, check_label, checked_text, new_incident_id
from tasks.incident_tasks import incident_config, report_incident

__all__ = ["incident_report"]

log = logging.getLogger("lifecycle.incident")

# Descriptions only: a length or pattern constraint would be checked by Prefect after the
# run (and its parameters) exist, before this code could remove a refused value.
Summary = Annotated[
    str,
    Field(
        description="What happened, in a few sentences: no names, e-mail addresses or "
        "phone numbers (a summary holding one is refused and removed)."
    ),
]
ReportedBy = Annotated[
    str,
    Field(
        description="Who reports it, as a role or team (help-desk, security-team): no "
        "contact details."
    ),
]
DetectedAt = Annotated[
    datetime | None,
    Field(description="When the concern was noticed, with its time zone (optional)."),
]


def _incident_id() -> str:
    """The incident this run opens: derived from the flow run id (a retry finds it)."""
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    if run_id is None:
        return new_incident_id()
    return "inc_" + hashlib.sha256(f"incident-report:{run_id}".encode()).hexdigest()[:16]


def _check_reporter(reported_by: str) -> None:
    """A role or team label, one of the policy's ``report_roles`` when it lists any."""
    check_label(reported_by, "reported by")
    roles = incident_config().policy.incidents.report_roles
    if roles and reported_by not in roles:
        raise InvalidInput(
            f"reported by: give one of the policy's report_roles: {', '.join(roles)}"
        )


def _reporter_kept(value: str) -> bool:
    try:
        _check_reporter(value)
    except LifecycleError:
        return False
    return True


def _kept(summary: str, reported_by: str, detected_at: datetime | None) -> dict[str, object]:
    """The run's parameters as Prefect may keep them."""
    return {
        "summary": summary,
        "reported_by": reported_by if _reporter_kept(reported_by) else REMOVED,
        "detected_at": detected_at.isoformat() if detected_at else None,
    }


@flow(name="incident-report", persist_result=False, log_prints=False)
def incident_report(
    summary: Summary, reported_by: ReportedBy, detected_at: DetectedAt = None
) -> str:
    """Report a privacy or security concern: it opens an incident in triage; returns its id.

    ``summary``: what happened (no personal data: e-mail addresses and phone numbers are
    refused). ``reported_by``: a role or team. ``detected_at``: when it was noticed, with
    its time zone (optional).
    """
    try:
        checked_text(summary, "summary")
        _check_reporter(reported_by)
        if detected_at is not None:
            aware_time(detected_at, "detected at")
    except LifecycleError as e:
        replace_parameters(_kept(REMOVED, reported_by, detected_at))
        raise TerminalError(f"the concern was not recorded: {e.message}") from None
    incident_id = report_incident(summary, reported_by, detected_at, _incident_id())
    kept_as = f"(kept in the incident register: {incident_id})"
    replace_parameters(_kept(kept_as, reported_by, detected_at), what="the summary")
    _logger().info("concern recorded as incident %s (triage)", incident_id)
    return incident_id


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return log
