"""The retention sweep's work, without Prefect: plan, run batch ranges, summarise.

``flows.retention_sweep`` calls these through thin tasks; the CLI's progress bar and the
benchmark call them too, so what is measured is what runs. A sweep is pinned to its
``as_of`` moment (cut-offs are computed from it), recorded in ``sweep_runs``; a rerun
after a crash resumes the unfinished sweep rather than starting another, so it deletes
exactly what the uninterrupted sweep would have.

Per batch (see ``state.sweeps``): find the batch (its range and count), record the
intent, act on the range in one short store transaction, then audit the batch and move
the cursor. The audit of a batch goes in the audit transaction of the next batch's intent
(``_BatchAudits``: one audit commit per batch; the last batch of a range is audited alone
when the range stops). ``crash_point("sweep-intent" | "sweep-applied", ...)`` lets tests
kill the process between those steps.

Stores take part through their connector's optional capabilities (``connectors.base``):
``Sweeping`` gives a target's ``Sweeper`` (its batch size, whether its counts are exact,
and a one-transaction ``delete_next`` where it is a ``TransactionalSweeper``), and
``SweepFinishing`` the follow-up after a target. A target in a store whose connector
cannot sweep is left out of the plan and audited as ``sweep.skipped``.

One sweep at a time: a real (not dry-run) sweep first takes the ``retention-sweep`` lease
in the audit database (``engine.sweep_lease``), renews it at each step (plan, batch range,
verification, target, summary) and releases it when its context closes; every progress
and ledger write checks it (``SweepContext.append``, ``SweepProgress.fence_with``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import Connection

from audit.events import EventStatus, NewEvent
from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from config.loader import load_config
from config.schema.model import LifecycleConfig
from connectors.base import (
    Connector,
    Key,
    SweepBatch,
    Sweeper,
    SweepFinishing,
    Sweeping,
    TransactionalSweeper,
    Unsupported,
)
from connectors.registry import require, supports
from core.crash_points import crash_point
from core.keys import KeyRing
from engine.events import ledger_event, run_ids
from engine.sweep_holds import held_keys_by_target
from retention.targets import SweepTarget, resolve_targets, utc_naive
from state.leases import Lease
from state.sweeps import BatchRange, SweepConflict, SweepProgress, SweepRun, new_sweep_id

SWEEP_ACTOR = "flow:retention-sweep"
DEFAULT_BATCH_SIZE = 50_000
"""Rows per SQL batch, chosen by ``benchmarks/retention.py`` (PostgreSQL, 2M rows, time
order, ``audit: range``: key spans, one audit transaction per batch): 20,000 / 50,000 /
100,000 took 2.35x / 1.90x / 1.83x the raw DELETE (medians of 4 rounds on a shared
2-core machine; a second run put 100,000 behind 50,000, within the noise). 100,000 gains
little more, and 50,000 keeps each transaction to some 30 ms on PostgreSQL and its row
locks (MariaDB) and write lock (SQLite) short. A sweeper may use another size
(``Sweeper.batch_size``: an object store deletes one call's worth of versions)."""


@runtime_checkable
class Recounting(Protocol):
    """A sweeper whose count after the batches is planned for it (``SqlSweeper.recount``).

    The same counts as ``Sweeper.counts``; ``verify_and_rewind`` uses it where present.
    (Local to the engine: ``connectors.base`` does not declare it.)
    """

    def recount(self) -> tuple[int, int]: ...


@dataclass(frozen=True)
class RangeOutcome:
    """What one task's batch range did, and whether its target is finished."""

    target: str
    batches: int
    affected: int
    finished: bool


@dataclass
class SweepContext:
    """Configuration, keys, ledger and progress for one sweep's work (one process)."""

    config: LifecycleConfig
    keys: KeyRing
    ledger: Ledger
    progress: SweepProgress
    lease: Lease | None = None
    _connectors: dict[str, Connector] = field(default_factory=dict, repr=False)
    _held: dict[str, dict[str, frozenset[Key]]] = field(default_factory=dict, repr=False)
    _stack: ExitStack = field(default_factory=ExitStack, repr=False)

    def connector(self, store: str) -> Connector:
        """The store's connector, kept open for the context's lifetime."""
        if store not in self._connectors:
            from connectors.registry import connector_for

            made = connector_for(self.config.store(store), self.config.policy, self.keys)
            self._stack.callback(made.close)
            self._connectors[store] = made
        return self._connectors[store]

    def close(self) -> None:
        self._stack.close()
        self._connectors.clear()

    def hold(self, lease: Lease) -> None:
        """Work under ``lease`` (held): every write checks it; closing releases it."""
        self.lease = lease
        self.progress.fence_with(lease.fence)
        self._stack.callback(self._release)

    def _release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.progress.fence_with(None)
            self.lease = None

    def renew_lease(self) -> None:
        """Renew the sweep lease, if held (LeaseLost when another run took it over)."""
        if self.lease is not None:
            self.lease.renew()

    def append(
        self, events: list[NewEvent], also: Callable[[Connection], None] | None = None
    ) -> None:
        """Ledger events in one transaction with ``also``, refused unless the lease is ours."""
        self.ledger.append_many(events, also=self.progress.guarded(also))

    def targets(self, run: SweepRun) -> list[SweepTarget]:
        """The sweep's targets, resolved again at its pinned ``as_of`` (same cut-offs).

        Targets in stores that cannot sweep are left out (the plan recorded them skipped).
        """
        resolved = resolve_targets(self.config, run.as_of.replace(tzinfo=UTC), run.rules)
        planned = {t["target"] for t in run.plan}
        return [t for t in resolved if (t.id in planned or not planned) and self.sweeps(t.store)]

    def held_keys(self, run: SweepRun, target: SweepTarget) -> frozenset[Key]:
        """Keys of subjects under a legal hold within ``target`` (computed once per sweep)."""
        if not target.subject_holds:
            return frozenset()
        if run.id not in self._held:
            self._held[run.id] = held_keys_by_target(self, self.targets(run))
        return self._held[run.id].get(target.id, frozenset())

    def sweeping(self, store: str) -> Sweeping:
        """The store's connector as a sweeping one; ``Unsupported`` if it cannot sweep."""
        return require(self.connector(store), Sweeping, "sweeping")

    def sweeps(self, store: str) -> bool:
        """Whether the store's connector can sweep (targets of others are skipped)."""
        return supports(self.connector(store), Sweeping)

    def sweeper(self, run: SweepRun, target: SweepTarget) -> Sweeper:
        """The connector's sweeper for ``target``."""
        return self.sweeping(target.store).sweeper(
            target, today=run.as_of.date(), held_keys=self.held_keys(run, target)
        )

    def event(
        self,
        kind: str,
        status: EventStatus,
        sweep_id: str,
        *,
        connector: str | None = None,
        target: str | None = None,
        counts: Mapping[str, int] | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> NewEvent:
        """A ledger event about the sweep (its id in ``request_id``, so the ledger filters)."""
        return ledger_event(
            kind,
            status,
            sweep_id,
            actor=SWEEP_ACTOR,
            connector=connector,
            target=target,
            counts=counts,
            detail=detail,
        )


@contextmanager
def sweep_context() -> Iterator[SweepContext]:
    """A context from settings (policy, keys, audit database), closed afterwards."""
    keys = keyring_from_settings()
    ledger = Ledger.open(keys=keys, actor=SWEEP_ACTOR)
    ctx = SweepContext(load_config(), keys, ledger, SweepProgress(ledger.engine))
    try:
        yield ctx
    finally:
        ctx.close()


# -- planning ---------------------------------------------------------------------------


def target_plan(target: SweepTarget, expired: int, held: int, store_type: str) -> dict[str, Any]:
    """One target's plan entry: counts, rules and holds only (safe for UI and ledger)."""
    return {
        "target": target.id,
        "label": target.label,
        "store": target.store,
        "store_type": store_type,
        "action": target.action,
        "fields": list(target.fields),
        "rules": list(target.rule_ids),
        "governing_rule": target.governing.rule_id,
        "age": target.governing.age,
        "clock": target.governing.clock.describe(),
        "cutoff": min(c.cutoff for c in target.conditions).isoformat(),
        "expired": expired,
        "held": held,
        "holds": list(target.holds),
        "partial_holds": [h.id for h in target.partial_holds],
    }


RESUME_WINDOW = timedelta(hours=20)
"""An unfinished sweep younger than this is resumed with its own cut-offs; an older one
(it kept failing) is closed as abandoned and a fresh sweep, whose newer cut-offs cover
everything the old one had left, starts instead, so one stuck target cannot pin every
later night to a stale plan."""


def _stale(run: SweepRun) -> bool:
    return datetime.now(UTC) - run.started_at > RESUME_WINDOW


def _abandon(ctx: SweepContext, run: SweepRun) -> None:
    done, planned = ctx.progress.totals(run.id)
    ctx.append(
        [
            ctx.event(
                "sweep.abandoned",
                EventStatus.FAILED,
                run.id,
                counts={"done": done, "planned": planned},
                detail={"reason": "unfinished for longer than the resume window"},
            )
        ],
        also=SweepProgress.closing(
            run.id,
            "abandoned",
            {"done": done, "planned": planned},
            from_statuses=("running", "failed"),
        ),
    )


def plan_sweep(
    ctx: SweepContext,
    *,
    as_of: datetime | None,
    rules: tuple[str, ...],
    dry_run: bool,
    resume: bool = True,
) -> SweepRun:
    """Resume the unfinished sweep, or count what is expired now and record a new one.

    The plan (counts per target) goes to ``sweep_runs`` and the ledger. A dry run is
    recorded as such and acts on nothing.
    """
    if resume and not dry_run:
        unfinished = ctx.progress.unfinished()
        if unfinished is not None and _stale(unfinished):
            _abandon(ctx, unfinished)
        elif unfinished is not None:
            ctx.append(
                [
                    ctx.event(
                        "sweep.resumed",
                        EventStatus.PLANNED,
                        unfinished.id,
                        detail={"as_of": unfinished.as_of.isoformat()},
                    )
                ],
                also=SweepProgress.reopening(unfinished.id),
            )
            ctx.renew_lease()
            return unfinished
    moment = utc_naive(as_of or datetime.now(UTC)).replace(tzinfo=UTC)
    sweep_id = new_sweep_id()
    probe = SweepRun(sweep_id, moment, dry_run, "running", rules, [], None, None, moment, None)
    plan = []
    skipped: list[dict[str, str]] = []
    for target in resolve_targets(ctx.config, moment, rules):
        try:
            ctx.sweeping(target.store)
        except Unsupported as e:  # left out of the plan, audited as skipped
            skipped.append({"target": target.id, "store": target.store, "reason": str(e)})
            continue
        expired, held = ctx.sweeper(probe, target).counts()
        store_type = ctx.config.store(target.store).type
        plan.append(target_plan(target, expired, held, store_type))
        ctx.renew_lease()  # counting a big table takes a while
    flow_run_id = run_ids()["flow_run_id"]
    ctx.progress.start(
        sweep_id, as_of=moment, dry_run=dry_run, rules=rules, plan=plan, flow_run_id=flow_run_id
    )
    ctx.append(
        [
            *(_skipped(ctx, sweep_id, s) for s in skipped),
            ctx.event(
                "sweep.planned",
                EventStatus.PLANNED,
                sweep_id,
                counts={
                    "targets": len(plan),
                    "expired": sum(p["expired"] for p in plan),
                    "held": sum(p["held"] for p in plan),
                },
                detail={
                    "as_of": moment.isoformat(),
                    "dry_run": dry_run,
                    "rules": list(rules),
                    "targets": [
                        {k: p[k] for k in ("target", "rules", "expired", "held", "holds")}
                        for p in plan
                    ],
                    **({"skipped": [s["target"] for s in skipped]} if skipped else {}),
                },
            ),
        ]
    )
    run = ctx.progress.run(sweep_id)
    assert run is not None  # just written
    return run


def _skipped(ctx: SweepContext, sweep_id: str, skipped: Mapping[str, str]) -> NewEvent:
    """A target left out of the sweep: its store's connector cannot sweep."""
    return ctx.event(
        "sweep.skipped",
        EventStatus.SKIPPED,
        sweep_id,
        connector=skipped["store"],
        target=skipped["target"],
        detail={"reason": skipped["reason"]},
    )


# -- execution --------------------------------------------------------------------------


def _as_range(batch: SweepBatch) -> BatchRange:
    """A connector's batch as the progress tables record it."""
    return BatchRange(batch.lo, batch.hi, batch.count, batch.keys_digest)


def _bound(keys: KeyRing, target: SweepTarget, key: Key | None) -> Any:
    """A batch bound as the ledger holds it: the key, or a keyed hash of a personal one."""
    if key is None or not target.keys_personal:
        return None if key is None else list(key)
    text = json.dumps(list(key), separators=(",", ":"), ensure_ascii=False)
    mac = hmac.new(keys.pseudonym_hmac, b"sweep-bound\x00" + text.encode(), hashlib.sha256)
    return "hmac:" + mac.hexdigest()[:32]


def batch_detail(
    keys: KeyRing, target: SweepTarget, seq: int, batch: SweepBatch, *, recovered: bool
) -> dict[str, Any]:
    """A ``sweep.batch`` event's detail: the rules and their cut-offs, the batch's key range
    (``after`` exclusive, null at the start; ``last`` inclusive) and count; in ``keys`` audit
    mode also the digest of every key. Keys that may be personal data appear as keyed hashes
    (``hmac:...``), the same for the same key, so ranges still chain from batch to batch."""
    detail: dict[str, Any] = {
        "batch": seq,
        "audit": target.audit,
        "rules": list(target.rule_ids),
        "cutoffs": {c.rule_id: c.cutoff.isoformat() for c in target.conditions},
        "range": {"after": _bound(keys, target, batch.lo), "last": _bound(keys, target, batch.hi)},
        "keys_read": batch.count,
        "recovered": recovered,
    }
    if batch.keys_digest:  # recorded in keys mode (an intent keeps it across a resume)
        detail["keys_digest"] = batch.keys_digest
    return detail


def _audit_batch(
    ctx: SweepContext,
    *,
    run: SweepRun,
    target: SweepTarget,
    seq: int,
    batch: SweepBatch,
    affected: int,
    recovered: bool,
    then: Callable[[Connection], None] | None = None,
) -> None:
    """The batch's ledger event, with its bookkeeping and ``then`` in the same transaction."""
    verb = "deleted" if target.action == "delete" else "anonymized"
    event = ctx.event(
        "sweep.batch",
        EventStatus.SUCCEEDED,
        run.id,
        connector=target.store,
        target=target.id,
        counts={verb: affected},
        detail=batch_detail(ctx.keys, target, seq, batch, recovered=recovered),
    )
    audited = SweepProgress.audited(run.id, target.id, seq, _as_range(batch), affected)
    if then is None:
        ctx.append([event], also=audited)
        return

    def bookkeeping(conn: Connection) -> None:
        audited(conn)
        then(conn)

    ctx.append([event], also=bookkeeping)


@dataclass
class _BatchAudits:
    """One range's audit writes: a batch's ledger event goes with the next batch's intent.

    ``intent`` runs before the store commits a batch; it writes the batch's intent and,
    in the same audit transaction, the ledger event of the batch before it (committed in
    the store by then), so each batch costs one audit commit. ``flush`` writes the last
    batch's event alone, when the range stops (normally or not). A crash in between leaves
    that batch pending, as a crash between its store commit and its event always did; the
    rerun audits it from its intent (``run_range``).
    """

    ctx: SweepContext
    run: SweepRun
    target: SweepTarget
    _done: tuple[int, SweepBatch, int] | None = None  # (seq, batch, affected), not audited

    def intent(self, batch: SweepBatch) -> int:
        """Record ``batch`` as pending (with the previous batch's event); its seq."""
        r = _as_range(batch)
        if self._done is None:
            return self.ctx.progress.record_intent(self.run.id, self.target.id, r)
        seqs: list[int] = []
        self._audit(then=SweepProgress.intending(self.run.id, self.target.id, r, seqs))
        return seqs[0]

    def done(self, seq: int, batch: SweepBatch, affected: int) -> None:
        """``batch`` is committed in the store: its event goes with the next intent."""
        assert self._done is None, "the previous batch's event was not written"
        self._done = (seq, batch, affected)

    def flush(self) -> None:
        """Write the event of the batch done last, if it is still waiting."""
        if self._done is not None:
            self._audit(then=None)

    def _audit(self, *, then: Callable[[Connection], None] | None) -> None:
        assert self._done is not None
        seq, batch, affected = self._done
        _audit_batch(
            self.ctx,
            run=self.run,
            target=self.target,
            seq=seq,
            batch=batch,
            affected=affected,
            recovered=False,
            then=then,
        )
        self._done = None


def _delete_next(
    audits: _BatchAudits,
    *,
    sweeper: TransactionalSweeper,
    cursor: Key | None,
    size: int,
) -> SweepBatch | None:
    """One batch found and deleted in one transaction; its intent is written before the commit."""
    seqs: list[int] = []
    label = audits.target.id

    def record(batch: SweepBatch) -> None:
        seqs.append(audits.intent(batch))
        crash_point("sweep-intent", f"{label}#{seqs[-1]}")

    batch = sweeper.delete_next(cursor, size, record)
    if batch is None:
        return None
    crash_point("sweep-applied", f"{label}#{seqs[-1]}")
    audits.done(seqs[-1], batch, batch.count)
    return batch


def _apply_next(
    audits: _BatchAudits, *, sweeper: Sweeper, cursor: Key | None, size: int
) -> tuple[SweepBatch, int] | None:
    """One batch read, its intent written, then applied in the store's own transaction."""
    batch = sweeper.next_batch(cursor, size)
    if batch is None:
        return None
    label = audits.target.id
    seq = audits.intent(batch)
    crash_point("sweep-intent", f"{label}#{seq}")
    affected = sweeper.apply(batch)
    crash_point("sweep-applied", f"{label}#{seq}")
    audits.done(seq, batch, affected)
    return batch, affected


def run_range(
    ctx: SweepContext,
    run: SweepRun,
    target: SweepTarget,
    *,
    batch_size: int,
    max_batches: int = 50,
    max_seconds: float = 10.0,
) -> RangeOutcome:
    """Run up to ``max_batches`` batches (or ``max_seconds``) of one target, from its cursor.

    A pending batch left by a crash is finished first: its range is applied again (a
    no-op if the store had committed) and it is audited from its recorded digest.
    """
    ctx.renew_lease()
    sweeper = ctx.sweeper(run, target)
    size = sweeper.batch_size(batch_size)
    started = time.monotonic()
    done_batches = affected_total = 0
    pending = ctx.progress.pending(run.id, target.id)
    if pending is not None:
        p = pending.batch
        again = SweepBatch(p.lo, p.hi, p.count, p.keys_digest)
        affected = sweeper.apply(again)
        # Zero rows changed: the store had committed before the crash; the intent's
        # count is what that commit did.
        recovered = affected == 0
        affected = affected or again.count
        _audit_batch(
            ctx,
            run=run,
            target=target,
            seq=pending.seq,
            batch=again,
            affected=affected,
            recovered=recovered,
        )
        done_batches, affected_total = 1, affected
    state = ctx.progress.target(run.id, target.id)
    cursor, done = state.cursor, state.done
    # A first pass over exactly counted data (SQL rows) ends once the plan's count is
    # done, rather than searching the rest of the table for none: verify_and_rewind
    # re-counts right after, and rows that expired behind the cursor meanwhile start a
    # full pass ("rescan").
    stop_at = state.expired if sweeper.exact_counts and state.state == "pending" else None
    one_transaction = (
        sweeper
        if isinstance(sweeper, TransactionalSweeper) and sweeper.deletes_in_one_transaction
        else None
    )
    audits = _BatchAudits(ctx, run, target)
    finished = False
    try:
        while done_batches < max_batches and time.monotonic() - started < max_seconds:
            if stop_at is not None and done >= stop_at:
                finished = True
                break
            if one_transaction is not None:
                step = _delete_next(audits, sweeper=one_transaction, cursor=cursor, size=size)
                if step is None:
                    finished = True
                    break
                batch, affected = step, step.count
            else:
                applied = _apply_next(audits, sweeper=sweeper, cursor=cursor, size=size)
                if applied is None:
                    finished = True
                    break
                batch, affected = applied
            done_batches += 1
            affected_total += affected
            done += affected
            cursor = batch.hi
    except BaseException:
        # The store committed the last batch: audit it now if the ledger can take it (if
        # not, its intent stays pending and the rerun audits it as recovered).
        with suppress(Exception):
            audits.flush()
        raise
    audits.flush()
    return RangeOutcome(target.id, done_batches, affected_total, finished=finished)


def verify_and_rewind(ctx: SweepContext, run: SweepRun, target: SweepTarget) -> int:
    """Expired, unheld data left in ``target`` after its batches; rewinds it when there is some.

    Normally zero. An object store may skip a key in a resumed listing (moto does, after
    a deleted marker key), and the rewind lets the next pass pick it up from the top.
    """
    if target.held:
        return 0
    ctx.renew_lease()
    sweeper = ctx.sweeper(run, target)
    recount = sweeper.recount if isinstance(sweeper, Recounting) else sweeper.counts
    remaining, _held = recount()
    if remaining:  # audited with the rewind it causes; a clean count, with the closing
        ctx.append(
            [_verified(ctx, run, target, remaining)],
            also=SweepProgress.target_state(run.id, target.id, "rescan", rewind=True),
        )
    return remaining


def _verified(ctx: SweepContext, run: SweepRun, target: SweepTarget, remaining: int) -> NewEvent:
    return ctx.event(
        "sweep.verified",
        EventStatus.SUCCEEDED if remaining == 0 else EventStatus.FAILED,
        run.id,
        connector=target.store,
        target=target.id,
        counts={"remaining": remaining},
    )


def finish_target(ctx: SweepContext, run: SweepRun, target: SweepTarget) -> dict[str, Any]:
    """Close a finished target, verified clean: secure-erasure follow-up, state, and its
    ledger events (the verification and the target's counts)."""
    ctx.renew_lease()
    connector = ctx.connector(target.store)
    if supports(connector, SweepFinishing) and not target.held:
        connector.finish_sweep(target)
        ctx.renew_lease()  # reclaiming storage (VACUUM) can take a while
    state = ctx.progress.target(run.id, target.id)
    final = "held" if target.held else "done"
    verb = "deleted" if target.action == "delete" else "anonymized"
    # The clean verification that let the target close (a held one is not counted) is
    # audited with the closing: a crash before it re-verifies without a second event.
    verified = [] if target.held else [_verified(ctx, run, target, 0)]
    ctx.append(
        [
            *verified,
            ctx.event(
                "sweep.target",
                EventStatus.DEFERRED if target.held else EventStatus.SUCCEEDED,
                run.id,
                connector=target.store,
                target=target.id,
                counts={verb: state.done, "batches": state.batches, "held": state.held},
                detail={"rules": list(target.rule_ids), "holds": list(target.holds)},
            ),
        ],
        also=_closing_target(run.id, target.id, final),
    )
    return {"target": target.id, verb: state.done, "held": state.held, "state": final}


def _closing_target(sweep_id: str, target: str, state: str) -> Callable[[Connection], None]:
    close = SweepProgress.target_state(sweep_id, target, state)

    def run(conn: Connection) -> None:
        close(conn)
        crash_point("sweep-target-closing", target)  # tests: die before the commit

    return run


def summarise(ctx: SweepContext, run: SweepRun, *, status: str = "completed") -> dict[str, Any]:
    """Close the sweep: per-target counts to ``sweep_runs`` and one ``sweep.completed`` event.

    The sweep is closed in the event's transaction and only while it runs: a second
    process finishing the same sweep appends nothing and gets the recorded summary.
    """
    ctx.renew_lease()
    states = ctx.progress.targets(run.id)
    rows: list[dict[str, Any]] = [
        {
            "target": s.target,
            "store": s.store,
            "action": s.action,
            "planned": s.expired,
            "done": s.done,
            "held": s.held,
            "batches": s.batches,
            "state": s.state,
        }
        for s in states
    ]
    summary: dict[str, Any] = {
        "sweep_id": run.id,
        "as_of": run.as_of.isoformat(),
        "dry_run": run.dry_run,
        "status": status,
        "targets": rows,
        "deleted": sum(r["done"] for r in rows if r["action"] == "delete"),
        "anonymized": sum(r["done"] for r in rows if r["action"] == "anonymize"),
        "held": sum(r["held"] for r in rows),
        "planned": sum(r["planned"] for r in rows),
    }
    ev_status = EventStatus.FAILED if status == "failed" else EventStatus.SUCCEEDED
    kind = {"completed": "sweep.completed", "dry_run": "sweep.dry_run"}.get(status, "sweep.failed")
    try:
        ctx.append(
            [
                ctx.event(
                    kind,
                    ev_status,
                    run.id,
                    counts={k: summary[k] for k in ("deleted", "anonymized", "held", "planned")},
                    detail={"dry_run": run.dry_run, "targets": len(rows)},
                )
            ],
            also=SweepProgress.closing(run.id, status, summary),
        )
    except SweepConflict:
        closed = ctx.progress.run(run.id)
        if closed is None or closed.summary is None:
            raise
        return closed.summary
    return summary
