"""Each transfer and posture check's findings, kept so the next run can compare."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from state.check_tables import transfer_checks
from state.register_tables import database_errors


def new_check_id() -> str:
    """``chk_`` + 16 hex digits (the shape of request ids, so the ledger filters by it)."""
    return "chk_" + secrets.token_hex(8)


@dataclass(frozen=True)
class CheckRun:
    """One recorded check."""

    id: str
    checked_at: datetime
    findings: list[dict[str, Any]]
    total: int
    high: int


class TransferChecks:
    """Reads and records check runs in the audit database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"TransferChecks(backend={self._engine.dialect.name!r})"

    def recent(self, limit: int = 2) -> list[CheckRun]:
        """The most recent runs, newest first."""
        t = transfer_checks.c
        query = select(transfer_checks).order_by(t.checked_at.desc()).limit(limit)
        with database_errors("transfer check read"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [CheckRun(r.id, r.checked_at, json.loads(r.findings), r.total, r.high) for r in rows]

    def latest(self) -> CheckRun | None:
        """The most recent run, or None before the first."""
        runs = self.recent(1)
        return runs[0] if runs else None

    @staticmethod
    def record(
        check_id: str, findings: list[dict[str, Any]], flow_run_id: str | None
    ) -> Callable[[Connection], None]:
        """The statement storing a run's findings, for ``Ledger.append_many(also=...)``.

        Stored in the same transaction as the run's ledger events: a run is compared
        against next time exactly when it was audited.
        """
        high = sum(1 for f in findings if f["severity"] == "high")

        def run(conn: Connection) -> None:
            conn.execute(
                insert(transfer_checks).values(
                    id=check_id,
                    checked_at=datetime.now(UTC),
                    findings=json.dumps(findings, separators=(",", ":"), sort_keys=True),
                    total=len(findings),
                    high=high,
                    flow_run_id=flow_run_id,
                )
            )

        return run
