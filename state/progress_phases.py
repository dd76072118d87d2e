"""A store's phases in a request, and the compare-and-set that moves it through them.

Every write that advances a phase names the phases it may start from, so a phase never
goes backwards and two runs cannot both take the same step: the later one changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Update, and_, update

from core.errors import TerminalError
from state.progress_tables import request_progress
from state.register_tables import database_errors


class PhaseTaken(TerminalError):
    """Another run took this step first: the event that was to record it rolls back."""


class Phase(StrEnum):
    """How far one store got; the order of ``ORDER`` is the order of the work."""

    LOCATED = "located"
    PLANNED = "planned"
    APPROVED = "approved"
    EXECUTED = "executed"
    VERIFIED = "verified"
    SKIPPED = "skipped"  # the store's type has no connector yet

    def reached(self, other: Phase) -> bool:
        """Whether this phase is ``other`` or later (skipped reaches nothing)."""
        return self in ORDER and ORDER.index(self) >= ORDER.index(other)


ORDER = (Phase.LOCATED, Phase.PLANNED, Phase.APPROVED, Phase.EXECUTED, Phase.VERIFIED)


def of_store(request_id: str, store: str) -> ColumnElement[bool]:
    """The progress row of ``store`` in request ``request_id``."""
    p = request_progress.c
    return and_(p.request_id == request_id, p.store == store)


def advance_stmt(
    request_id: str, store: str, allowed: Sequence[Phase], values: Mapping[str, Any]
) -> Update:
    """Apply ``values`` to the store's row only while its phase is one of ``allowed``."""
    return (
        update(request_progress)
        .where(
            of_store(request_id, store),
            request_progress.c.phase.in_([phase.value for phase in allowed]),
        )
        .values(**values)
    )


def executed_stmt(request_id: str, store: str, now: datetime) -> Update:
    """Mark the store executed unless it already is. Batch records commit it in the same
    transaction as the store's batches (``state.progress_batches``)."""
    values = {"phase": Phase.EXECUTED.value, "executed_at": now, "updated_at": now}
    return advance_stmt(request_id, store, [Phase.LOCATED, Phase.PLANNED, Phase.APPROVED], values)


class PhaseWriter:
    """What the store-level records share: their database and one-transaction writes."""

    _engine: Engine
    _writer: Engine  # begins IMMEDIATE on SQLite: concurrent writers wait, never fail late

    def _write(self, request_id: str, step: Callable[[Connection], None]) -> None:
        """Run ``step`` in a transaction of its own (the ``*_step`` methods' plain form)."""
        with database_errors("progress", request_id), self._writer.begin() as conn:
            step(conn)

    def _advance(
        self, request_id: str, store: str, allowed: Sequence[Phase], **values: Any
    ) -> bool:
        """Compare-and-set: apply ``values`` only while the phase is one of ``allowed``."""
        values["updated_at"] = datetime.now(UTC)
        stmt = advance_stmt(request_id, store, allowed, values)
        with database_errors("progress", request_id), self._writer.begin() as conn:
            return int(conn.execute(stmt).rowcount) == 1
