"""What locating and planning a store record: its findings, derived identities and plan.

The part of ``state.progress.RequestProgress`` that writes a store's first phases; what a
rerun needs to continue (findings and plan with the store's row keys, sealed derived
identities) is kept until the request closes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from state.progress_encoding import dumps, seal_derived
from state.progress_phases import Phase, PhaseTaken, PhaseWriter, advance_stmt, of_store
from state.progress_tables import request_progress
from state.register_tables import database_errors


def _first_row(
    request_id: str, store: str, position: int, now: datetime, **values: Any
) -> dict[str, Any]:
    """A store's progress row as first recorded: no attempts yet, no batch audited."""
    return {
        "request_id": request_id,
        "store": store,
        "position": position,
        "attempts": 0,
        "batches_audited": False,
        "updated_at": now,
        **values,
    }


def _planned(
    plan: Mapping[str, Any], digest: str, summary: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    return {"plan": dumps(plan), "plan_digest": digest, "plan_summary": dumps(list(summary))}


class PlanningRecords(PhaseWriter):
    """Records a store located (or skipped) and planned (mixed into ``RequestProgress``)."""

    _identity: AESGCM  # seals derived identities

    def _located(
        self,
        request_id: str,
        store: str,
        counts: Mapping[str, int],
        findings: Mapping[str, Any],
        derived: Mapping[str, Iterable[str]],
    ) -> dict[str, Any]:
        return {
            "counts": dumps(dict(counts)),
            "findings": dumps(findings),
            **seal_derived(self._identity, request_id, store, derived),
        }

    def record_located(
        self,
        request_id: str,
        store: str,
        position: int,
        *,
        counts: Mapping[str, int],
        findings: Mapping[str, Any],
        derived: Mapping[str, Iterable[str]],
    ) -> None:
        """Record what ``store`` holds for the subject (first time only).

        ``findings`` is JSON-ready data with the store's row keys; ``derived`` (identities
        for later stores) is sealed under the identity key.
        """
        step = self.located_step(
            request_id, store, position, counts=counts, findings=findings, derived=derived
        )
        self._write(request_id, step)

    def located_step(
        self,
        request_id: str,
        store: str,
        position: int,
        *,
        counts: Mapping[str, int],
        findings: Mapping[str, Any],
        derived: Mapping[str, Iterable[str]],
    ) -> Callable[[Connection], None]:
        """``record_located`` as statements for ``Ledger.append_many(also=...)``, so the
        store's "located" event and its progress row commit together (first time only)."""
        now = datetime.now(UTC)
        row = _first_row(
            request_id,
            store,
            position,
            now,
            phase=Phase.LOCATED.value,
            located_at=now,
            **self._located(request_id, store, counts, findings, derived),
        )
        found = select(request_progress.c.phase).where(of_store(request_id, store))

        def run(conn: Connection) -> None:
            if conn.execute(found).first() is None:  # recorded by an earlier run: keep it
                conn.execute(insert(request_progress).values(**row))

        return run

    def record_skipped(self, request_id: str, store: str, position: int, reason: str) -> None:
        row = _first_row(
            request_id,
            store,
            position,
            datetime.now(UTC),
            phase=Phase.SKIPPED.value,
            skip_reason=reason,
            counts=dumps({}),
        )
        with database_errors("progress", request_id):
            try:
                with self._writer.begin() as conn:
                    conn.execute(insert(request_progress).values(**row))
            except DbIntegrityError:
                pass  # recorded by an earlier run: phases never go backwards

    def record_plan(
        self,
        request_id: str,
        store: str,
        *,
        plan: Mapping[str, Any],
        digest: str,
        summary: Sequence[Mapping[str, Any]],
    ) -> bool:
        """Record the plan of a located store; False when it was planned before.

        ``plan`` is the JSON form (with row keys, for resuming); ``summary`` its steps
        with counts only (target, action, count, reason, until), kept after close.
        """
        try:
            self._write(request_id, self.planned_step(request_id, store, plan, digest, summary))
        except PhaseTaken:
            return False
        return True

    def planned_step(
        self,
        request_id: str,
        store: str,
        plan: Mapping[str, Any],
        digest: str,
        summary: Sequence[Mapping[str, Any]],
    ) -> Callable[[Connection], None]:
        """``record_plan`` as a statement for ``Ledger.append_many(also=...)``: the plan and
        its "planned" event commit together, or (PhaseTaken: planned before) neither."""
        values = {
            "phase": Phase.PLANNED.value,
            "planned_at": datetime.now(UTC),
            "updated_at": datetime.now(UTC),
            **_planned(plan, digest, summary),
        }
        stmt = advance_stmt(request_id, store, [Phase.LOCATED], values)

        def run(conn: Connection) -> None:
            if conn.execute(stmt).rowcount != 1:
                raise PhaseTaken(f"store {store!r} was planned before", request_id=request_id)

        return run

    def replanned_step(
        self,
        request_id: str,
        store: str,
        *,
        phase: Phase,
        counts: Mapping[str, int],
        findings: Mapping[str, Any],
        derived: Mapping[str, Iterable[str]],
        plan: Mapping[str, Any],
        digest: str,
        summary: Sequence[Mapping[str, Any]],
    ) -> Callable[[Connection], None]:
        """Replace a planned or approved (not executed) store's findings and plan, as a
        statement for ``Ledger.append_many(also=...)``: the new plan and its "replanned"
        event commit together, or neither (PhaseTaken: the store was executed meanwhile).

        A fresh locate found the store changed since it was planned. ``phase`` is
        ``PLANNED`` when the new plan needs approval again, else the phase it had.
        """
        now = datetime.now(UTC)
        values = {
            "phase": phase.value,
            "located_at": now,
            "planned_at": now,
            "updated_at": now,
            **self._located(request_id, store, counts, findings, derived),
            **_planned(plan, digest, summary),
        }
        stmt = advance_stmt(request_id, store, [Phase.PLANNED, Phase.APPROVED], values)

        def run(conn: Connection) -> None:
            if conn.execute(stmt).rowcount != 1:
                raise PhaseTaken(f"store {store!r} was executed meanwhile", request_id=request_id)

        return run
