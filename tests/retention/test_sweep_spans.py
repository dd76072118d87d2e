"""Range-mode sweeps on PostgreSQL by key span, the verification's count, and the audit writes
a batch costs (issue 15).

``audit: range`` on a single integer key: a batch is the DELETE of the next ``size`` key
values after the cursor (no key read), falling back to index windows where keys or expired
rows are sparse; the counts stay exact and held rows stay. The count after the batches
(``SqlSweeper.recount``) equals ``counts``. ``run_range`` writes a batch's ledger event in
the audit transaction of the next batch's intent: one audit commit per batch, every batch
audited once, and a range that stops (normally or on an error) audits its last batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from config.loader import load_config
from connectors.base import Key, SweepBatch, Sweeper
from connectors.sql.schema import StoreSchema
from connectors.sql.sweep import SqlSweeper
from core.engines import make_engine
from engine.sweep_runner import SWEEP_ACTOR, SweepContext, run_range
from retention.targets import Clock, Condition, SweepTarget
from state.sweeps import BatchRange, SweepProgress, SweepRun
from tests.config.conftest import DEMO_DIR

NOW = datetime(2026, 3, 15, 12, 0)
OLD, NEW = NOW - timedelta(days=400), NOW


def _target(audit: Literal["keys", "range"] = "range") -> SweepTarget:
    return SweepTarget(
        audit=audit,
        id="s.logs:delete",
        kind="sql",
        store="s",
        label="s.logs",
        action="delete",
        table="logs",
        conditions=(Condition("r", "90d", 90, Clock("at"), NOW - timedelta(days=90)),),
    )


def _logs(
    engine: Engine, rows: Mapping[int, datetime], held: frozenset[Key] = frozenset()
) -> tuple[SqlSweeper, sa.Table]:
    """A PostgreSQL ``logs`` table holding ``rows`` (id -> time), swept in range mode."""
    md = sa.MetaData()
    logs = sa.Table(
        "logs",
        md,
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(logs), [{"id": i, "at": at} for i, at in rows.items()])
    schema = StoreSchema("s", "postgresql", {"logs": logs}, {"logs": ("id",)}, ())
    sweeper = SqlSweeper(engine, schema, _target(), masker=None, held_keys=held)  # type: ignore[arg-type]
    return sweeper, logs


def _ids(engine: Engine, logs: sa.Table) -> list[int]:
    with engine.connect() as conn:
        return sorted(int(r[0]) for r in conn.execute(sa.select(logs.c.id)))


def _sweep(sweeper: SqlSweeper, size: int, stop_at: int | None = None) -> list[SweepBatch]:
    recorded: list[SweepBatch] = []
    cursor: Key | None = None
    while (batch := sweeper.delete_next(cursor, size, recorded.append)) is not None:
        assert batch.lo == cursor and batch.keys_digest == "" and batch.count > 0
        cursor = batch.hi
        if stop_at is not None and sum(b.count for b in recorded) >= stop_at:
            break
    return recorded


def _n(key: Key | None, default: int = -(2**62)) -> int:
    """A key's integer (``default`` for None: before every key)."""
    return default if key is None else int(str(key[0]))


def _exact(recorded: list[SweepBatch], expired: list[int]) -> None:
    """Each batch's count is what lay, expired and unheld, in its range."""
    assert sum(b.count for b in recorded) == len(expired)
    for b in recorded:
        assert b.count == len([i for i in expired if _n(b.lo) < i <= _n(b.hi)])


@pytest.mark.service
def test_time_ordered_rows_go_in_key_spans_without_reading_keys(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = {i: OLD if i <= 200 else NEW for i in range(1, 301)}
    engine = make_engine(pg_url)
    sweeper, logs = _logs(engine, rows, held=frozenset({(50,)}))
    windows: list[bool] = []
    window_delete = sweeper._window_delete

    def spy(cursor: Key | None, size: int, before: Any, *, dense: bool) -> Any:
        windows.append(dense)
        return window_delete(cursor, size, before, dense=dense)

    monkeypatch.setattr(sweeper, "_window_delete", spy)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    recorded = _sweep(sweeper, 20, stop_at=199)  # as run_range stops at the plan's count

    expired = [i for i in range(1, 201) if i != 50]
    _exact(recorded, expired)
    assert [b.hi for b in recorded] == [(i,) for i in range(20, 201, 20)]  # 20 key values each
    assert windows == []
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1  # the key range, once (no window read per batch)
    assert _ids(engine, logs) == [50, *range(201, 301)]
    engine.dispose()


@pytest.mark.service
@pytest.mark.parametrize("layout", ["gaps", "sparse_expired", "interleaved", "new_first"])
def test_spans_fall_back_to_windows_and_stay_exact(pg_url: str, layout: str) -> None:
    """Keys far apart, few rows expired, every other row, or the new rows first: every
    expired row goes, counts are exact, and batches stay near ``size`` rows where they can."""
    if layout == "gaps":
        ids = [i * 1000 for i in range(1, 201)]
        rows = {i: OLD for i in ids}
    elif layout == "sparse_expired":
        ids = list(range(1, 1001))
        rows = {i: OLD if i % 23 == 0 else NEW for i in ids}
    elif layout == "interleaved":
        ids = list(range(1, 401))
        rows = {i: OLD if i % 2 else NEW for i in ids}
    else:
        ids = list(range(1, 401))
        rows = {i: NEW if i <= 200 else OLD for i in ids}
    engine = make_engine(pg_url)
    sweeper, logs = _logs(engine, rows, held=frozenset({(ids[3],)}))

    recorded = _sweep(sweeper, 20)

    expired = [i for i in ids if rows[i] is OLD and i != ids[3]]
    _exact(recorded, expired)
    assert _ids(engine, logs) == sorted(i for i in ids if rows[i] is NEW or i == ids[3])
    if layout == "gaps":  # not one batch per 20 key values: index windows of 20 keys
        assert len(recorded) <= len(expired) // 20 + 8
    engine.dispose()


@pytest.mark.service
def test_rows_added_past_the_last_key_are_still_reached(pg_url: str) -> None:
    engine = make_engine(pg_url)
    sweeper, logs = _logs(engine, {i: OLD for i in range(1, 41)})
    recorded: list[SweepBatch] = []
    first = sweeper.delete_next(None, 20, recorded.append)
    assert first is not None and first.hi == (20,)
    with engine.begin() as conn:  # written after the sweep read the key range
        conn.execute(sa.insert(logs), [{"id": i, "at": OLD} for i in range(41, 61)])

    cursor: Key | None = first.hi
    while (batch := sweeper.delete_next(cursor, 20, recorded.append)) is not None:
        cursor = batch.hi

    assert sum(b.count for b in recorded) == 60
    assert _ids(engine, logs) == []
    engine.dispose()


@pytest.mark.service
def test_a_span_is_rolled_back_when_its_intent_cannot_be_recorded(pg_url: str) -> None:
    engine = make_engine(pg_url)
    sweeper, logs = _logs(engine, {i: OLD for i in range(1, 31)})

    def fail(batch: SweepBatch) -> None:
        assert (batch.lo, batch.hi, batch.count) == (None, (10,), 10)
        raise RuntimeError("audit database unavailable")

    with pytest.raises(RuntimeError):
        sweeper.delete_next(None, 10, fail)
    assert _ids(engine, logs) == list(range(1, 31))
    engine.dispose()


@pytest.mark.service
def test_the_count_after_the_batches_is_the_count(pg_url: str) -> None:
    rows = {i: OLD if i % 3 else NEW for i in range(1, 301)}
    engine = make_engine(pg_url)
    sweeper, _ = _logs(engine, rows, held=frozenset({(1,)}))
    assert sweeper.recount() == sweeper.counts() == (199, 1)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    _sweep(sweeper, 50, stop_at=100)
    statements.clear()

    left = sweeper.recount()

    assert left == sweeper.counts() and left[1] == 1 and 0 < left[0] < 199
    assert any("enable_indexonlyscan" in s for s in statements)
    engine.dispose()


# -- the runner: one audit transaction per batch ----------------------------------------


@dataclass
class _Store:
    """Keys in a list; a batch is the next ``size`` of them (expired, for the test)."""

    keys: list[int]
    fail_at: int | None = None  # the batch (1-based) whose store step raises
    batches: int = 0
    deleted: list[int] = field(default_factory=list)

    def take(self, cursor: Key | None, size: int) -> SweepBatch | None:
        after = _n(cursor, -1)
        chosen = [k for k in self.keys if k > after][:size]
        if not chosen:
            return None
        return SweepBatch(cursor, (chosen[-1],), len(chosen), "")

    def remove(self, batch: SweepBatch) -> int:
        gone = [k for k in self.keys if _n(batch.lo, -1) < k <= _n(batch.hi)]
        self.keys = [k for k in self.keys if k not in gone]
        self.deleted += gone
        return len(gone)


class _OneTransaction:
    """A ``TransactionalSweeper`` over ``_Store`` (the PostgreSQL path)."""

    exact_counts = True
    deletes_in_one_transaction = True

    def __init__(self, store: _Store) -> None:
        self.store = store

    def batch_size(self, requested: int) -> int:
        return requested

    def counts(self) -> tuple[int, int]:
        return len(self.store.keys), 0

    def next_batch(self, cursor: Key | None, size: int) -> SweepBatch | None:
        return self.store.take(cursor, size)

    def apply(self, batch: SweepBatch) -> int:
        return self.store.remove(batch)

    def delete_next(
        self, cursor: Key | None, size: int, before_commit: Callable[[SweepBatch], None]
    ) -> SweepBatch | None:
        batch = self.store.take(cursor, size)
        if batch is None:
            return None
        self.store.batches += 1
        if self.store.batches == self.store.fail_at:
            raise RuntimeError("store unavailable")
        before_commit(batch)  # the store commits after the intent, as on PostgreSQL
        self.store.remove(batch)
        return batch


class _TwoSteps(_OneTransaction):
    """The SQLite and MariaDB path: ``next_batch``, then ``apply``."""

    deletes_in_one_transaction = False

    def apply(self, batch: SweepBatch) -> int:
        self.store.batches += 1
        if self.store.batches == self.store.fail_at:
            raise RuntimeError("store unavailable")
        return self.store.remove(batch)


@dataclass
class _Writes:
    intents_alone: int = 0
    appends: list[list[str]] = field(default_factory=list)


def _context(sweeper: Sweeper, writes: _Writes) -> tuple[SweepContext, SweepRun, SweepTarget]:
    keys = keyring_from_settings()

    class CountingLedger(Ledger):
        def append_many(self, events: Any, also: Any = None) -> Any:
            writes.appends.append([e.kind for e in events])
            return super().append_many(events, also)

    class CountingProgress(SweepProgress):
        def record_intent(self, sweep_id: str, target: str, batch: BatchRange) -> int:
            writes.intents_alone += 1
            return super().record_intent(sweep_id, target, batch)

    class Context(SweepContext):
        def sweeper(self, run: SweepRun, target: SweepTarget) -> Sweeper:
            return sweeper

    ledger = CountingLedger.open(keys=keys, actor=SWEEP_ACTOR)
    ctx = Context(load_config(DEMO_DIR), keys, ledger, CountingProgress(ledger.engine))
    target = _target()
    as_of = datetime(2026, 3, 15, tzinfo=UTC)
    plan = [{"target": target.id, "store": "s", "action": "delete", "expired": 95, "held": 0}]
    ctx.progress.start(
        "swp_0123456789abcdef", as_of=as_of, dry_run=False, rules=(), plan=plan, flow_run_id=None
    )
    run = ctx.progress.run("swp_0123456789abcdef")
    assert run is not None
    writes.appends.clear()
    return ctx, run, target


def _batch_events(ctx: SweepContext, run: SweepRun) -> list[dict[str, Any]]:
    events = ctx.ledger.events(request_id=run.id, kinds=["sweep.batch"])
    return [dict(e.detail) | {"deleted": e.counts["deleted"]} for e in events]


@pytest.mark.parametrize("path", [_OneTransaction, _TwoSteps])
def test_a_batch_costs_one_audit_transaction_and_each_is_audited_once(
    path: type[_OneTransaction],
) -> None:
    store = _Store(list(range(95)))
    writes = _Writes()
    ctx, run, target = _context(path(store), writes)

    outcome = run_range(ctx, run, target, batch_size=10)

    assert outcome.finished and outcome.batches == 10 and outcome.affected == 95
    assert writes.intents_alone == 1  # the first; the others ride on an event
    assert writes.appends == [["sweep.batch"]] * 10  # the last one's written alone
    events = _batch_events(ctx, run)
    assert [e["batch"] for e in events] == list(range(1, 11))
    assert [e["deleted"] for e in events] == [10] * 9 + [5]
    assert all(not e["recovered"] for e in events)
    assert ctx.progress.pending(run.id, target.id) is None
    state = ctx.progress.target(run.id, target.id)
    assert (state.done, state.batches, state.cursor) == (95, 10, (94,))


@pytest.mark.parametrize("path", [_OneTransaction, _TwoSteps])
def test_a_range_stopped_by_an_error_audits_the_batches_the_store_committed(
    path: type[_OneTransaction],
) -> None:
    store = _Store(list(range(95)), fail_at=4)
    writes = _Writes()
    ctx, run, target = _context(path(store), writes)

    with pytest.raises(RuntimeError, match="store unavailable"):
        run_range(ctx, run, target, batch_size=10)

    events = _batch_events(ctx, run)
    assert [e["batch"] for e in events] == [1, 2, 3]  # the third written when the range stopped
    assert len(store.deleted) == 30
    pending = ctx.progress.pending(run.id, target.id)
    if path is _OneTransaction:  # the failed batch rolled back before its intent
        assert pending is None
    else:  # its intent was recorded: the next range applies it again, then goes on
        assert pending is not None and pending.seq == 4
    store.fail_at = None
    outcome = run_range(ctx, run, target, batch_size=10)

    assert outcome.finished and len(store.deleted) == 95 and store.keys == []
    events = _batch_events(ctx, run)
    assert [e["batch"] for e in events] == list(range(1, 11))
    assert sum(e["deleted"] for e in events) == 95
    assert not any(e["recovered"] for e in events)


def test_a_batch_whose_event_cannot_be_written_is_recovered_from_its_intent() -> None:
    """The ledger fails as the range stops: the last batch stays pending (committed in the
    store), and the next range audits it from its intent, as after a crash."""
    store = _Store(list(range(30)))
    writes = _Writes()
    ctx, run, target = _context(_OneTransaction(store), writes)
    real = ctx.append
    calls = 0

    def flaky(events: Any, also: Any = None) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # the third batch's event, written alone at the end of the range
            raise RuntimeError("audit database unavailable")
        real(events, also)

    ctx.append = flaky  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="audit database unavailable"):
        run_range(ctx, run, target, batch_size=10)
    ctx.append = real  # type: ignore[method-assign]
    pending = ctx.progress.pending(run.id, target.id)
    assert pending is not None and pending.seq == 3 and store.keys == []

    outcome = run_range(ctx, run, target, batch_size=10)

    assert outcome.finished and outcome.affected == 10
    events = _batch_events(ctx, run)
    assert [(e["batch"], e["deleted"], e["recovered"]) for e in events] == [
        (1, 10, False),
        (2, 10, False),
        (3, 10, True),
    ]
