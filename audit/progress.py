"""How far each data-subject request got, per store: our own record for resuming after a crash.

A request moves each store through phases (located, planned, approved, executed,
verified; or skipped). Each phase is recorded as soon as it is reached, together with
what a rerun needs to continue from it: the findings and plan (row keys, which stay in
our own database), the derived identities (sealed with AES-GCM under the identity key),
and every executed batch, written down as an intent before it takes effect. Writes are
compare-and-set on the phase, so a phase never goes backwards and two runs cannot both
claim the same step. When the request closes,
``forget`` clears keys, identities and the passphrase; counts, digests and phases stay.

Batches and their intents are read and written by ``audit.progress_batches``.

Findings and plans arrive as plain JSON-ready data (``connectors.base`` converts them):
the audit package does not depend on connectors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from audit.progress_batches import BatchIntent, BatchProgress, BatchRecord
from audit.progress_tables import PROGRESS_TABLES, request_batches, request_progress
from audit.register_tables import database_errors
from audit.request_runs import RequestRuns, seal, seal_aad, unseal
from core.engines import IMMEDIATE, reclaim_storage
from core.errors import TerminalError
from core.keys import KeyRing

__all__ = ["BatchIntent", "BatchRecord", "Phase", "RequestProgress", "StoreProgress"]


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

    @property
    def found(self) -> int:
        return sum(self.counts.values())


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class RequestProgress(BatchProgress):
    """Reads and advances request progress in the audit database."""

    def __init__(self, engine: Engine, keys: KeyRing) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{IMMEDIATE: True})
        self._identity = AESGCM(keys.identity_aes)
        self.runs = RequestRuns(engine, keys)

    def __repr__(self) -> str:
        return f"RequestProgress(backend={self._engine.dialect.name!r})"

    # -- store level ----------------------------------------------------------------------

    def stores(self, request_id: str) -> list[StoreProgress]:
        """Every store's progress, in inventory order."""
        query = (
            select(request_progress)
            .where(request_progress.c.request_id == request_id)
            .order_by(request_progress.c.position)
        )
        with database_errors("progress", request_id), self._engine.connect() as conn:
            rows = conn.execute(query).all()
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
            )
            for row in rows
        ]

    def store(self, request_id: str, store: str) -> StoreProgress | None:
        return next((s for s in self.stores(request_id) if s.store == store), None)

    def _insert_store(self, request_id: str, store: str, position: int, **values: Any) -> None:
        now = datetime.now(UTC)
        row = {
            "request_id": request_id,
            "store": store,
            "position": position,
            "attempts": 0,
            "batches_audited": False,
            "updated_at": now,
            **values,
        }
        with database_errors("progress", request_id):
            try:
                with self._writer.begin() as conn:
                    conn.execute(insert(request_progress).values(**row))
            except DbIntegrityError:
                pass  # recorded by an earlier run: phases never go backwards

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
        with database_errors("progress", request_id), self._writer.begin() as conn:
            step(conn)

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
        plain = _dumps({k: sorted(v) for k, v in derived.items()}).encode()
        aad = seal_aad("request-derived", request_id, store)
        nonce, sealed = seal(self._identity, aad, plain)
        now = datetime.now(UTC)
        row = {
            "request_id": request_id,
            "store": store,
            "position": position,
            "attempts": 0,
            "batches_audited": False,
            "updated_at": now,
            "phase": Phase.LOCATED.value,
            "counts": _dumps(dict(counts)),
            "findings": _dumps(findings),
            "derived_nonce": nonce,
            "derived_ciphertext": sealed,
            "located_at": now,
        }
        p = request_progress.c

        def run(conn: Connection) -> None:
            found = select(p.phase).where(p.request_id == request_id, p.store == store)
            if conn.execute(found).first() is None:  # recorded by an earlier run: keep it
                conn.execute(insert(request_progress).values(**row))

        return run

    def record_skipped(self, request_id: str, store: str, position: int, reason: str) -> None:
        self._insert_store(
            request_id,
            store,
            position,
            phase=Phase.SKIPPED.value,
            skip_reason=reason,
            counts=_dumps({}),
        )

    def _row(self, request_id: str, store: str) -> Any:
        query = select(request_progress).where(
            request_progress.c.request_id == request_id, request_progress.c.store == store
        )
        with database_errors("progress", request_id), self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise TerminalError(f"request {request_id} has no progress for store '{store}'")
        return row

    def findings(self, request_id: str, store: str) -> dict[str, Any]:
        """The findings data recorded for ``store`` (as given to ``record_located``)."""
        row = self._row(request_id, store)
        if row.findings is None:
            raise TerminalError(f"the findings of request {request_id} were destroyed")
        data: dict[str, Any] = json.loads(row.findings)
        return data

    def _derived(self, request_id: str, row: Any) -> dict[str, frozenset[str]]:
        if row.derived_ciphertext is None:
            return {}
        aad = seal_aad("request-derived", request_id, row.store)
        plain = unseal(self._identity, aad, row.derived_nonce, row.derived_ciphertext)
        return {k: frozenset(v) for k, v in json.loads(plain).items()}

    def derived_identities(
        self, request_id: str, before: int | None = None
    ) -> dict[str, frozenset[str]]:
        """Identities derived by the stores located so far (only those before ``before``)."""
        query = select(request_progress).where(request_progress.c.request_id == request_id)
        if before is not None:
            query = query.where(request_progress.c.position < before)
        with database_errors("progress", request_id), self._engine.connect() as conn:
            rows = conn.execute(query.order_by(request_progress.c.position)).all()
        merged: dict[str, frozenset[str]] = {}
        for row in rows:
            for kind, values in self._derived(request_id, row).items():
                merged[kind] = merged.get(kind, frozenset()) | values
        return merged

    def _advance(
        self, request_id: str, store: str, allowed: Sequence[Phase], **values: Any
    ) -> bool:
        """Compare-and-set: apply ``values`` only while the phase is one of ``allowed``."""
        values["updated_at"] = datetime.now(UTC)
        stmt = (
            update(request_progress)
            .where(
                request_progress.c.request_id == request_id,
                request_progress.c.store == store,
                request_progress.c.phase.in_([p.value for p in allowed]),
            )
            .values(**values)
        )
        with database_errors("progress", request_id), self._writer.begin() as conn:
            return int(conn.execute(stmt).rowcount) == 1

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
        return self._advance(
            request_id,
            store,
            [Phase.LOCATED],
            phase=Phase.PLANNED.value,
            plan=_dumps(plan),
            plan_digest=digest,
            plan_summary=_dumps(list(summary)),
            planned_at=datetime.now(UTC),
        )

    def plan(self, request_id: str, store: str) -> dict[str, Any]:
        """The JSON form of the plan recorded for ``store``."""
        row = self._row(request_id, store)
        if row.plan is None:
            raise TerminalError(f"request {request_id} has no recorded plan for store '{store}'")
        data: dict[str, Any] = json.loads(row.plan)
        return data

    def record_replan(
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
    ) -> bool:
        """Replace a planned or approved (not executed) store's findings and plan.

        A fresh locate found the store changed since it was planned. ``phase`` is
        ``PLANNED`` when the new plan needs approval again, else the phase it had. False
        when the store was executed (or skipped) meanwhile: then nothing changes.
        """
        plain = _dumps({k: sorted(v) for k, v in derived.items()}).encode()
        nonce, sealed = seal(self._identity, seal_aad("request-derived", request_id, store), plain)
        now = datetime.now(UTC)
        return self._advance(
            request_id,
            store,
            [Phase.PLANNED, Phase.APPROVED],
            phase=phase.value,
            counts=_dumps(dict(counts)),
            findings=_dumps(findings),
            derived_nonce=nonce,
            derived_ciphertext=sealed,
            plan=_dumps(plan),
            plan_digest=digest,
            plan_summary=_dumps(list(summary)),
            located_at=now,
            planned_at=now,
        )

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
        with database_errors("progress", request_id), self._writer.begin() as conn:
            before = conn.execute(
                select(request_progress.c.attempts).where(
                    request_progress.c.request_id == request_id,
                    request_progress.c.store == store,
                )
            ).scalar_one()
            conn.execute(
                update(request_progress)
                .where(
                    request_progress.c.request_id == request_id,
                    request_progress.c.store == store,
                )
                .values(attempts=before + 1, updated_at=datetime.now(UTC))
            )
        return int(before)

    @staticmethod
    def _executed_stmt(request_id: str, store: str, now: datetime) -> Any:
        return (
            update(request_progress)
            .where(
                request_progress.c.request_id == request_id,
                request_progress.c.store == store,
                request_progress.c.phase.in_(
                    [Phase.LOCATED.value, Phase.PLANNED.value, Phase.APPROVED.value]
                ),
            )
            .values(phase=Phase.EXECUTED.value, executed_at=now, updated_at=now)
        )

    def mark_executed(self, request_id: str, store: str) -> None:
        with database_errors("progress", request_id), self._writer.begin() as conn:
            conn.execute(self._executed_stmt(request_id, store, datetime.now(UTC)))

    def mark_batches_audited(self, request_id: str, store: str) -> None:
        self._advance(request_id, store, [Phase.EXECUTED, Phase.VERIFIED], batches_audited=True)

    def record_verification(
        self, request_id: str, store: str, counts: Mapping[str, Mapping[str, int]], *, clean: bool
    ) -> None:
        """Record a re-scan (``counts``: remaining/deferred/masked per target).

        The store is verified only when ``clean``: nothing that should be gone is left.
        """
        step = self.verification_step(request_id, store, counts, clean=clean)
        with database_errors("progress", request_id), self._writer.begin() as conn:
            step(conn)

    def verification_step(
        self, request_id: str, store: str, counts: Mapping[str, Mapping[str, int]], *, clean: bool
    ) -> Callable[[Connection], None]:
        """``record_verification`` as a statement for ``Ledger.append_many(also=...)``, so
        the "verified" event and the progress row commit together."""
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "verification": _dumps({k: dict(v) for k, v in counts.items()}),
            "updated_at": now,
        }
        if clean:
            values.update(phase=Phase.VERIFIED.value, verified_at=now)
        p = request_progress.c
        stmt = (
            update(request_progress)
            .where(
                p.request_id == request_id,
                p.store == store,
                p.phase.in_([Phase.EXECUTED.value, Phase.VERIFIED.value]),
            )
            .values(**values)
        )

        def run(conn: Connection) -> None:
            conn.execute(stmt)

        return run

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
