"""Erasure tasks, one per store: plan, execute (resumable, audited once), verify.

Execution is where a crash matters most, so every batch is written down as an intent
before it takes effect (exactly-once auditing). A transactional store hands over all its
batches (counts taken inside its transaction, and their keys) just before its COMMIT;
they are recorded as this attempt's intents, and once the store reports the commit they
become its batches and the store is marked executed, in one audit transaction. A store
without transactions (S3) records an intent per call before the calls, and each becomes
a batch when its call returns. A rerun first settles intents a crash left unconfirmed by
asking the store what took effect (``Connector.in_effect``): a committed transaction's
intents become its batches and nothing runs again; a rolled-back one's are discarded and
the store is executed again from its recorded plan, re-validated against a fresh locate
(keys no longer found are dropped: they could belong to someone else by now, if the
database reuses keys); an S3 call's keys that are gone are recorded as deleted.

Batches are audited once per store, in one ledger transaction guarded by the progress
row and by the ledger itself, so the ledger's counts are the rows the store changed. A
store that confirms its work with a reference of its own (a processor: only once the
provider confirmed) has it recorded with the batch and named in the batch's event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from audit.events import EventStatus, NewEvent
from connectors.base import Action, BatchResult, Connector, Findings, Key, StorePlan
from core.crash_points import crash_point
from core.errors import TerminalError
from engine.replan import awaiting_decision, refresh_plan
from engine.request_support import (
    RequestContext,
    batch_record,
    clean_errors,
    findings_from_data,
    intent_batch,
    plan_summary,
    request_context,
    today,
)
from state.progress import BatchIntent, BatchRecord, Phase, StoreProgress
from state.progress_phases import PhaseTaken
from tasks.lifecycle_task import lifecycle_task

_FILTERED = (Action.DELETE, Action.MASK)  # steps on the subject's own rows


def _progress(ctx: RequestContext, request_id: str, store: str) -> StoreProgress:
    row = ctx.progress.store(request_id, store)
    if row is None:
        raise TerminalError(f"request {request_id}: store '{store}' was not located")
    return row


@lifecycle_task("plan-store")
def plan_store(request_id: str, store: str) -> int:
    """Plan the erasure in one store and record it; returns the number of keys it touches."""
    with clean_errors(f"planning the erasure in store '{store}'"):
        ctx = request_context()
        row = _progress(ctx, request_id, store)
        if row.phase is Phase.PLANNED and awaiting_decision(ctx, request_id):
            # A rerun while the plan awaits approval: re-plan if the rows changed meanwhile.
            refresh_plan(ctx, request_id, store, row)
            row = _progress(ctx, request_id, store)
        if row.phase is Phase.SKIPPED or row.phase.reached(Phase.PLANNED):
            return sum(s["count"] for s in row.plan_summary)
        findings = findings_from_data(store, ctx.progress.findings(request_id, store), {})
        with ctx.connector(store) as connector:
            plan = connector.plan_erasure(findings, today(), ctx.subject(request_id))
        summary = plan_summary(plan)
        per_target: dict[str, int] = {}
        for step in plan.steps:
            per_target[step.target] = per_target.get(step.target, 0) + step.count
        event = ctx.event(
            "erasure.planned",
            EventStatus.PLANNED,
            request_id,
            connector=store,
            counts=per_target,
            detail={"digest": plan.digest(), "steps": summary, "warnings": list(plan.warnings)},
        )
        # The plan and its event commit together: a crash between them once left the
        # event without its plan, and the rerun planned and audited the store again.
        record = ctx.progress.planned_step(
            request_id, store, plan.to_json(), plan.digest(), summary
        )

        def record_then_maybe_die(conn: Connection) -> None:
            record(conn)
            crash_point("planning", store)  # tests: killed before the commit

        try:
            ctx.ledger.append_many([event], also=record_then_maybe_die)
        except PhaseTaken:  # another run planned it meanwhile: its plan and event stand
            row = _progress(ctx, request_id, store)
            return sum(s["count"] for s in row.plan_summary)
        crash_point("planned", store)
        return sum(per_target.values())


def revalidate(plan: StorePlan, fresh: Findings) -> tuple[StorePlan, int]:
    """``plan`` without the delete/mask keys a fresh locate no longer finds; and how many.

    Unlink steps name rows that refer to the subject's (not the subject's own rows), and
    defer/keep steps touch nothing, so those stay as planned.
    """
    present = {t.target: set(t.keys) for t in fresh.targets}
    steps = []
    dropped = 0
    for step in plan.steps:
        if step.action in _FILTERED:
            found = present.get(step.target, set())
            kept = tuple(k for k in step.keys if k in found)
            dropped += len(step.keys) - len(kept)
            steps.append(replace(step, keys=kept))
        else:
            steps.append(step)
    return replace(plan, steps=tuple(steps)), dropped


@lifecycle_task("execute-store")
def execute_store(request_id: str, store: str) -> int:
    """Carry out the store's approved plan once, then audit its batches once; rows affected.

    A plan whose store changed since it was made is re-planned first (``engine.replan``);
    one that grew raises ``PlanGrew`` with the request back awaiting approval.
    """
    with clean_errors(f"executing the erasure in store '{store}'"):
        ctx = request_context()
        row = _progress(ctx, request_id, store)
        if row.phase is Phase.SKIPPED:
            return 0
        if not row.phase.reached(Phase.APPROVED):
            raise TerminalError(f"request {request_id}: store '{store}' has no approved plan")
        dropped = 0
        if not row.phase.reached(Phase.EXECUTED):
            if not _fresh(row):
                refresh_plan(ctx, request_id, store, row)  # stale plan: re-planned (PlanGrew)
            dropped = _execute(ctx, request_id, store, row.position)
            crash_point("executed", store)
        audit_batches(ctx, request_id, store, "erasure", dropped)
        crash_point("audited", store)
        return sum(b.affected for b in ctx.progress.batches(request_id, store))


def _fresh(row: StoreProgress) -> bool:
    """Whether the store was located so recently that its plan runs without a re-locate
    (``LIFECYCLE_PLAN_FRESH_SECONDS``): in a batch, or approved at once by the policy."""
    from config.settings import get_settings

    window = get_settings().plan_fresh_seconds
    if not window or row.located_at is None:
        return False
    located = row.located_at if row.located_at.tzinfo else row.located_at.replace(tzinfo=UTC)
    return datetime.now(UTC) - located < timedelta(seconds=window)


def _execute(ctx: RequestContext, request_id: str, store: str, position: int) -> int:
    """Settle what a crash left, else execute the plan once with its batches' intents first.

    Returns how many planned keys were dropped because a fresh locate no longer finds
    them and no recorded batch accounts for them.
    """
    plan = StorePlan.from_json(ctx.progress.plan(request_id, store))
    with ctx.connector(store) as connector:
        transactional = connector.capabilities.transactional
        if _reconcile(ctx, connector, plan, request_id, store):
            return 0  # the transaction had committed: its intents are now its batches
        earlier_attempts = ctx.progress.begin_attempt(request_id, store)
        dropped = 0
        if earlier_attempts:
            fresh = connector.locate(ctx.identities(request_id, before=position))
            planned = plan
            plan, _ = revalidate(plan, fresh)
            dropped = _unaccounted(planned, plan, ctx.progress.committed_keys(request_id, store))
        recorder = _BatchRecorder(ctx, request_id, store, earlier_attempts + 1, transactional)
        connector.execute(plan, recorder.on_batch, recorder.on_prepared)
        recorder.finish()
    return dropped


def _unaccounted(planned: StorePlan, kept: StorePlan, accounted: set[Key]) -> int:
    """Keys revalidation removed that no recorded batch (an earlier attempt's) deleted."""
    left = {(s.target, s.action): set(s.keys) for s in kept.steps}
    return sum(
        1
        for step in planned.steps
        for key in step.keys
        if key not in left.get((step.target, step.action), set()) and key not in accounted
    )


def _as_intent(batch: BatchResult, index: int) -> BatchIntent:
    number = batch.intent if batch.intent is not None else index
    return BatchIntent(batch_record(batch), batch.keys, number)


def _reconcile(
    ctx: RequestContext, connector: Connector, plan: StorePlan, request_id: str, store: str
) -> bool:
    """Settle intents a crash left unconfirmed, from what the store shows; True when the
    store's work is complete (a transaction that committed: nothing to execute again).

    Transactional store: all-or-nothing. Every batch that changed rows is checked; if each
    one's effect is in the store, the transaction committed and its intents (counts taken
    inside it) are its batches; if any is missing, it rolled back and they are discarded.
    Otherwise each intent becomes what took effect of it (keys gone), or is discarded.
    """
    intents = ctx.progress.intents(request_id, store)
    if not intents:
        return False
    prepared = [intent_batch(store, i) for i in intents]
    effects = connector.in_effect(plan, prepared)
    outcome: dict[int, BatchIntent | None]
    if connector.capabilities.transactional:
        committed = all(
            len(e.keys) == len(p.keys)
            for p, e in zip(prepared, effects, strict=True)
            if p.affected and p.keys
        )
        outcome = {i.row: replace(i, keys=()) if committed else None for i in intents}
        ctx.progress.settle_intents(request_id, store, outcome, executed=committed)
        crash_point("reconciled", store)
        return committed
    outcome = {
        i.row: _as_intent(e, i.intent) if e.affected else None
        for i, e in zip(intents, effects, strict=True)
    }
    ctx.progress.settle_intents(request_id, store, outcome, executed=False)
    crash_point("reconciled", store)
    return False


class _BatchRecorder:
    """The callbacks of one execution attempt: intents before, confirmation after.

    A connector that reports no intents (``on_prepared`` never called) gets its batches
    recorded after the fact, all of a transactional store's in one transaction.
    """

    def __init__(
        self, ctx: RequestContext, request_id: str, store: str, attempt: int, transactional: bool
    ) -> None:
        self.ctx, self.request_id, self.store = ctx, request_id, store
        self.attempt, self.transactional = attempt, transactional
        self.prepared = self.confirmed = False
        self.unprepared: list[BatchRecord] = []

    def on_prepared(self, batches: Sequence[BatchResult]) -> None:
        crash_point("preparing", self.store)  # inside the store's work: nothing recorded
        intents = [_as_intent(b, n) for n, b in enumerate(batches)]
        self.ctx.progress.record_intents(self.request_id, self.store, self.attempt, intents)
        self.prepared = True
        crash_point("prepared", self.store)  # intents durable, the store not committed

    def on_batch(self, batch: BatchResult) -> None:
        progress = self.ctx.progress
        if not self.prepared:
            if self.transactional:
                self.unprepared.append(batch_record(batch))
            else:
                progress.record_batch(self.request_id, batch_record(batch), committed=False)
        elif self.transactional:
            if not self.confirmed:  # the first report follows the commit
                crash_point("committed", self.store)
                progress.commit_intents(self.request_id, self.store, self.attempt)
                self.confirmed = True
        else:
            crash_point("deleted", self.store)  # a call returned, its intent unconfirmed
            done = _as_intent(batch, 0)
            progress.complete_intent(self.request_id, self.store, self.attempt, done)

    def finish(self) -> None:
        """After ``execute`` returned: everything took effect; the store is executed."""
        progress = self.ctx.progress
        if self.transactional and self.prepared:
            if not self.confirmed:
                progress.commit_intents(self.request_id, self.store, self.attempt)
        elif self.transactional:
            progress.record_batches(self.request_id, self.store, self.unprepared, committed=True)
        else:
            progress.mark_executed(self.request_id, self.store)


def _batch_detail(batch: BatchRecord) -> dict[str, str]:
    """A batch event's detail: its action and keys digest, and the store's reference for it
    (a processor's confirmation token, never personal data) when the store gave one."""
    detail = {"action": batch.action, "keys_digest": batch.keys_digest}
    if batch.reference is not None:
        detail["reference"] = batch.reference
    return detail


def audit_batches(
    ctx: RequestContext, request_id: str, store: str, prefix: str, dropped: int = 0
) -> None:
    """Audit a store's recorded batches (and deferrals) once, in one ledger transaction.

    ``<prefix>.executed`` closes the group: if the ledger already has it for this store
    (a crash after the append, before the progress row said so), nothing is appended.
    """
    row = _progress(ctx, request_id, store)
    if row.batches_audited:
        return
    if any(
        e.connector == store
        for e in ctx.ledger.events(request_id=request_id, kinds=[f"{prefix}.executed"])
    ):
        ctx.progress.mark_batches_audited(request_id, store)
        return
    batches = ctx.progress.batches(request_id, store)
    events: list[NewEvent] = [
        ctx.event(
            f"{prefix}.batch",
            EventStatus.SUCCEEDED,
            request_id,
            connector=store,
            target=b.target,
            counts={"affected": b.affected},
            detail=_batch_detail(b),
        )
        for b in batches
    ]
    events += [
        ctx.event(
            f"{prefix}.deferred",
            EventStatus.DEFERRED,
            request_id,
            connector=store,
            target=step["target"],
            counts={"deferred": step["count"]},
            detail={"reason": step["reason"], "until": step["until"]},
        )
        for step in row.plan_summary
        if step["action"] == Action.DEFER.value and step["count"]
    ]
    affected: dict[str, int] = {}
    for b in batches:
        affected[b.target] = affected.get(b.target, 0) + b.affected
    digest = hashlib.sha256("\n".join(b.keys_digest for b in batches).encode()).hexdigest()
    events.append(
        ctx.event(
            f"{prefix}.executed",
            EventStatus.SUCCEEDED,
            request_id,
            connector=store,
            counts=affected,
            detail={"batches": len(batches), "batches_digest": digest, "dropped_keys": dropped},
        )
    )
    ctx.audit(*events)
    crash_point("batches-appended", store)  # in the ledger, the progress row not yet told
    ctx.progress.mark_batches_audited(request_id, store)


@lifecycle_task("verify-store")
def verify_store(request_id: str, store: str) -> int:
    """Re-scan the store; returns how many rows that should be gone are still there."""
    with clean_errors(f"verifying the erasure in store '{store}'"):
        ctx = request_context()
        row = _progress(ctx, request_id, store)
        if row.phase in (Phase.SKIPPED, Phase.VERIFIED):
            return 0
        if not row.phase.reached(Phase.EXECUTED):
            raise TerminalError(f"request {request_id}: store '{store}' was not executed")
        plan = StorePlan.from_json(ctx.progress.plan(request_id, store))
        with ctx.connector(store) as connector:
            result = connector.verify(ctx.identities(request_id), plan)
        counts = {
            "remaining": dict(result.remaining),
            "deferred": dict(result.deferred),
            "masked": dict(result.masked),
        }
        ctx.ledger.append_many(  # the event and the progress row commit together
            [
                ctx.event(
                    "erasure.verified",
                    EventStatus.SUCCEEDED if result.clean else EventStatus.FAILED,
                    request_id,
                    connector=store,
                    counts={k: sum(v.values()) for k, v in counts.items()},
                    detail=counts,
                )
            ],
            also=ctx.progress.verification_step(request_id, store, counts, clean=result.clean),
        )
        crash_point("verified", store)
        return sum(result.remaining.values())
