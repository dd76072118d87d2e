"""The incident register: every step of an incident, each committed with its ledger event.

States: ``triage`` (a reported concern) -> ``breach`` (declared a personal data breach:
the clock runs from ``aware_at``) -> ``closed``; or ``triage`` -> ``dismissed`` (not a
breach, with a reason). Every change is a compare-and-set on the state read, and commits
in the transaction of its ledger event (``Ledger.append_many(also=...)``), so the register
and the ledger never disagree and of two operators making the same move one wins.
Free text (summary, reasons, action titles) is refused when it holds personal data; the
ledger gets its fingerprint (length and SHA-256), never the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

from sqlalchemy import Connection, func, insert, select, update

from core.errors import InvalidInput, NotFoundError, TerminalError, TransientError
from incidents.rules import (
    REQUIRED,
    SENT,
)
from incidents.scope import IncidentScope
from state.incident_model import (
    BREACH,
    CLOSED,
    DISMISSED,
    DONE,
    KINDS,
    OPEN,
    STATES,
    TRIAGE,
    WAIVED,
    Action,
    Incident,
    Notification,
    aware_time,
    check_incident_id,
    check_label,
    checked_text,
    new_incident_id,
)
from state.incident_notices import IncidentNotices
from state.incident_tables import incident_actions, incident_notifications, incidents
from state.register_model import check_actor, text_fingerprint

__all__ = [
    "BREACH",
    "CLOSED",
    "DISMISSED",
    "DONE",
    "KINDS",
    "OPEN",
    "STATES",
    "TRIAGE",
    "WAIVED",
    "Action",
    "Incident",
    "IncidentRegister",
    "Notification",
    "check_incident_id",
    "new_incident_id",
]


class IncidentRegister(IncidentNotices):
    """Reads and changes incidents in the audit database, auditing every change."""

    def report(
        self,
        summary: str,
        *,
        reported_by: str,
        actor: str,
        detected_at: datetime | None = None,
        incident_id: str | None = None,
    ) -> Incident:
        """Open an incident in ``triage`` from a reported concern."""
        summary = checked_text(summary, "summary")
        reported_by = check_label(reported_by, "reported by")
        actor = check_actor(actor)
        detected = aware_time(detected_at, "detected at") if detected_at is not None else None
        incident_id = check_incident_id(incident_id) if incident_id else new_incident_id()
        now = datetime.now(UTC)

        def add(conn: Connection) -> None:
            conn.execute(
                insert(incidents).values(
                    id=incident_id,
                    state=TRIAGE,
                    summary=summary,
                    reported_by=reported_by,
                    reported_at=now,
                    detected_at=detected,
                    updated_at=now,
                )
            )

        self._commit(
            incident_id,
            "incident.reported",
            actor,
            add,
            detail={
                "reported_by": reported_by,
                "summary": text_fingerprint(summary),
                **({"detected_at": detected.isoformat()} if detected else {}),
            },
        )
        return self.get(incident_id)

    def dismiss(self, incident_id: str, *, reason: str, actor: str) -> Incident:
        """Close a concern that is not a personal data breach, with the reason."""
        reason = checked_text(reason, "reason")
        actor = check_actor(actor)
        self._require(incident_id, (TRIAGE,), "dismiss it")
        now = datetime.now(UTC)
        self._commit(
            incident_id,
            "incident.dismissed",
            actor,
            lambda conn: self._move(
                conn,
                incident_id,
                (TRIAGE,),
                {"state": DISMISSED, "closed_at": now, "close_reason": reason},
            ),
            detail={"reason": text_fingerprint(reason)},
        )
        return self.get(incident_id)

    def declare(
        self,
        incident_id: str,
        *,
        kinds: Sequence[str],
        actor: str,
        aware_at: datetime | None = None,
        detected_at: datetime | None = None,
    ) -> Incident:
        """Declare the concern a personal data breach: the notification clock starts at
        ``aware_at`` (default now), GDPR Art. 33(1)."""
        actor = check_actor(actor)
        chosen = tuple(dict.fromkeys(kinds))
        if not chosen or any(k not in KINDS for k in chosen):
            raise InvalidInput(f"kind: give one or more of {', '.join(KINDS)}")
        found = self._require(incident_id, (TRIAGE,), "declare it a breach")
        now = datetime.now(UTC)
        aware = aware_time(aware_at, "aware at") if aware_at is not None else now
        if aware > now:
            raise InvalidInput("aware at: must not be in the future")
        detected = aware_time(detected_at, "detected at") if detected_at else found.detected_at
        if detected is not None and detected > aware:
            raise InvalidInput("detected at: must not be after the moment we became aware")
        values = {"state": BREACH, "kinds": ",".join(chosen), "aware_at": aware}
        if detected is not None:
            values["detected_at"] = detected
        self._commit(
            incident_id,
            "incident.declared",
            actor,
            lambda conn: self._move(conn, incident_id, (TRIAGE,), values),
            detail={
                "kinds": list(chosen),
                "aware_at": aware.isoformat(),
                **({"detected_at": detected.isoformat()} if detected else {}),
            },
        )
        return self.get(incident_id)

    def set_scope(
        self,
        incident_id: str,
        scope: IncidentScope,
        *,
        key_compromised: bool | None,
        actor: str,
    ) -> Incident:
        """Record the scope (stores, tables, columns, prefixes, windows; names only) and
        whether encryption keys were compromised (None: not known). An earlier assessment
        is dropped: the incident closes only once the new scope is assessed."""
        actor = check_actor(actor)
        self._require(incident_id, (BREACH,), "set its scope")
        as_json = scope.model_dump_json()
        self._commit(
            incident_id,
            "incident.scoped",
            actor,
            lambda conn: self._move(
                conn,
                incident_id,
                (BREACH,),
                {
                    "scope": as_json,
                    "key_compromised": key_compromised,
                    # An assessment of another scope no longer holds: assess again.
                    "assessment": None,
                    "risk": None,
                    "assessed_at": None,
                },
            ),
            detail={
                "parts": [p.label for p in scope.parts],
                "windows": [
                    [p.window.start.isoformat(), p.window.end.isoformat()] if p.window else None
                    for p in scope.parts
                ],
                "key_compromised": key_compromised,
            },
            counts={"parts": len(scope.parts)},
        )
        return self.get(incident_id)

    def add_action(
        self, incident_id: str, *, title: str, owner: str, due: date | None, actor: str
    ) -> Action:
        """Add a corrective action (open) with its owner (a role) and due date."""
        actor = check_actor(actor)
        title = checked_text(title, "title")
        owner = check_label(owner, "owner")
        self._require(incident_id, (TRIAGE, BREACH), "add an action")
        now = datetime.now(UTC)
        number: list[int] = []

        def add(conn: Connection) -> None:
            self._move(conn, incident_id, (TRIAGE, BREACH), {})
            a = incident_actions.c
            last = conn.execute(
                select(func.max(a.number)).where(a.incident_id == incident_id)
            ).scalar()
            number.append((last or 0) + 1)
            conn.execute(
                insert(incident_actions).values(
                    incident_id=incident_id,
                    number=number[0],
                    title=title,
                    owner=owner,
                    due=due,
                    status=OPEN,
                    updated_at=now,
                )
            )

        self._commit(
            incident_id,
            "incident.action-added",
            actor,
            add,
            detail={
                "title": text_fingerprint(title),
                "owner": owner,
                "due": due.isoformat() if due else None,
            },
        )
        return next(a for a in self.actions(incident_id) if a.number == number[0])

    def finish_action(
        self,
        incident_id: str,
        number: int,
        *,
        status: str,
        actor: str,
        reason: str | None = None,
    ) -> Action:
        """Mark action ``number`` done, or waived with a reason."""
        actor = check_actor(actor)
        if status not in (DONE, WAIVED):
            raise InvalidInput("status: done or waived")
        if status == WAIVED and not reason:
            raise InvalidInput("reason: a waived action needs the reason it is waived")
        reason = checked_text(reason, "reason") if reason else None
        self._require(incident_id, (TRIAGE, BREACH), "change an action")
        current = {a.number: a for a in self.actions(incident_id)}
        if number not in current:
            raise NotFoundError(f"incident {incident_id} has no action {number}")
        if current[number].status != OPEN:
            raise TerminalError(
                f"incident {incident_id}: action {number} is already {current[number].status}"
            )
        now = datetime.now(UTC)

        def mark(conn: Connection) -> None:
            self._move(conn, incident_id, (TRIAGE, BREACH), {})
            a = incident_actions.c
            done = conn.execute(
                update(incident_actions)
                .where(a.incident_id == incident_id, a.number == number, a.status == OPEN)
                .values(status=status, reason=reason, updated_at=now)
            )
            if done.rowcount != 1:
                raise TransientError(f"incident {incident_id}: action {number} changed meanwhile")

        self._commit(
            incident_id,
            f"incident.action-{status}",
            actor,
            mark,
            detail={"action": number, **({"reason": text_fingerprint(reason)} if reason else {})},
        )
        return self.actions(incident_id)[number - 1]

    def close(self, incident_id: str, *, actor: str, reason: str | None = None) -> Incident:
        """Close a breach once every notification is sent, exempt or not required and
        every corrective action is done or waived; TerminalError listing what is left."""
        actor = check_actor(actor)
        reason = checked_text(reason, "reason") if reason else None
        problems = self.closing_problems(incident_id)
        if problems:
            raise TerminalError(f"incident {incident_id} cannot close: {'; '.join(problems)}")
        now = datetime.now(UTC)
        sent = [n for n in self.notifications(incident_id) if n.status == SENT]

        def shut(conn: Connection) -> None:
            self._move(
                conn,
                incident_id,
                (BREACH,),
                {"state": CLOSED, "closed_at": now, "close_reason": reason},
            )
            a, n = incident_actions.c, incident_notifications.c
            left = conn.execute(
                select(func.count())
                .select_from(incident_actions)
                .where(a.incident_id == incident_id, a.status == OPEN)
            ).scalar()
            required = conn.execute(
                select(func.count())
                .select_from(incident_notifications)
                .where(n.incident_id == incident_id, n.status == REQUIRED)
            ).scalar()
            if left or required:  # added between the check and the close
                raise TransientError(f"incident {incident_id} changed meanwhile; retry closing")

        self._commit(
            incident_id,
            "incident.closed",
            actor,
            shut,
            counts={"notifications_sent": len(sent), "actions": len(self.actions(incident_id))},
            detail={"reason": text_fingerprint(reason)} if reason else {},
        )
        return self.get(incident_id)
