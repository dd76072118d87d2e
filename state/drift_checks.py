"""Each inventory-drift run's findings, kept so the next run can compare (as transfer checks).

``drift_checks``: one row per run with its findings as JSON (tables, columns, buckets and
prefixes by name, counts and kinds of sampled values: never a value), so the next run can
say which findings are new, persisting or resolved. Migration ``0014_drift_checks``
creates it; keep them in step.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Connection, Engine, Index, Integer, String, Table, insert, select

from audit.tables import MYSQL_TABLE_ARGS, UTCDateTime, metadata
from state.progress_tables import long_text
from state.register_tables import ID_LEN, database_errors

drift_checks = Table(
    "drift_checks",
    metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("checked_at", UTCDateTime(), nullable=False),
    Column("findings", long_text(), nullable=False),  # JSON list of findings
    Column("total", Integer(), nullable=False),
    Column("high", Integer(), nullable=False),
    Column("flow_run_id", String(36), nullable=True),
    Index("ix_drift_checks_checked_at", "checked_at"),
    **MYSQL_TABLE_ARGS,
)


def new_drift_id() -> str:
    """``drf_`` + 16 hex digits (the shape of request ids, so the ledger filters by it)."""
    return "drf_" + secrets.token_hex(8)


@dataclass(frozen=True)
class DriftRun:
    """One recorded drift run."""

    id: str
    checked_at: datetime
    findings: list[dict[str, Any]]
    total: int
    high: int


class DriftChecks:
    """Reads and records drift runs in the audit database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"DriftChecks(backend={self._engine.dialect.name!r})"

    def recent(self, limit: int = 2) -> list[DriftRun]:
        """The most recent runs, newest first."""
        t = drift_checks.c
        query = select(drift_checks).order_by(t.checked_at.desc(), t.id.desc()).limit(limit)
        with database_errors("drift check read"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [DriftRun(r.id, r.checked_at, json.loads(r.findings), r.total, r.high) for r in rows]

    def latest(self) -> DriftRun | None:
        """The most recent run, or None before the first."""
        runs = self.recent(1)
        return runs[0] if runs else None

    @staticmethod
    def record(
        check_id: str, findings: list[dict[str, Any]], flow_run_id: str | None
    ) -> Callable[[Connection], None]:
        """The statement storing a run's findings, for ``Ledger.append_many(also=...)``:
        stored in the transaction of the run's ledger events, so a run is compared against
        next time exactly when it was audited."""
        high = sum(1 for f in findings if f["severity"] == "high")

        def run(conn: Connection) -> None:
            conn.execute(
                insert(drift_checks).values(
                    id=check_id,
                    checked_at=datetime.now(UTC),
                    findings=json.dumps(findings, separators=(",", ":"), sort_keys=True),
                    total=len(findings),
                    high=high,
                    flow_run_id=flow_run_id,
                )
            )

        return run
