"""What approving, executing and verifying a store record in its progress.

The part of ``state.progress.RequestProgress`` that writes a store's later phases; the
executed batches themselves are recorded by ``state.progress_batches``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, update

from state.progress_encoding import dumps
from state.progress_phases import Phase, PhaseWriter, advance_stmt, executed_stmt, of_store
from state.progress_tables import request_progress
from state.register_tables import database_errors


class ExecutionRecords(PhaseWriter):
    """Records approval, attempts, execution and verification (mixed into
    ``RequestProgress``)."""

    def mark_approved(self, request_id: str) -> None:
        """Every planned store of the request is approved (one statement)."""
        stmt = (
            update(request_progress)
            .where(
                request_progress.c.request_id == request_id,
                request_progress.c.phase == Phase.PLANNED.value,
            )
            .values(phase=Phase.APPROVED.value, updated_at=datetime.now(UTC))
        )
        with database_errors("progress", request_id), self._writer.begin() as conn:
            conn.execute(stmt)

    def begin_attempt(self, request_id: str, store: str) -> int:
        """Count an execution attempt; returns how many were made before this one."""
        row = of_store(request_id, store)
        with database_errors("progress", request_id), self._writer.begin() as conn:
            before = conn.execute(select(request_progress.c.attempts).where(row)).scalar_one()
            conn.execute(
                update(request_progress)
                .where(row)
                .values(attempts=before + 1, updated_at=datetime.now(UTC))
            )
        return int(before)

    def mark_executed(self, request_id: str, store: str) -> None:
        with database_errors("progress", request_id), self._writer.begin() as conn:
            conn.execute(executed_stmt(request_id, store, datetime.now(UTC)))

    def mark_batches_audited(self, request_id: str, store: str) -> None:
        self._advance(request_id, store, [Phase.EXECUTED, Phase.VERIFIED], batches_audited=True)

    def record_verification(
        self, request_id: str, store: str, counts: Mapping[str, Mapping[str, int]], *, clean: bool
    ) -> None:
        """Record a re-scan (``counts``: remaining/deferred/masked per target).

        The store is verified only when ``clean``: nothing that should be gone is left.
        """
        self._write(request_id, self.verification_step(request_id, store, counts, clean=clean))

    def verification_step(
        self, request_id: str, store: str, counts: Mapping[str, Mapping[str, int]], *, clean: bool
    ) -> Callable[[Connection], None]:
        """``record_verification`` as a statement for ``Ledger.append_many(also=...)``, so
        the "verified" event and the progress row commit together."""
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "verification": dumps({k: dict(v) for k, v in counts.items()}),
            "updated_at": now,
        }
        if clean:
            values.update(phase=Phase.VERIFIED.value, verified_at=now)
        stmt = advance_stmt(request_id, store, [Phase.EXECUTED, Phase.VERIFIED], values)

        def run(conn: Connection) -> None:
            conn.execute(stmt)

        return run
