"""Request batches and their intents: the batch part of ``state.progress.RequestProgress``.

Exactly-once auditing of a store's work: every batch is written down as an intent
(``record_intents``, with its keys) before it takes effect, then confirmed. A
transactional store's intents are written inside its transaction, just before COMMIT,
and confirmed all at once with the store's phase (``commit_intents``); a
non-transactional store's each when its call returns (``complete_intent``). A crash in
between leaves intents that a rerun settles from what the store shows
(``settle_intents``). Only committed batches are audited (``batches``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Row, and_, insert, select, update

from state.progress_encoding import keys_json
from state.progress_phases import PhaseTaken, executed_stmt
from state.progress_tables import request_batches
from state.register_tables import database_errors


@dataclass(frozen=True)
class BatchRecord:
    """An executed batch as recorded (what the ledger's batch event will say)."""

    store: str
    target: str
    action: str
    affected: int
    keys_digest: str
    reference: str | None = None
    """The store's own reference for the batch (a processor's confirmation), if it gave one;
    a short token, never personal data (the connector checks it)."""


@dataclass(frozen=True)
class BatchIntent:
    """A batch written down before it takes effect: what it will record, and its keys.

    ``intent`` is its index among its attempt's intents (a non-transactional store's
    results name it); ``row`` is the stored row's id once read back.
    """

    record: BatchRecord
    keys: Sequence[Sequence[Any]]  # JSON-ready keys (row keys stay in our own database)
    intent: int
    attempt: int = 0
    row: int = 0


def _batch_row(
    request_id: str, store: str, record: BatchRecord, state: str, now: datetime
) -> dict[str, Any]:
    """A ``request_batches`` row for ``record`` (intents add their attempt and keys)."""
    return {
        "request_id": request_id,
        "store": store,
        "target": record.target,
        "action": record.action,
        "affected": record.affected,
        "keys_digest": record.keys_digest,
        "recorded_at": now,
        "state": state,
        "reference": record.reference,
    }


def _record(row: Row[Any]) -> BatchRecord:
    """The batch a ``request_batches`` row records."""
    return BatchRecord(
        row.store, row.target, row.action, row.affected, row.keys_digest, row.reference
    )


def _open_intents(request_id: str, store: str, attempt: int) -> ColumnElement[bool]:
    """The attempt's intents not yet confirmed or discarded."""
    b = request_batches.c
    return and_(
        b.request_id == request_id, b.store == store, b.attempt == attempt, b.state == "intent"
    )


def _took_effect(done: BatchIntent, batch_keys: str | None) -> dict[str, Any]:
    """Column values that turn an intent into the batch ``done`` says took effect."""
    return {
        "state": "committed",
        "affected": done.record.affected,
        "keys_digest": done.record.keys_digest,
        "batch_keys": batch_keys,
        "reference": done.record.reference,
    }


class BatchProgress:
    """Batch and intent records of request progress (mixed into ``RequestProgress``)."""

    _engine: Engine
    _writer: Engine

    def _batch_rows(self, request_id: str, store: str, state: str) -> Sequence[Row[Any]]:
        """The store's batch rows in ``state``, in the order they were recorded."""
        b = request_batches.c
        query = (
            select(request_batches)
            .where(b.request_id == request_id, b.store == store, b.state == state)
            .order_by(b.id)
        )
        with database_errors("progress", request_id), self._engine.connect() as conn:
            return conn.execute(query).all()

    def record_batch(self, request_id: str, batch: BatchRecord, *, committed: bool) -> None:
        """Record an executed batch; ``committed`` also marks the store executed (same txn)."""
        self.record_batches(request_id, batch.store, [batch], committed=committed)

    def record_batches(
        self, request_id: str, store: str, batches: Sequence[BatchRecord], *, committed: bool
    ) -> None:
        """Record executed batches in one transaction; ``committed`` also marks the store
        executed in it, so a crash never leaves part of a committed store's batches."""
        now = datetime.now(UTC)
        rows = [_batch_row(request_id, b.store, b, "committed", now) for b in batches]
        with database_errors("progress", request_id), self._writer.begin() as conn:
            if rows:
                conn.execute(insert(request_batches), rows)
            if committed:
                conn.execute(executed_stmt(request_id, store, now))

    # -- batch intents (exactly-once auditing of erasures) --------------------------------

    def record_intents(
        self, request_id: str, store: str, attempt: int, intents: Sequence[BatchIntent]
    ) -> None:
        """Write an attempt's batches down before they take effect (one transaction)."""
        now = datetime.now(UTC)
        rows = [
            _batch_row(request_id, store, i.record, "intent", now)
            | {"attempt": attempt, "intent": i.intent, "batch_keys": keys_json(i.keys)}
            for i in intents
        ]
        if not rows:
            return
        with database_errors("progress", request_id), self._writer.begin() as conn:
            conn.execute(insert(request_batches), rows)

    def intents(self, request_id: str, store: str) -> list[BatchIntent]:
        """The store's intents not yet confirmed or discarded (a crash left them), in order."""
        return [
            BatchIntent(
                record=_record(r),
                keys=[tuple(k) for k in json.loads(r.batch_keys or "[]")],
                intent=int(r.intent or 0),
                attempt=int(r.attempt or 0),
                row=int(r.id),
            )
            for r in self._batch_rows(request_id, store, "intent")
        ]

    def commit_intents(self, request_id: str, store: str, attempt: int) -> None:
        """The attempt's transaction committed: its intents are its batches, and the store
        is executed (one transaction)."""
        now = datetime.now(UTC)
        with database_errors("progress", request_id), self._writer.begin() as conn:
            conn.execute(
                update(request_batches)
                .where(_open_intents(request_id, store, attempt))
                .values(state="committed", batch_keys=None)
            )
            conn.execute(executed_stmt(request_id, store, now))

    def complete_intent(self, request_id: str, store: str, attempt: int, done: BatchIntent) -> None:
        """One call of a non-transactional store returned: its intent becomes what it did.

        ``done``: the intent's index, the counts of what the call changed and those keys
        (kept until the request closes, so a rerun knows which keys it already recorded).
        """
        with database_errors("progress", request_id), self._writer.begin() as conn:
            conn.execute(
                update(request_batches)
                .where(
                    _open_intents(request_id, store, attempt),
                    request_batches.c.intent == done.intent,
                )
                .values(**_took_effect(done, keys_json(done.keys)))
            )

    def settle_intents(
        self,
        request_id: str,
        store: str,
        outcome: Mapping[int, BatchIntent | None],
        *,
        executed: bool,
    ) -> None:
        """Settle unconfirmed intents after a crash, in one transaction.

        ``outcome``: intent row id -> what took effect (committed with those counts and
        keys), or None (it never took effect: discarded). ``executed`` also marks the
        store executed.
        """
        b = request_batches.c
        now = datetime.now(UTC)
        with database_errors("progress", request_id), self._writer.begin() as conn:
            for row, done in outcome.items():
                values: dict[str, Any] = {"state": "discarded", "batch_keys": None}
                if done is not None:
                    # a transactional store's batches keep no keys (as in commit_intents)
                    values = _took_effect(done, keys_json(done.keys) if done.keys else None)
                conn.execute(
                    update(request_batches)
                    .where(b.id == row, b.request_id == request_id, b.state == "intent")
                    .values(**values)
                )
            if executed:
                conn.execute(executed_stmt(request_id, store, now))

    def settle_step(
        self,
        request_id: str,
        store: str,
        outcome: Mapping[int, BatchIntent | None],
        *,
        executed: bool,
    ) -> Callable[[Connection], None]:
        """``settle_intents`` as a step of another transaction (a ledger append's ``also``),
        for an operator's answer on a store's intents (a manual processor): ``PhaseTaken``,
        rolling that transaction back, when any of them is no longer open (another run or
        the CLI recorded an answer first)."""
        b = request_batches.c

        def run(conn: Connection) -> None:
            for row, done in outcome.items():
                values: dict[str, Any] = {"state": "discarded", "batch_keys": None}
                if done is not None:
                    values = _took_effect(done, keys_json(done.keys) if done.keys else None)
                settled = conn.execute(
                    update(request_batches)
                    .where(b.id == row, b.request_id == request_id, b.state == "intent")
                    .values(**values)
                )
                if settled.rowcount != 1:
                    raise PhaseTaken(
                        f"request {request_id}: the work awaited in store '{store}' was "
                        "answered meanwhile"
                    )
            if executed:
                conn.execute(executed_stmt(request_id, store, datetime.now(UTC)))

        return run

    def committed_keys(self, request_id: str, store: str) -> set[tuple[Any, ...]]:
        """Keys of the store's committed batches still on record (non-transactional stores)."""
        b = request_batches.c
        query = select(b.batch_keys).where(
            b.request_id == request_id,
            b.store == store,
            b.state == "committed",
            b.batch_keys.is_not(None),
        )
        with database_errors("progress", request_id), self._engine.connect() as conn:
            texts = conn.execute(query).scalars().all()
        return {tuple(k) for text in texts for k in json.loads(text)}

    def batches(self, request_id: str, store: str) -> list[BatchRecord]:
        """The store's executed (committed) batches, in order: what the ledger audits."""
        rows = self._batch_rows(request_id, store, "committed")
        return [_record(r) for r in rows]
