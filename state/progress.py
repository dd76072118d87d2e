"""How far each data-subject request got, per store: our own record for resuming after a crash.

A request moves each store through phases (located, planned, approved, executed,
verified; or skipped). Each phase is recorded as soon as it is reached, together with
what a rerun needs to continue from it: the findings and plan (row keys, which stay in
our own database), the derived identities (sealed with AES-GCM under the identity key),
and every executed batch, written down as an intent before it takes effect. Writes are
compare-and-set on the phase, so a phase never goes backwards and two runs cannot both
claim the same step. When the request closes,
``forget`` clears keys, identities and the passphrase; counts, digests and phases stay.

``RequestProgress`` reads progress here and writes it through its parts:
``state.progress_planning`` (located, planned), ``state.progress_execution`` (approved,
executed, verified) and ``state.progress_batches`` (batches and their intents), on the
phases of ``state.progress_phases``.

Findings and plans arrive as plain JSON-ready data (``connectors.base`` converts them):
the audit package does not depend on connectors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, Row, select, update

from core.engines import IMMEDIATE, reclaim_storage
from core.errors import TerminalError
from core.keys import KeyRing
from state.progress_batches import BatchIntent, BatchProgress, BatchRecord
from state.progress_encoding import open_derived
from state.progress_execution import ExecutionRecords
from state.progress_phases import Phase, of_store
from state.progress_planning import PlanningRecords
from state.progress_tables import PROGRESS_TABLES, request_batches, request_progress
from state.register_tables import database_errors
from state.request_runs import RequestRuns

# Phase and the batch types are re-exported: callers import them from here.
__all__ = ["BatchIntent", "BatchRecord", "Phase", "RequestProgress", "StoreProgress"]


@dataclass(frozen=True)
class StoreProgress:
    """One store's progress in one request: phase, counts and digests (never keys)."""

    store: str
    position: int
    phase: Phase
    skip_reason: str | None
    counts: Mapping[str, int]  # matches per target when located
    plan_digest: str | None
    plan_summary: Sequence[Mapping[str, Any]]  # target, action, count, reason, until
    attempts: int
    batches_audited: bool
    verification: Mapping[str, Mapping[str, int]] | None
    updated_at: datetime
    located_at: datetime | None = None
    """When the findings the plan is made from were read from the store."""

    @property
    def found(self) -> int:
        return sum(self.counts.values())


class RequestProgress(PlanningRecords, ExecutionRecords, BatchProgress):
    """Reads and advances request progress in the audit database."""

    def __init__(self, engine: Engine, keys: KeyRing) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{IMMEDIATE: True})
        self._identity = AESGCM(keys.identity_aes)
        self.runs = RequestRuns(engine, keys)

    def __repr__(self) -> str:
        return f"RequestProgress(backend={self._engine.dialect.name!r})"

    # -- reading --------------------------------------------------------------------------

    def _rows(self, request_id: str, before: int | None = None) -> Sequence[Row[Any]]:
        """The request's store rows in inventory order (only those before ``before``)."""
        query = select(request_progress).where(request_progress.c.request_id == request_id)
        if before is not None:
            query = query.where(request_progress.c.position < before)
        with database_errors("progress", request_id), self._engine.connect() as conn:
            return conn.execute(query.order_by(request_progress.c.position)).all()

    def stores(self, request_id: str) -> list[StoreProgress]:
        """Every store's progress, in inventory order."""
        return [
            StoreProgress(
                store=row.store,
                position=row.position,
                phase=Phase(row.phase),
                skip_reason=row.skip_reason,
                counts=json.loads(row.counts),
                plan_digest=row.plan_digest,
                plan_summary=json.loads(row.plan_summary) if row.plan_summary else [],
                attempts=row.attempts,
                batches_audited=bool(row.batches_audited),
                verification=json.loads(row.verification) if row.verification else None,
                updated_at=row.updated_at,
                located_at=row.located_at,
            )
            for row in self._rows(request_id)
        ]

    def store(self, request_id: str, store: str) -> StoreProgress | None:
        return next((s for s in self.stores(request_id) if s.store == store), None)

    def _row(self, request_id: str, store: str) -> Any:
        query = select(request_progress).where(of_store(request_id, store))
        with database_errors("progress", request_id), self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise TerminalError(f"request {request_id} has no progress for store '{store}'")
        return row

    def _recorded(self, request_id: str, store: str, column: str, gone: str) -> dict[str, Any]:
        """The JSON data in ``column`` of the store's row; TerminalError ``gone`` when the
        request's close cleared it (or it was never recorded)."""
        text = getattr(self._row(request_id, store), column)
        if text is None:
            raise TerminalError(gone)
        data: dict[str, Any] = json.loads(text)
        return data

    def findings(self, request_id: str, store: str) -> dict[str, Any]:
        """The findings data recorded for ``store`` (as given to ``record_located``)."""
        gone = f"the findings of request {request_id} were destroyed"
        return self._recorded(request_id, store, "findings", gone)

    def derived_identities(
        self, request_id: str, before: int | None = None
    ) -> dict[str, frozenset[str]]:
        """Identities derived by the stores located so far (only those before ``before``)."""
        merged: dict[str, frozenset[str]] = {}
        for row in self._rows(request_id, before):
            for kind, values in open_derived(self._identity, request_id, row).items():
                merged[kind] = merged.get(kind, frozenset()) | values
        return merged

    def plan(self, request_id: str, store: str) -> dict[str, Any]:
        """The JSON form of the plan recorded for ``store``."""
        gone = f"request {request_id} has no recorded plan for store '{store}'"
        return self._recorded(request_id, store, "plan", gone)

    # -- closing --------------------------------------------------------------------------

    def forget(self, request_id: str) -> None:
        """Clear findings, plans, derived identities and the passphrase of a closing request."""
        now = datetime.now(UTC)
        with database_errors("progress", request_id), self._writer.begin() as conn:
            conn.execute(
                update(request_progress)
                .where(request_progress.c.request_id == request_id)
                .values(
                    findings=None,
                    plan=None,
                    derived_nonce=None,
                    derived_ciphertext=None,
                    updated_at=now,
                )
            )
            conn.execute(
                update(request_batches)
                .where(request_batches.c.request_id == request_id)
                .values(batch_keys=None)
            )
        self.runs.forget(request_id)

    def vacuum(self) -> None:
        """PostgreSQL keeps cleared values in dead tuples until VACUUM; run it on our tables.

        SQLite needs nothing extra (secure_delete, and the register's close truncates the
        WAL); MariaDB's InnoDB purges old row versions itself.
        """
        if self._engine.dialect.name != "postgresql":
            return
        with database_errors("vacuum"):
            reclaim_storage(self._engine, PROGRESS_TABLES)
