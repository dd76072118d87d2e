"""The request register: data-subject requests, their sealed identities, deadlines and history.

Each request holds the subject's keyed pseudonym and the identity sealed with AES-GCM
(``state.identity_box``), readable only while the request is open. Closing a request
(completed, rejected, closed or cancelled) overwrites the ciphertext and nonce with NULL in the same
transaction as the status change. Physically: on SQLite the engine runs with
``secure_delete=ON`` so the old bytes are zeroed in the page, and ``vacuum()`` truncates
the WAL that still holds older page images; on PostgreSQL the old row version (a dead
tuple) stays in the table file until VACUUM, which ``vacuum()`` runs on the register tables.

Every change is audited in the ledger, right after it commits, with the request id and
pseudonym only; operator free text (notes, extension reasons) is kept in the register and
appears in the ledger only as its length and SHA-256. Inputs the ledger would refuse
(actors that look like personal data) are refused before anything changes.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, false, insert, select, update

from audit.events import EventStatus, NewEvent
from audit.ledger import Ledger
from core.engines import IMMEDIATE
from core.errors import NotFoundError, TerminalError, TransientError
from core.keys import KeyRing
from core.pseudonym import Pseudonymizer
from state.identity_box import IdentityBox, Opened, Sealed, validate_fields
from state.register_model import (
    TERMINAL,
    TRANSITIONS,
    DeadlinePolicy,
    HistoryEntry,
    RequestKind,
    RequestRecord,
    RequestStatus,
    check_actor,
    check_free_text,
    check_request_id,
    check_transition,
    new_request_id,
    text_fingerprint,
    utc,
)
from state.register_tables import (
    RECORD_COLUMNS,
    database_errors,
    history,
    history_entry,
    record_from_row,
    requests,
    vacuum_tables,
)

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "HistoryEntry",
    "RequestKind",
    "RequestRecord",
    "RequestRegister",
    "RequestStatus",
]

CLOCK_SKEW = timedelta(minutes=5)  # how far in the future a received time may be


def _action(target: RequestStatus) -> str:
    """The history action (and ledger ``request.<action>``) of a move to ``target``."""
    if target is RequestStatus.CANCELLED:
        return "cancelled"
    return "closed" if target.terminal else "status_changed"


class RequestRegister:
    """Registers data-subject requests and moves them through their statuses, audited."""

    def __init__(
        self,
        ledger: Ledger,
        keys: KeyRing,
        deadline_days: int = 30,
        max_deadline_days: int = 90,
    ) -> None:
        self._ledger = ledger
        self._engine = ledger.engine
        # Writers read then conditionally update: on SQLite take the write lock at BEGIN
        # so two writers queue instead of failing to upgrade a read lock.
        self._writer = self._engine.execution_options(**{IMMEDIATE: True})
        self._box = IdentityBox(keys.identity_aes)
        self._pseudonyms = Pseudonymizer(keys.pseudonym_hmac)
        self.policy = DeadlinePolicy(deadline_days, max_deadline_days)

    @property
    def ledger(self) -> Ledger:
        """The ledger this register audits to (and whose engine it shares)."""
        return self._ledger

    def __repr__(self) -> str:
        return f"RequestRegister(backend={self._engine.dialect.name!r}, policy={self.policy!r})"

    # -- registering and reading ---------------------------------------------------------

    def register(
        self,
        kind: RequestKind,
        identity: Mapping[str, str],
        *,
        changes: Mapping[str, str] | None = None,
        requested_by: str,
        received_at: datetime | None = None,
        within: Callable[[Connection, str], None] | None = None,
    ) -> RequestRecord:
        """Record a new request; the identity (and rectification values) are sealed.

        A rectification needs ``changes`` (the corrected values); other kinds refuse them.
        ``received_at`` defaults to now and may be earlier (a letter opened late).
        ``within(conn, request_id)`` runs in the registering transaction, after the
        request's rows: what it writes commits with the request, and an error it raises
        undoes the registration (the intake's duplicate guards, ``ops.intake.idempotency``).
        """
        try:
            kind = RequestKind(kind)
        except ValueError as e:
            choices = ", ".join(k.value for k in RequestKind)
            raise TerminalError(f"unknown request kind; expected one of {choices}") from e
        requested_by = check_actor(requested_by, "requested_by")
        if kind is RequestKind.RECTIFICATION and not changes:
            raise TerminalError("a rectification request needs the corrected values (changes)")
        if kind is not RequestKind.RECTIFICATION and changes:
            raise TerminalError(f"only rectification requests carry changes, not {kind}")
        now = datetime.now(UTC)
        received = now if received_at is None else utc(received_at, "received_at")
        if received > now + CLOCK_SKEW:
            raise TerminalError("received_at lies in the future")
        clean = validate_fields("identity", identity, allow_empty=False)
        request_id = new_request_id()
        subject = self._pseudonyms.of_identity(clean)
        sealed = self._box.seal(request_id, kind, clean, changes)
        with database_errors("register", request_id), self._writer.begin() as conn:
            conn.execute(
                insert(requests).values(
                    id=request_id,
                    kind=kind.value,
                    subject=str(subject),
                    status=RequestStatus.RECEIVED.value,
                    received_at=received,
                    due_at=self.policy.due(received),
                    extended=False,
                    requested_by=requested_by,
                    updated_at=now,
                    identity_nonce=sealed.nonce,
                    identity_ciphertext=sealed.ciphertext,
                )
            )
            conn.execute(
                history_entry(
                    request_id,
                    "received",
                    at=now,
                    from_status=None,
                    to_status=RequestStatus.RECEIVED,
                    actor=requested_by,
                )
            )
            if within is not None:
                within(conn, request_id)
        self._ledger.append(
            "request.received",
            status=EventStatus.SUCCEEDED,
            request_id=request_id,
            subject=subject,
            detail={"kind": kind.value, "deadline_days": self.policy.deadline_days},
            actor=requested_by,
        )
        return self.get(request_id)

    def get(self, request_id: str) -> RequestRecord:
        """The request ``request_id``; NotFoundError when there is none."""
        check_request_id(request_id)
        with database_errors("get", request_id), self._engine.connect() as conn:
            return self._fetch(conn, request_id)

    def open_identity(self, request_id: str) -> dict[str, str]:
        """The subject's identity, for the caller only; refused once the request closed."""
        return dict(self._open(request_id).identity)

    def open_changes(self, request_id: str) -> dict[str, str]:
        """The corrected values of a rectification request (empty for other kinds)."""
        return dict(self._open(request_id).changes)

    def history(self, request_id: str) -> builtins.list[HistoryEntry]:
        """Every registration, status change and extension of the request, oldest first."""
        check_request_id(request_id)
        query = select(history).where(history.c.request_id == request_id).order_by(history.c.id)
        with database_errors("history", request_id), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:  # every request has its "received" entry
            raise NotFoundError(f"request {request_id} not found", request_id=request_id)
        return [
            HistoryEntry(
                request_id=row.request_id,
                at=row.at,
                action=row.action,
                from_status=None if row.from_status is None else RequestStatus(row.from_status),
                to_status=RequestStatus(row.to_status),
                actor=row.actor,
                note=row.note,
            )
            for row in rows
        ]

    def list(
        self, *, overdue_only: bool = False, status: RequestStatus | None = None
    ) -> builtins.list[RequestRecord]:
        """Requests by due date (soonest first), optionally only overdue or one status."""
        query = select(*RECORD_COLUMNS).order_by(requests.c.due_at, requests.c.id)
        if status is not None:
            query = query.where(requests.c.status == RequestStatus(status).value)
        if overdue_only:
            query = query.where(
                requests.c.status.not_in([s.value for s in TERMINAL]),
                requests.c.due_at < datetime.now(UTC),
            )
        with database_errors("list"), self._engine.connect() as conn:
            return [record_from_row(row) for row in conn.execute(query)]

    # -- changing ------------------------------------------------------------------------

    def transition(
        self,
        request_id: str,
        to: RequestStatus,
        *,
        actor: str,
        note: str | None = None,
        expected: RequestStatus | None = None,
    ) -> RequestRecord:
        """Move the request to ``to`` if ``TRANSITIONS`` allows it (TerminalError if not).

        Safe under concurrency: the update only applies while the status is still the one
        read, so of two workers making the same move exactly one wins; the other gets
        TerminalError (the move is no longer allowed) or TransientError (reload, retry).
        Give ``expected`` to move only from that status (compare-and-set): two workers
        making different moves from it then also cannot both succeed one after the other.
        Entering a terminal status closes the request and destroys its identity.
        """
        check_request_id(request_id)
        try:
            target = RequestStatus(to)
        except ValueError as e:
            raise TerminalError("unknown request status") from e
        actor = check_actor(actor)
        note = None if note is None else check_free_text(note, "note")
        now = datetime.now(UTC)
        before = self.get(request_id)
        if expected is not None and before.status != expected:
            raise TerminalError(
                f"request {request_id} is '{before.status}', not '{expected}' as "
                f"expected for the move to '{target}'; someone else moved it",
                request_id=request_id,
            )
        check_transition(request_id, before.status, target)
        action = _action(target)
        values: dict[str, Any] = {"status": target.value, "updated_at": now}
        if target.terminal:
            values.update(closed_at=now, identity_nonce=None, identity_ciphertext=None)

        def move(conn: Connection) -> None:
            # Only while the status is still the one read: of two workers making the same
            # move (or, with ``expected``, any move from it) exactly one wins.
            moved = conn.execute(
                update(requests)
                .where(requests.c.id == request_id, requests.c.status == before.status.value)
                .values(**values)
            )
            if moved.rowcount != 1:
                raise TransientError(
                    f"request {request_id} changed while moving it from '{before.status}' "
                    f"to '{target}'; reload it and retry",
                    request_id=request_id,
                )
            conn.execute(
                history_entry(
                    request_id,
                    action,
                    at=now,
                    from_status=before.status,
                    to_status=target,
                    actor=actor,
                    note=note,
                )
            )

        detail: dict[str, Any] = {"from": before.status.value, "to": target.value}
        if note is not None:
            key = "reason" if target is RequestStatus.CANCELLED else "note"
            detail[key] = text_fingerprint(note)
        event = NewEvent(
            kind=f"request.{action}",
            status=EventStatus.SUCCEEDED,
            request_id=request_id,
            subject=before.subject,
            detail=detail,
            actor=actor,
        )
        # The move, its history entry and its ledger event commit together (all or none).
        with database_errors("status change", request_id):
            self._ledger.append_many([event], also=move)
        if target.terminal:
            # NULLing the ciphertext is not enough: old page images (SQLite WAL) and dead
            # tuples (PostgreSQL) still hold it. The register is small, so this is cheap.
            self.vacuum()
            return self.get(request_id)  # the closing time as the database stored it
        return replace(before, status=target)

    def close(
        self,
        request_id: str,
        *,
        outcome: RequestStatus,
        actor: str,
        note: str | None = None,
        expected: RequestStatus | None = None,
    ) -> RequestRecord:
        """Close the request as completed, rejected or closed, destroying its identity.

        ``expected`` as for ``transition``. The register's storage is vacuumed at once, so
        the old ciphertext is also gone physically (not left in the SQLite WAL or as
        PostgreSQL dead tuples).
        """
        if outcome not in TERMINAL:
            choices = ", ".join(sorted(TERMINAL))
            raise TerminalError(f"a request closes as one of {choices}, not '{outcome}'")
        return self.transition(request_id, outcome, actor=actor, note=note, expected=expected)

    def cancel(self, request_id: str, *, reason: str, actor: str) -> RequestRecord:
        """End an open or failed request as cancelled, destroying its identity as ``close`` does.

        A closed request (completed, rejected, closed, cancelled) is refused, naming its
        status. The ledger gets "request.cancelled" with the reason's length and digest.
        """
        check_request_id(request_id)
        check_free_text(reason, "cancellation reason")
        status = self.get(request_id).status
        if status.terminal:
            raise TerminalError(
                f"request {request_id} is already {status}; only an open or failed request "
                "can be cancelled",
                request_id=request_id,
                status=str(status),
            )
        return self.transition(request_id, RequestStatus.CANCELLED, actor=actor, note=reason)

    def extend(self, request_id: str, *, days: int, reason: str, actor: str) -> RequestRecord:
        """Extend the deadline once, by ``days``, to at most ``max_deadline_days`` in total.

        A refused extension (second one, too long, closed request) changes nothing.
        """
        check_request_id(request_id)
        actor = check_actor(actor)
        text = check_free_text(reason, "extension reason")
        now = datetime.now(UTC)
        with database_errors("extension", request_id), self._writer.begin() as conn:
            before = self._fetch(conn, request_id)
            new_due = self.policy.extended_due(before, days)
            done = conn.execute(
                update(requests)
                .where(
                    requests.c.id == request_id,
                    requests.c.extended == false(),
                    requests.c.status == before.status.value,
                )
                .values(
                    due_at=new_due,
                    extended=True,
                    extension_reason=text,
                    extended_at=now,
                    extended_by=actor,
                    updated_at=now,
                )
            )
            if done.rowcount != 1:
                raise TransientError(
                    f"request {request_id} changed while extending it; reload it and retry",
                    request_id=request_id,
                )
            conn.execute(
                history_entry(
                    request_id,
                    "extended",
                    at=now,
                    from_status=before.status,
                    to_status=before.status,
                    actor=actor,
                    note=text,
                )
            )
        total = round((new_due - before.received_at) / timedelta(days=1))
        self._ledger.append(
            "request.extended",
            status=EventStatus.SUCCEEDED,
            request_id=request_id,
            subject=before.subject,
            detail={"days": days, "total_days": total, "reason": text_fingerprint(text)},
            actor=actor,
        )
        return self.get(request_id)

    # -- maintenance ---------------------------------------------------------------------

    def vacuum(self) -> None:
        """Physically drop destroyed identities' old bytes from the register's storage.

        Runs whenever a request closes. PostgreSQL: VACUUM the register tables (dead tuples
        keep old values until then). SQLite: checkpoint and truncate the WAL, which keeps
        older page images. MariaDB/MySQL: OPTIMIZE TABLE, which rebuilds the tables.
        """
        vacuum_tables(self._engine)

    # -- internals -----------------------------------------------------------------------

    def _fetch(self, conn: Connection, request_id: str) -> RequestRecord:
        row = conn.execute(select(*RECORD_COLUMNS).where(requests.c.id == request_id)).first()
        if row is None:
            raise NotFoundError(f"request {request_id} not found", request_id=request_id)
        return record_from_row(row)

    def _open(self, request_id: str) -> Opened:
        check_request_id(request_id)
        query = select(
            requests.c.kind, requests.c.identity_nonce, requests.c.identity_ciphertext
        ).where(requests.c.id == request_id)
        with database_errors("open identity", request_id), self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"request {request_id} not found", request_id=request_id)
        if row.identity_ciphertext is None or row.identity_nonce is None:
            raise TerminalError(
                f"the identity of request {request_id} was destroyed when the request "
                "closed; it cannot be opened",
                request_id=request_id,
            )
        sealed = Sealed(bytes(row.identity_nonce), bytes(row.identity_ciphertext))
        return self._box.open(request_id, row.kind, sealed)
