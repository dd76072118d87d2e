"""The incident register's values: states, ids, labels and what a read returns.

``state.incidents.IncidentRegister`` changes and reads incidents; these are the shapes it
returns and the checks it applies to what operators type (ids, roles and references,
times with their zone, free text without personal data).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from core.errors import InvalidInput, TerminalError
from incidents.assessment import Assessment
from incidents.rules import REQUIRED
from incidents.scope import IncidentScope
from state.register_model import check_actor, check_free_text

TRIAGE, BREACH, DISMISSED, CLOSED = "triage", "breach", "dismissed", "closed"
STATES = (TRIAGE, BREACH, DISMISSED, CLOSED)
KINDS = ("confidentiality", "integrity", "availability")
OPEN, DONE, WAIVED = "open", "done", "waived"
_ID = re.compile(r"^inc_[0-9a-f]{16}$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/ -]{0,119}$")


def new_incident_id() -> str:
    """``inc_`` + 16 hex digits (the shape of request ids, so the ledger filters by it)."""
    return "inc_" + secrets.token_hex(8)


def check_incident_id(incident_id: str) -> str:
    """Refuse what is not an incident id, without echoing it."""
    if not isinstance(incident_id, str) or not _ID.match(incident_id):
        raise InvalidInput("not an incident id: expected 'inc_' followed by 16 hex digits")
    return incident_id


def check_label(value: str, what: str) -> str:
    """A role, reference or owner: a short label (letters, digits, ``._:/ -``), no contact."""
    if not isinstance(value, str) or not _LABEL.match(value):
        raise InvalidInput(
            f"{what}: must be a role or reference of up to 120 letters, digits, spaces "
            "and '._:/-' (no contact details)"
        )
    check_actor(value, what)
    return value


def aware_time(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput(f"{what}: give a time with its zone (e.g. 2026-12-01T09:00Z)")
    return moment.astimezone(UTC)


def checked_text(value: str, what: str) -> str:
    try:
        return check_free_text(value, what)
    except TerminalError as e:
        raise InvalidInput(str(e)) from None


@dataclass(frozen=True)
class Notification:
    """One audience's notification: due, and whether it was sent or exempted."""

    audience: str
    status: str
    due_at: datetime | None
    because: str | None
    sent_at: datetime | None
    recipient_role: str | None
    reference: str | None
    reason: str | None

    def overdue(self, now: datetime) -> bool:
        """Still required and past its deadline."""
        return self.status == REQUIRED and self.due_at is not None and self.due_at <= now


@dataclass(frozen=True)
class Action:
    """A corrective action."""

    number: int
    title: str
    owner: str
    due: date | None
    status: str
    reason: str | None


@dataclass(frozen=True)
class Incident:
    """An incident as the register holds it."""

    id: str
    state: str
    summary: str
    reported_by: str
    reported_at: datetime
    detected_at: datetime | None
    aware_at: datetime | None
    kinds: tuple[str, ...]
    scope: IncidentScope | None
    key_compromised: bool | None
    assessment: Assessment | None
    risk: str | None
    assessed_at: datetime | None
    closed_at: datetime | None
    close_reason: str | None

    @property
    def open(self) -> bool:
        return self.state in (TRIAGE, BREACH)


def incident_from_row(row: Any) -> Incident:
    return Incident(
        id=row.id,
        state=row.state,
        summary=row.summary,
        reported_by=row.reported_by,
        reported_at=row.reported_at,
        detected_at=row.detected_at,
        aware_at=row.aware_at,
        kinds=tuple(k for k in (row.kinds or "").split(",") if k),
        scope=IncidentScope.model_validate_json(row.scope) if row.scope else None,
        key_compromised=row.key_compromised,
        assessment=Assessment.from_json(json.loads(row.assessment)) if row.assessment else None,
        risk=row.risk,
        assessed_at=row.assessed_at,
        closed_at=row.closed_at,
        close_reason=row.close_reason,
    )


def notification_from_row(row: Any) -> Notification:
    return Notification(
        row.audience,
        row.status,
        row.due_at,
        row.because,
        row.sent_at,
        row.recipient_role,
        row.reference,
        row.reason,
    )
