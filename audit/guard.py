"""Refuse raw personal data (and malformed values) before anything reaches the ledger.

Subjects must be keyed pseudonyms (``core.pseudonym.Pseudonym``); free-text fields are
scanned for values that look like e-mail addresses or phone numbers. Messages name the
offending field path, never the value, so the refusal itself leaks nothing.
``prepare_event`` applies every check and normalization to an event, in the caller's
thread, so a bad event fails alone and never reaches a group-commit batch.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from audit.canonical import (
    InvalidEvent,
    JsonValue,
    check_unicode,
    normalize_counts,
    normalize_detail,
)
from audit.events import EventStatus, NewEvent
from audit.tables import LENGTHS
from core.errors import PersonalDataRefused
from core.pseudonym import Pseudonym

_EMAIL = re.compile(r"[\w.%+'-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")

# Phone numbers as people write them. Deliberately narrower than "any run of digits":
# identifiers, counts, ISO dates and IP addresses must pass. Each alternative needs
# either a leading "+" / "00", a parenthesized area code, a 0 trunk prefix followed by
# a separator, or the North-American 3-3-4 grouping.
_PHONE = re.compile(
    r"""
    (?<![\w+])
    (?:
        (?:\+|\b00)\d{1,3}[\s./-]?(?:\(\d{1,4}\)[\s./-]?)?\d{1,5}(?:[\s./-]?\d{1,5}){1,4}
      | \(\d{2,5}\)[\s./-]?\d{2,5}(?:[\s./-]?\d{2,5}){1,3}
      | \b0\d{1,4}[\s/-]\d{2,8}(?:[\s./-]\d{2,5}){0,3}
      | \b\d{3}[\s.-]\d{3}[\s.-]\d{4}
    )
    (?![\w])
    """,
    re.VERBOSE,
)
_MIN_PHONE_DIGITS = 7
_MAX_PHONE_DIGITS = 15


def looks_like_email(text: str) -> bool:
    """True when ``text`` contains something shaped like an e-mail address."""
    return "@" in text and _EMAIL.search(text) is not None


def looks_like_phone(text: str) -> bool:
    """True when ``text`` contains something shaped like a phone number."""
    for match in _PHONE.finditer(text):
        digits = sum(ch.isdigit() for ch in match.group(0))
        if _MIN_PHONE_DIGITS <= digits <= _MAX_PHONE_DIGITS:
            return True
    return False


def check_text(value: str, path: str) -> None:
    """Raise PersonalDataRefused when ``value`` looks like an e-mail address or phone."""
    if looks_like_email(value):
        raise PersonalDataRefused(f"{path} looks like an e-mail address; use a pseudonym")
    if looks_like_phone(value):
        raise PersonalDataRefused(f"{path} looks like a phone number; use a pseudonym")


def check_tree(value: JsonValue, path: str) -> None:
    """Check every string (keys included) in a normalized JSON value."""
    if isinstance(value, str):
        check_text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            # A key that is itself personal data must not appear in the path we report.
            check_text(key, f"{path} (a key)")
            check_tree(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_tree(item, f"{path}[{i}]")


def check_subject(subject: Any) -> str | None:
    """The subject as stored: a Pseudonym instance, or None."""
    if subject is None:
        return None
    if not isinstance(subject, Pseudonym):
        raise PersonalDataRefused(
            "subject must be a core.pseudonym.Pseudonym (a keyed pseudonym), "
            f"not {type(subject).__name__}"
        )
    try:
        return str(Pseudonym.parse(subject))
    except ValueError as e:
        raise PersonalDataRefused("subject is not a well-formed pseudonym") from e


def check_field(name: str, value: Any, *, required: bool = False, scan: bool = True) -> str | None:
    """Validate one string column: type, length, and (when ``scan``) no personal data."""
    if value is None:
        if required:
            raise InvalidEvent(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"{name} must be a string, not {type(value).__name__}")
    if required and not value:
        raise InvalidEvent(f"{name} must not be empty")
    if len(value) > LENGTHS[name]:
        raise InvalidEvent(f"{name} is longer than {LENGTHS[name]} characters")
    check_unicode(value, name)
    if scan:
        check_text(value, name)
    return str(value)


def check_run_id(name: str, value: Any) -> str | None:
    """A Prefect run id must be a UUID; checking the shape beats scanning it.

    Scanning would misread the digit groups of a UUID as a phone number now and then.
    """
    text = check_field(name, value, scan=False)
    if text is None:
        return None
    try:
        uuid.UUID(text)
    except ValueError as e:
        raise InvalidEvent(f"{name} must be a UUID (a Prefect run id)") from e
    return text


def check_mapping_keys(mapping: Mapping[str, Any], path: str) -> None:
    """Scan the keys of a flat mapping (the counts)."""
    for key in mapping:
        check_text(key, f"{path} (a key)")


@dataclass(frozen=True)
class PreparedEvent:
    """A validated event, ready to be chained: everything but seq and hashes."""

    event_id: str
    occurred_at: datetime
    kind: str
    status: str
    actor: str
    request_id: str | None
    flow_run_id: str | None
    task_run_id: str | None
    connector: str | None
    target: str | None
    subject: str | None
    counts: dict[str, int]
    detail: dict[str, JsonValue]


def _status(value: EventStatus | str) -> str:
    try:
        return EventStatus(value).value
    except ValueError as e:
        allowed = ", ".join(s.value for s in EventStatus)
        raise InvalidEvent(f"status must be one of {allowed}") from e


def prepare_event(event: NewEvent, default_actor: str) -> PreparedEvent:
    """Validate and normalize ``event``; raises before anything is queued or written."""
    counts = normalize_counts(event.counts)
    detail = normalize_detail(event.detail)
    check_mapping_keys(counts, "counts")
    check_tree(detail, "detail")
    actor = event.actor if event.actor is not None else default_actor
    return PreparedEvent(
        event_id=uuid.uuid4().hex,
        occurred_at=datetime.now(UTC),
        kind=check_field("kind", event.kind, required=True) or "",
        status=_status(event.status),
        actor=check_field("actor", actor, required=True, scan=False) or "",
        request_id=check_field("request_id", event.request_id),
        flow_run_id=check_run_id("flow_run_id", event.flow_run_id),
        task_run_id=check_run_id("task_run_id", event.task_run_id),
        connector=check_field("connector", event.connector),
        target=check_field("target", event.target),
        subject=check_subject(event.subject),
        counts=counts,
        detail=detail,
    )
