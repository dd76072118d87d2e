"""Retention-sweep progress in the audit database: where each sweep stands, batch by batch.

The protocol that makes a resumed sweep exact (see ``engine.sweep_runner``):

1. ``record_intent``: a batch's key range, count and digest (read from the store, or
   what the store's still uncommitted DELETE took) are written as ``pending`` before the
   store commits anything.
2. The store acts on that range in its own transaction.
3. ``audited``: the batch is marked audited and the target's cursor moves past it in the
   same transaction as the batch's ledger event (``Ledger.append_many(also=...)``).

Within one run of batches, step 3 of a batch and step 1 of the next share that one
audit transaction (``intending``: the next batch's intent rides on the previous batch's
ledger event), so a batch costs one audit commit, not two; the last batch's event is
written alone. A crash between 1 and 3 leaves a pending batch; the rerun applies its
range again (a no-op when the store had committed) and audits it from the recorded
count and digest, so every batch reaches the ledger exactly once.

Only one process sweeps at a time (``state.leases``; ``fence_with`` makes every write
here check the lease in its own transaction). Independently of that, the state changes
that come with a ledger event are compare-and-set in the event's transaction: a batch is
marked audited only while pending, a sweep closed only while running, so a second
process racing to do either gets ``SweepConflict`` and its event is rolled back.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update

from core.engines import IMMEDIATE
from core.errors import TerminalError
from state.register_tables import database_errors
from state.sweep_tables import sweep_batches, sweep_runs, sweep_targets

SWEEP_LEASE = "retention-sweep"
"""The lease a real sweep holds while it runs (``state.leases``): one sweep at a time."""

Key = tuple[Any, ...]
"""A store's row key or (object key,) as JSON scalars (``connectors.base.Key``)."""
Fence = Callable[[Connection], None]
"""Runs first in a write transaction; raises to refuse the write (``Lease.fence``)."""


class SweepConflict(TerminalError):
    """Another process already did this step (audited the batch, closed the sweep)."""


@dataclass(frozen=True)
class BatchRange:
    """A batch's key range (``lo`` exclusive, ``hi`` inclusive), count and digest."""

    lo: Key | None
    hi: Key
    count: int
    keys_digest: str


def new_sweep_id() -> str:
    """``swp_`` + 16 hex digits (the shape of request ids, so the ledger filters by it)."""
    return "swp_" + secrets.token_hex(8)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _key(text: str | None) -> Key | None:
    return None if text is None else tuple(json.loads(text))


@dataclass(frozen=True)
class SweepRun:
    """One sweep as recorded."""

    id: str
    as_of: datetime
    dry_run: bool
    status: str
    rules: tuple[str, ...]
    plan: list[dict[str, Any]]
    summary: dict[str, Any] | None
    flow_run_id: str | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class TargetState:
    """One target of a sweep: planned counts, what is done, and where the cursor stands."""

    target: str
    position: int
    store: str
    action: str
    expired: int
    held: int
    done: int
    batches: int
    cursor: Key | None
    state: str


@dataclass(frozen=True)
class PendingBatch:
    """A batch whose intent was recorded but whose audit was not (a crash in between)."""

    seq: int
    batch: BatchRange


class SweepProgress:
    """Reads and advances sweep progress."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{IMMEDIATE: True})
        self._fence: Fence | None = None

    def __repr__(self) -> str:
        return f"SweepProgress(backend={self._engine.dialect.name!r})"

    def fence_with(self, fence: Fence | None) -> None:
        """Check ``fence`` (the sweep lease) first in every write transaction from now on."""
        self._fence = fence

    @contextmanager
    def _write(self, operation: str) -> Iterator[Connection]:
        with database_errors(operation), self._writer.begin() as conn:
            if self._fence is not None:
                self._fence(conn)
            yield conn

    def guarded(self, also: Callable[[Connection], None] | None = None) -> Fence | None:
        """``also`` preceded by the fence, for ``Ledger.append_many(also=...)``."""
        fence = self._fence
        if fence is None:
            return also

        def run(conn: Connection) -> None:
            fence(conn)
            if also is not None:
                also(conn)

        return run

    # -- runs ---------------------------------------------------------------------------

    def start(
        self,
        sweep_id: str,
        *,
        as_of: datetime,
        dry_run: bool,
        rules: Sequence[str],
        plan: list[dict[str, Any]],
        flow_run_id: str | None,
    ) -> None:
        """Record a new sweep and its targets (``plan``: one dict per target, counts only)."""
        now = datetime.now(UTC)
        with self._write("sweep start") as conn:
            conn.execute(
                insert(sweep_runs).values(
                    id=sweep_id,
                    as_of=as_of,
                    dry_run=dry_run,
                    status="running",
                    rules=_dumps(list(rules)),
                    plan=_dumps(plan),
                    flow_run_id=flow_run_id,
                    started_at=now,
                    updated_at=now,
                )
            )
            rows = [
                {
                    "sweep_id": sweep_id,
                    "target": t["target"],
                    "position": i,
                    "store": t["store"],
                    "action": t["action"],
                    "expired": t["expired"],
                    "held": t["held"],
                    "done": 0,
                    "batches": 0,
                    "cursor": None,
                    "state": "held" if t.get("holds") else "pending",
                    "updated_at": now,
                }
                for i, t in enumerate(plan)
            ]
            if rows:
                conn.execute(insert(sweep_targets), rows)

    def _run(self, row: Any) -> SweepRun:
        return SweepRun(
            id=row.id,
            as_of=row.as_of,
            dry_run=bool(row.dry_run),
            status=row.status,
            rules=tuple(json.loads(row.rules)),
            plan=json.loads(row.plan),
            summary=json.loads(row.summary) if row.summary else None,
            flow_run_id=row.flow_run_id,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )

    def run(self, sweep_id: str) -> SweepRun | None:
        """The sweep called ``sweep_id``, or None."""
        query = select(sweep_runs).where(sweep_runs.c.id == sweep_id)
        with database_errors("sweep read"), self._engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else self._run(row)

    def unfinished(self) -> SweepRun | None:
        """The newest real sweep left running (a crash) or failed: a rerun resumes it."""
        query = (
            select(sweep_runs)
            .where(sweep_runs.c.status.in_(("running", "failed")), sweep_runs.c.dry_run.is_(False))
            .order_by(sweep_runs.c.started_at.desc())
            .limit(1)
        )
        with database_errors("sweep read"), self._engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else self._run(row)

    def recent(self, limit: int = 20) -> list[SweepRun]:
        """The newest sweeps first."""
        query = select(sweep_runs).order_by(sweep_runs.c.started_at.desc()).limit(limit)
        with database_errors("sweep read"), self._engine.connect() as conn:
            return [self._run(r) for r in conn.execute(query)]

    @staticmethod
    def closing(
        sweep_id: str,
        status: str,
        summary: dict[str, Any],
        *,
        from_statuses: Sequence[str] = ("running",),
    ) -> Callable[[Connection], None]:
        """Statements closing the sweep with its final status and counts-only summary, for
        ``also=`` with its closing event: SweepConflict (the event rolls back) unless the
        sweep is still in one of ``from_statuses``, so it is closed, and audited, once."""

        def run(conn: Connection) -> None:
            now = datetime.now(UTC)
            closed = conn.execute(
                update(sweep_runs)
                .where(sweep_runs.c.id == sweep_id, sweep_runs.c.status.in_(from_statuses))
                .values(status=status, summary=_dumps(summary), finished_at=now, updated_at=now)
            )
            if closed.rowcount != 1:
                raise SweepConflict(f"sweep {sweep_id} was already closed", sweep_id=sweep_id)

        return run

    @staticmethod
    def reopening(sweep_id: str) -> Callable[[Connection], None]:
        """Statements moving an unfinished (running or failed) sweep back to running, for
        ``also=`` with its ``sweep.resumed`` event; SweepConflict if it was closed since."""

        def run(conn: Connection) -> None:
            reopened = conn.execute(
                update(sweep_runs)
                .where(sweep_runs.c.id == sweep_id, sweep_runs.c.status.in_(("running", "failed")))
                .values(status="running", finished_at=None, updated_at=datetime.now(UTC))
            )
            if reopened.rowcount != 1:
                raise SweepConflict(f"sweep {sweep_id} was closed meanwhile", sweep_id=sweep_id)

        return run

    # -- targets ------------------------------------------------------------------------

    def targets(self, sweep_id: str) -> list[TargetState]:
        """Every target of the sweep, in plan order."""
        t = sweep_targets.c
        query = select(sweep_targets).where(t.sweep_id == sweep_id).order_by(t.position)
        with database_errors("sweep read"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            TargetState(
                target=r.target,
                position=r.position,
                store=r.store,
                action=r.action,
                expired=int(r.expired),
                held=int(r.held),
                done=int(r.done),
                batches=int(r.batches),
                cursor=_key(r.cursor),
                state=r.state,
            )
            for r in rows
        ]

    def target(self, sweep_id: str, target: str) -> TargetState:
        """One target's state (KeyError if the sweep has no such target)."""
        for state in self.targets(sweep_id):
            if state.target == target:
                return state
        raise KeyError(target)

    @staticmethod
    def target_state(
        sweep_id: str, target: str, state: str, *, rewind: bool = False
    ) -> Callable[[Connection], None]:
        """The statement setting a target's state, for ``also=`` with the event saying so
        (a crash between the two would leave a target done and never audited, or audited
        twice). ``rewind`` also starts the next pass from the first key: state ``rescan``
        makes that pass run to the end of the data, whatever the plan's count
        (``engine.sweep_runner.run_range``)."""
        values: dict[str, Any] = {"state": state}
        if rewind:
            values["cursor"] = None

        def run(conn: Connection) -> None:
            conn.execute(
                update(sweep_targets)
                .where(sweep_targets.c.sweep_id == sweep_id, sweep_targets.c.target == target)
                .values(**values, updated_at=datetime.now(UTC))
            )

        return run

    def totals(self, sweep_id: str) -> tuple[int, int]:
        """(done, planned) over all targets: what a progress bar shows."""
        t = sweep_targets.c
        query = select(func.coalesce(func.sum(t.done), 0), func.coalesce(func.sum(t.expired), 0))
        with database_errors("sweep read"), self._engine.connect() as conn:
            done, planned = conn.execute(query.where(t.sweep_id == sweep_id)).one()
        return int(done), int(planned)

    # -- batches ------------------------------------------------------------------------

    def pending(self, sweep_id: str, target: str) -> PendingBatch | None:
        """The target's batch recorded but not audited (at most one), if any."""
        b = sweep_batches.c
        query = select(sweep_batches).where(
            b.sweep_id == sweep_id, b.target == target, b.state == "pending"
        )
        with database_errors("sweep read"), self._engine.connect() as conn:
            row = conn.execute(query.order_by(b.seq)).first()
        if row is None:
            return None
        hi = _key(row.hi)
        assert hi is not None  # the column is NOT NULL
        batch = BatchRange(_key(row.lo), hi, int(row._mapping["count"]), row.keys_digest)
        return PendingBatch(int(row.seq), batch)

    def record_intent(self, sweep_id: str, target: str, batch: BatchRange) -> int:
        """Write the batch as pending before it acts; returns its sequence number."""
        with self._write("sweep batch") as conn:
            return _insert_intent(conn, sweep_id, target, batch)

    @staticmethod
    def intending(
        sweep_id: str, target: str, batch: BatchRange, seqs: list[int]
    ) -> Callable[[Connection], None]:
        """``record_intent`` as a statement for ``also=``: the batch's intent written in the
        transaction of another ledger event (the previous batch's); its sequence number is
        appended to ``seqs``, valid once that transaction commits."""

        def run(conn: Connection) -> None:
            seqs.append(_insert_intent(conn, sweep_id, target, batch))

        return run

    @staticmethod
    def audited(
        sweep_id: str, target: str, seq: int, batch: BatchRange, affected: int
    ) -> Callable[[Connection], None]:
        """Statements marking a batch audited and moving the cursor, for ``also=``.

        Only a pending batch is marked: SweepConflict (the event rolls back) when another
        process audited it first, so no batch reaches the ledger twice."""

        def run(conn: Connection) -> None:
            where = {"w_sweep": sweep_id, "w_target": target}
            marked = conn.execute(_MARK_AUDITED, {**where, "w_seq": seq, "v_affected": affected})
            if marked.rowcount != 1:
                raise SweepConflict(
                    f"sweep {sweep_id}: batch {seq} of {target} was already audited",
                    sweep_id=sweep_id,
                    target=target,
                )
            conn.execute(
                _MOVE_CURSOR,
                {
                    **where,
                    "v_cursor": _dumps(list(batch.hi)),
                    "v_affected": affected,
                    "v_now": datetime.now(UTC),
                },
            )

        return run


# A batch's bookkeeping runs once per batch: its statements are built once (bound values by
# name), which spares their construction and cache keys each time.
_b, _t = sweep_batches.c, sweep_targets.c
_MARK_AUDITED = (
    update(sweep_batches)
    .where(
        _b.sweep_id == bindparam("w_sweep"),
        _b.target == bindparam("w_target"),
        _b.seq == bindparam("w_seq"),
        _b.state == "pending",
    )
    .values(state="audited", affected=bindparam("v_affected"))
)
_MOVE_CURSOR = (
    update(sweep_targets)
    .where(_t.sweep_id == bindparam("w_sweep"), _t.target == bindparam("w_target"))
    .values(
        cursor=bindparam("v_cursor"),
        done=_t.done + bindparam("v_affected"),
        batches=_t.batches + 1,
        updated_at=bindparam("v_now"),
    )
)
_LAST_SEQ = select(func.max(_b.seq)).where(
    _b.sweep_id == bindparam("w_sweep"), _b.target == bindparam("w_target")
)
_INSERT_BATCH = insert(sweep_batches)


def _insert_intent(conn: Connection, sweep_id: str, target: str, batch: BatchRange) -> int:
    """Insert the batch as pending (the next sequence number of the target); its number."""
    last = conn.execute(_LAST_SEQ, {"w_sweep": sweep_id, "w_target": target}).scalar_one()
    seq = int(last or 0) + 1
    conn.execute(
        _INSERT_BATCH,
        {
            "sweep_id": sweep_id,
            "target": target,
            "seq": seq,
            "lo": None if batch.lo is None else _dumps(list(batch.lo)),
            "hi": _dumps(list(batch.hi)),
            "count": batch.count,
            "keys_digest": batch.keys_digest,
            "affected": None,
            "state": "pending",
            "recorded_at": datetime.now(UTC),
        },
    )
    return seq
