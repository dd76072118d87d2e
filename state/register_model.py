"""Value types and rules of the request register: kinds, statuses, transitions, deadlines.

Code with no database access, so the rules can be tested (and reasoned about) on
their own; ``state.register`` applies them to stored rows and re-exports these names.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from audit.guard import check_text
from audit.tables import LENGTHS
from core.errors import InvalidInput, NotFoundError, TerminalError
from core.free_text import check_free_text as refuse_personal_data
from core.pseudonym import Pseudonym

MAX_ACTOR_CHARS = LENGTHS["actor"]  # actors are also ledger actors
MAX_NOTE_CHARS = 4000
_ID_PATTERN = re.compile(r"^req_[0-9a-f]{16}$")
_DAY = timedelta(days=1)


class RequestKind(StrEnum):
    """What the data subject asked for."""

    ACCESS = "access"
    RECTIFICATION = "rectification"
    ERASURE = "erasure"


class RequestStatus(StrEnum):
    """Where a request stands; see ``TRANSITIONS`` for the allowed moves."""

    RECEIVED = "received"
    PLANNED = "planned"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    EXECUTING = "executing"
    VERIFYING = "verifying"
    COMPLETED = "completed"
    REJECTED = "rejected"
    FAILED = "failed"
    CLOSED = "closed"
    CANCELLED = "cancelled"  # ended by an operator (``lifecycle request cancel``)

    @property
    def terminal(self) -> bool:
        """A terminal status closes the request: its identity is destroyed on entry."""
        return self in TERMINAL


TERMINAL = frozenset(
    {RequestStatus.COMPLETED, RequestStatus.REJECTED, RequestStatus.CLOSED, RequestStatus.CANCELLED}
)

_S = RequestStatus
TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    # Planning failures leave the request in RECEIVED (the ledger records the failure),
    # so FAILED always means "execution started" and resuming goes back to EXECUTING.
    # Every open or failed request can be cancelled by an operator.
    _S.RECEIVED: frozenset({_S.PLANNED, _S.REJECTED, _S.CLOSED, _S.CANCELLED}),
    # PLANNED -> APPROVED is the path for kinds whose policy needs no human approval.
    _S.PLANNED: frozenset(
        {_S.AWAITING_APPROVAL, _S.APPROVED, _S.REJECTED, _S.CLOSED, _S.CANCELLED}
    ),
    _S.AWAITING_APPROVAL: frozenset({_S.APPROVED, _S.REJECTED, _S.CLOSED, _S.CANCELLED}),
    _S.APPROVED: frozenset({_S.EXECUTING, _S.CLOSED, _S.CANCELLED}),
    # EXECUTING -> AWAITING_APPROVAL: the store's rows changed since approval and the new
    # plan touches more than the approved one (engine.replan), so it is approved again.
    _S.EXECUTING: frozenset({_S.VERIFYING, _S.FAILED, _S.AWAITING_APPROVAL, _S.CANCELLED}),
    _S.VERIFYING: frozenset({_S.COMPLETED, _S.FAILED, _S.CANCELLED}),
    _S.FAILED: frozenset({_S.EXECUTING, _S.CLOSED, _S.CANCELLED}),
    _S.COMPLETED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.CLOSED: frozenset(),
    _S.CANCELLED: frozenset(),
}


def check_transition(request_id: str, current: RequestStatus, to: RequestStatus) -> None:
    """Raise TerminalError naming both statuses unless ``current -> to`` is allowed."""
    if to not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none, it is closed"
        raise TerminalError(
            f"request {request_id} cannot move from '{current}' to '{to}' (allowed: {allowed})",
            request_id=request_id,
            from_status=str(current),
            to_status=str(to),
        )


def new_request_id() -> str:
    """A short unguessable id: ``req_`` and 64 random bits in hex."""
    return "req_" + secrets.token_hex(8)


def check_request_id(request_id: str) -> str:
    """Refuse strings that are not request ids without echoing them (they may be typos
    of personal data, such as an e-mail address pasted in the wrong field)."""
    if not isinstance(request_id, str) or not _ID_PATTERN.match(request_id):
        raise NotFoundError("not a request id: expected 'req_' followed by 16 hex digits")
    return request_id


def check_actor(actor: str, what: str = "actor") -> str:
    """``actor`` if the ledger will accept it as an actor, else TerminalError.

    Checked before any change, so a refused audit event cannot leave an unaudited
    change behind.
    """
    if not isinstance(actor, str) or not actor.strip():
        raise TerminalError(f"{what} must be a non-empty string")
    if len(actor) > MAX_ACTOR_CHARS:
        raise TerminalError(f"{what} is longer than {MAX_ACTOR_CHARS} characters")
    check_text(actor, what)
    return actor


def check_free_text(text: str, what: str) -> str:
    """Operator free text (a note, a reason): non-empty, bounded, no personal data.

    The register keeps it verbatim, so an e-mail address or phone number is refused
    (``core.free_text``); callers check earlier, naming their own field, this is the backstop.
    """
    if not isinstance(text, str) or not text.strip():
        raise TerminalError(f"{what} must be a non-empty string")
    if len(text) > MAX_NOTE_CHARS:
        raise TerminalError(f"{what} is longer than {MAX_NOTE_CHARS} characters")
    refuse_personal_data(what, text)
    return text


def utc(moment: datetime, what: str) -> datetime:
    """``moment`` in UTC; naive datetimes are refused because their zone is a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise TerminalError(f"{what} must be timezone-aware")
    return moment.astimezone(UTC)


def text_fingerprint(text: str) -> dict[str, object]:
    """Length and SHA-256 of operator free text: provable in the ledger, not readable."""
    return {"chars": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()}


@dataclass(frozen=True)
class DeadlinePolicy:
    """Response deadline in days after receipt, and the most one extension may reach."""

    deadline_days: int = 30
    max_deadline_days: int = 90

    def __post_init__(self) -> None:
        if not 0 < self.deadline_days <= self.max_deadline_days:
            raise TerminalError(
                "deadline_days must be positive and at most max_deadline_days "
                f"(got {self.deadline_days} and {self.max_deadline_days})"
            )

    def due(self, received_at: datetime) -> datetime:
        return received_at + timedelta(days=self.deadline_days)

    def extended_due(self, record: RequestRecord, days: int) -> datetime:
        """The due date after extending ``record`` by ``days``, or TerminalError."""
        rid = record.id
        if record.status.terminal:
            raise TerminalError(f"request {rid} is {record.status}; it cannot be extended")
        if record.extended:
            raise TerminalError(f"request {rid} was already extended; only one extension")
        if days <= 0:
            raise InvalidInput("extension days must be positive")
        new_due = record.due_at + timedelta(days=days)
        limit = record.received_at + timedelta(days=self.max_deadline_days)
        if new_due > limit:
            allowed = (limit - record.due_at) // _DAY
            raise InvalidInput(
                f"request {rid} may be extended by at most {allowed} days "
                f"({self.max_deadline_days} days after receipt in total)"
            )
        return new_due


@dataclass(frozen=True)
class RequestRecord:
    """A request as the register holds it. It never carries the identity itself."""

    id: str
    kind: RequestKind
    subject: Pseudonym
    status: RequestStatus
    received_at: datetime
    due_at: datetime
    extended: bool
    extension_reason: str | None = field(repr=False)  # operator free text
    closed_at: datetime | None
    requested_by: str
    identity_destroyed: bool

    def _clock(self, now: datetime | None) -> datetime:
        # A closed request's clock stopped when it closed.
        if self.closed_at is not None:
            return self.closed_at
        return datetime.now(UTC) if now is None else utc(now, "now")

    def days_left(self, now: datetime | None = None) -> int:
        """Whole days until the due date (floored), negative once overdue.

        Floored so the sign always agrees with ``overdue()``: an hour past due is -1, and
        5 days and a moment past due is -6 (the sixth day overdue has started).
        For a closed request, counted at closing: negative means it closed late.
        """
        return math.floor((self.due_at - self._clock(now)) / _DAY)

    def overdue(self, now: datetime | None = None) -> bool:
        """Open and past its due date (a closed request is never overdue)."""
        return self.closed_at is None and self._clock(now) > self.due_at


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a request's history: registration, a status change or the extension."""

    request_id: str
    at: datetime
    action: str  # "received", "status_changed", "extended", "closed" or "cancelled"
    from_status: RequestStatus | None
    to_status: RequestStatus
    actor: str
    note: str | None = field(repr=False)  # operator free text
