"""Recording an incident's assessment and its notifications: sent, or exempt and why.

A later assessment replaces what an earlier one required, except a notification already
sent or exempted by an operator: that record stays.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, update

from core.errors import InvalidInput, TerminalError
from incidents.assessment import Assessment
from incidents.rules import (
    EXEMPT,
    NOT_REQUIRED,
    REQUIRED,
    SENT,
    NotificationDue,
)
from state.incident_model import (
    BREACH,
    Incident,
    Notification,
    aware_time,
    check_label,
    checked_text,
)
from state.incident_reads import RULE_EXEMPT, Change, IncidentReads
from state.incident_tables import incident_notifications
from state.register_model import check_actor, text_fingerprint


class IncidentNotices(IncidentReads):
    """Assessments and notifications of incidents."""

    def record_assessment(
        self,
        incident_id: str,
        assessment: Assessment,
        due: Sequence[NotificationDue],
        *,
        actor: str,
        assessed_at: datetime,
        package: dict[str, Any] | None = None,
    ) -> Incident:
        """Store the assessment and the notifications it requires. A notification already
        sent or exempted keeps its record; the others take the new requirement."""
        actor = check_actor(actor)
        found = self._require(incident_id, (BREACH,), "record an assessment")
        kept = {
            n.audience
            for n in self.notifications(incident_id)
            if n.status in (SENT, EXEMPT) and n.reason != RULE_EXEMPT
        }

        def store(conn: Connection) -> None:
            self._move(
                conn,
                incident_id,
                (BREACH,),
                {
                    "assessment": json.dumps(assessment.to_json(), sort_keys=True),
                    "risk": assessment.risk,
                    "assessed_at": assessed_at,
                },
            )
            n = incident_notifications.c
            now = datetime.now(UTC)
            for item in due:
                if item.audience in kept:
                    continue
                values = {
                    "status": item.status,
                    "due_at": item.due_at,
                    "because": item.because,
                    "reason": RULE_EXEMPT if item.status == EXEMPT else None,
                    "updated_at": now,
                }
                changed = conn.execute(
                    update(incident_notifications)
                    .where(and_(n.incident_id == incident_id, n.audience == item.audience))
                    .values(**values)
                )
                if changed.rowcount == 0:
                    conn.execute(
                        insert(incident_notifications).values(
                            incident_id=incident_id, audience=item.audience, **values
                        )
                    )
            # An audience the new assessment no longer names (a client no longer affected)
            # is no longer required, unless it was already notified.
            named = [d.audience for d in due]
            conn.execute(
                update(incident_notifications)
                .where(
                    n.incident_id == incident_id,
                    n.status == REQUIRED,
                    n.audience.not_in(named) if named else n.audience.is_not(None),
                )
                .values(status=NOT_REQUIRED, due_at=None, because="no longer affected")
            )

        self._commit(
            incident_id,
            "incident.assessed",
            actor,
            store,
            counts=assessment.ledger_counts(),
            detail={
                "risk": assessment.risk,
                "reasons": list(assessment.reasons),
                "categories": list(assessment.categories),
                "high_risk_categories": list(assessment.high_risk_categories),
                "regions": list(assessment.regions),
                "unintelligible": assessment.unintelligible,
                "parts": [
                    {"part": p.label, "records": p.records, "subjects": p.subjects}
                    for p in assessment.parts
                ],
                "notifications": {
                    d.audience: {
                        "status": d.status,
                        "due_at": d.due_at.isoformat() if d.due_at else None,
                    }
                    for d in due
                },
                "kinds": list(found.kinds),
                **({"package": package} if package else {}),
            },
        )
        return self.get(incident_id)

    def notified(
        self,
        incident_id: str,
        audience: str,
        *,
        recipient_role: str,
        reference: str,
        actor: str,
        sent_at: datetime | None = None,
    ) -> Notification:
        """Record that ``audience`` was notified: when, to whom (a role), the reference."""
        actor = check_actor(actor)
        recipient_role = check_label(recipient_role, "to")
        reference = check_label(reference, "reference")
        self._require(incident_id, (BREACH,), "record a notification")
        before = self._notification_row(incident_id, audience)
        if before.status == SENT:
            raise TerminalError(
                f"incident {incident_id}: the {audience} notification was already recorded "
                f"as sent ({before.reference})"
            )
        now = datetime.now(UTC)
        sent = aware_time(sent_at, "sent at") if sent_at is not None else now
        if sent > now:
            raise InvalidInput("sent at: must not be in the future")
        late = before.due_at is not None and sent > before.due_at

        mark = self._marking(
            incident_id,
            before,
            status=SENT,
            sent_at=sent,
            recipient_role=recipient_role,
            reference=reference,
            updated_at=now,
        )

        self._commit(
            incident_id,
            "incident.notified",
            actor,
            mark,
            detail={
                "audience": audience,
                "to": recipient_role,
                "reference": reference,
                "sent_at": sent.isoformat(),
                "due_at": before.due_at.isoformat() if before.due_at else None,
                "late": late,
                "was": before.status,
            },
        )
        return self._notification_row(incident_id, audience)

    def exempt(self, incident_id: str, audience: str, *, reason: str, actor: str) -> Notification:
        """Record why ``audience`` is not notified (e.g. Art. 34(3)(a): encrypted data)."""
        actor = check_actor(actor)
        reason = checked_text(reason, "reason")
        self._require(incident_id, (BREACH,), "exempt a notification")
        before = self._notification_row(incident_id, audience)
        if before.status == SENT:
            raise TerminalError(
                f"incident {incident_id}: the {audience} notification was already sent"
            )
        now = datetime.now(UTC)

        mark = self._marking(incident_id, before, status=EXEMPT, reason=reason, updated_at=now)

        self._commit(
            incident_id,
            "incident.notification-exempt",
            actor,
            mark,
            detail={"audience": audience, "reason": text_fingerprint(reason), "was": before.status},
        )
        return self._notification_row(incident_id, audience)

    def record_subjects_package(
        self, incident_id: str, *, sha256: str, subjects: int, size: int, actor: str
    ) -> None:
        """Record that the encrypted affected-subjects package was written: its SHA-256,
        subjects and bytes (``incident.subjects-package``; never a value)."""
        actor = check_actor(actor)
        self._require(incident_id, (BREACH,), "record a subjects package")
        self._commit(
            incident_id,
            "incident.subjects-package",
            actor,
            lambda conn: self._move(conn, incident_id, (BREACH,), {}),
            counts={"subjects": subjects, "bytes": size},
            detail={"sha256": sha256},
        )

    def _marking(self, incident_id: str, before: Notification, **values: Any) -> Change:
        """The change setting ``before``'s notification to ``values``, only while its status
        is still the one read: of two operators recording it at once, one wins and the
        other's transaction (row and ledger event) is refused."""

        def mark(conn: Connection) -> None:
            self._move(conn, incident_id, (BREACH,), {})
            n = incident_notifications.c
            done = conn.execute(
                update(incident_notifications)
                .where(
                    n.incident_id == incident_id,
                    n.audience == before.audience,
                    n.status == before.status,
                )
                .values(**values)
            )
            if done.rowcount != 1:
                raise TerminalError(
                    f"incident {incident_id}: the {before.audience} notification changed "
                    "meanwhile (someone recorded it at the same time); see "
                    "`lifecycle incident show`"
                )

        return mark
