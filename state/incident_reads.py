"""Reading the incident register, and the path every change to it takes.

``IncidentReads`` answers what an incident, its notifications and actions are, and what
still keeps it from closing; its helpers make each change a compare-and-set on the state
read, committed in the transaction of the change's ledger event.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from audit.events import EventStatus, NewEvent
from audit.ledger import Ledger
from core.errors import NotFoundError, TerminalError, TransientError
from incidents.rules import (
    REQUIRED,
)
from state.incident_model import (
    BREACH,
    OPEN,
    Action,
    Incident,
    Notification,
    check_incident_id,
    incident_from_row,
    notification_from_row,
)
from state.incident_tables import incident_actions, incident_notifications, incidents
from state.register_tables import database_errors

RULE_EXEMPT = "exempt by the policy's rules"
"""The reason of an exemption an assessment gave (a later assessment may change it)."""

Change = Callable[[Connection], None]
RunIds = Callable[[], Mapping[str, str | None]]
"""A change to the register, run in the transaction of its ledger event."""


class IncidentReads:
    """Reads incidents, and the helpers every change goes through (audited, compare-and-set)."""

    def __init__(self, ledger: Ledger, run_ids: RunIds | None = None) -> None:
        """``run_ids`` gives the Prefect flow and task run ids each event records (the
        engine passes ``engine.events.run_ids``; the register itself knows no Prefect)."""
        self._ledger = ledger
        self._engine = ledger.engine
        self._ids = run_ids

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self._engine.dialect.name!r})"

    # -- reading ----------------------------------------------------------------------

    def get(self, incident_id: str) -> Incident:
        """The incident; NotFoundError if there is none with this id."""
        check_incident_id(incident_id)
        with database_errors("incident read"), self._engine.connect() as conn:
            row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).first()
        if row is None:
            raise NotFoundError(f"no incident {incident_id}")
        return incident_from_row(row)

    def list(self, *, states: Sequence[str] = ()) -> builtins.list[Incident]:
        """Incidents, newest first (``states`` narrows them)."""
        query = select(incidents).order_by(incidents.c.reported_at.desc(), incidents.c.id)
        if states:
            query = query.where(incidents.c.state.in_(list(states)))
        with database_errors("incident list"), self._engine.connect() as conn:
            return [incident_from_row(r) for r in conn.execute(query)]

    def notifications(self, incident_id: str) -> builtins.list[Notification]:
        """Its notifications: authority, subjects, then clients by name."""
        n = incident_notifications.c
        query = select(incident_notifications).where(n.incident_id == incident_id)
        with database_errors("incident read"), self._engine.connect() as conn:
            found = [notification_from_row(r) for r in conn.execute(query)]
        order = {"authority": 0, "subjects": 1}
        return sorted(found, key=lambda x: (order.get(x.audience, 2), x.audience))

    def actions(self, incident_id: str) -> builtins.list[Action]:
        """Its corrective actions in the order they were added."""
        a = incident_actions.c
        query = select(incident_actions).where(a.incident_id == incident_id).order_by(a.number)
        with database_errors("incident read"), self._engine.connect() as conn:
            return [
                Action(r.number, r.title, r.owner, r.due, r.status, r.reason)
                for r in conn.execute(query)
            ]

    def due(self) -> builtins.list[tuple[Incident, Notification]]:
        """Every notification still required with a deadline, soonest first, with its
        incident (open incidents only)."""
        n, i = incident_notifications.c, incidents.c
        query = (
            select(incident_notifications, incidents.c.state)
            .join(incidents, i.id == n.incident_id)
            .where(n.status == REQUIRED, n.due_at.is_not(None), i.state == BREACH)
            .order_by(n.due_at)
        )
        with database_errors("incident read"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        cache: dict[str, Incident] = {}
        out = []
        for r in rows:
            if r.incident_id not in cache:
                cache[r.incident_id] = self.get(r.incident_id)
            out.append((cache[r.incident_id], notification_from_row(r)))
        return out

    # -- changing ---------------------------------------------------------------------

    def _commit(
        self,
        incident_id: str,
        kind: str,
        actor: str,
        change: Change,
        *,
        detail: dict[str, Any] | None = None,
        counts: dict[str, int] | None = None,
        status: EventStatus = EventStatus.SUCCEEDED,
    ) -> None:
        ids = self._ids() if self._ids is not None else {}
        event = NewEvent(
            kind=kind,
            status=status,
            request_id=incident_id,
            counts=counts or {},
            detail=detail or {},
            actor=actor,
            flow_run_id=ids.get("flow_run_id"),
            task_run_id=ids.get("task_run_id"),
        )
        try:
            with database_errors(kind.removeprefix("incident."), incident_id):
                self._ledger.append_many([event], also=change)
        except TerminalError as e:
            if isinstance(e.__cause__, SAIntegrityError):
                raise TransientError(
                    f"incident {incident_id} changed at the same time; reload it and retry"
                ) from e
            raise

    def _move(
        self, conn: Connection, incident_id: str, expected: Sequence[str], values: dict[str, Any]
    ) -> None:
        """Update the incident only while its state is one of ``expected``."""
        done = conn.execute(
            update(incidents)
            .where(incidents.c.id == incident_id, incidents.c.state.in_(list(expected)))
            .values(updated_at=datetime.now(UTC), **values)
        )
        if done.rowcount != 1:
            raise TransientError(f"incident {incident_id} changed meanwhile; reload it and retry")

    def _require(self, incident_id: str, states: Sequence[str], doing: str) -> Incident:
        found = self.get(incident_id)
        if found.state not in states:
            raise TerminalError(
                f"incident {incident_id} is '{found.state}': cannot {doing} "
                f"(only when {' or '.join(states)})"
            )
        return found

    def _notification_row(self, incident_id: str, audience: str) -> Notification:
        for n in self.notifications(incident_id):
            if n.audience == audience:
                return n
        raise NotFoundError(
            f"incident {incident_id} has no '{audience}' notification; assess it first "
            "(notifications come from the assessment)"
        )

    def closing_problems(self, incident_id: str) -> builtins.list[str]:
        """Why the incident cannot close yet (empty: it can)."""
        found = self.get(incident_id)
        problems = []
        if found.state != BREACH:
            problems.append(
                f"it is '{found.state}' (only a declared breach closes; dismiss a concern)"
            )
        if found.assessment is None and found.state == BREACH:
            problems.append("it has no assessment (run `lifecycle incident assess`)")
        problems += [
            f"the {n.audience} notification is still required (record it sent or exempt)"
            for n in self.notifications(incident_id)
            if n.status == REQUIRED
        ]
        problems += [
            f"action {a.number} is still open (mark it done or waived with a reason)"
            for a in self.actions(incident_id)
            if a.status == OPEN
        ]
        return problems
