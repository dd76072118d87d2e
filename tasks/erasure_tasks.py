"""Erasure tasks, one per store: plan, execute (resumable, audited once), verify.

Execution is where a crash matters most. The connector reports each batch after the
store's transaction commits; the first report marks the store executed (transactional
stores), so a rerun never executes it again. Batches are audited once per store, in one
ledger transaction guarded by the progress row and by the ledger itself. A store whose
transaction did not commit is executed again from its recorded plan, re-validated
against a fresh locate: keys no longer found are dropped (they could belong to someone
else by now, if the database reuses keys).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from audit.events import EventStatus, NewEvent
from audit.progress import Phase, StoreProgress
from connectors.base import Action, BatchResult, Findings, StorePlan
from core.errors import TerminalError
from tasks.request_support import (
    RequestContext,
    batch_record,
    clean_errors,
    crash_point,
    findings_from_data,
    plan_summary,
    request_context,
    request_task,
    today,
)

_FILTERED = (Action.DELETE, Action.MASK)  # steps on the subject's own rows


def _progress(ctx: RequestContext, request_id: str, store: str) -> StoreProgress:
    row = ctx.progress.store(request_id, store)
    if row is None:
        raise TerminalError(f"request {request_id}: store '{store}' was not located")
    return row


@request_task("plan-store")
def plan_store(request_id: str, store: str) -> int:
    """Plan the erasure in one store and record it; returns the number of keys it touches."""
    with clean_errors(f"planning the erasure in store '{store}'"):
        ctx = request_context()
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
        ctx.audit(
            ctx.event(
                "erasure.planned",
                EventStatus.PLANNED,
                request_id,
                connector=store,
                counts=per_target,
                detail={"digest": plan.digest(), "steps": summary, "warnings": list(plan.warnings)},
            )
        )
        ctx.progress.record_plan(
            request_id, store, plan=plan.to_json(), digest=plan.digest(), summary=summary
        )
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


@request_task("execute-store")
def execute_store(request_id: str, store: str) -> int:
    """Carry out the store's approved plan once, then audit its batches once; rows affected."""
    with clean_errors(f"executing the erasure in store '{store}'"):
        ctx = request_context()
        row = _progress(ctx, request_id, store)
        if row.phase is Phase.SKIPPED:
            return 0
        if not row.phase.reached(Phase.APPROVED):
            raise TerminalError(f"request {request_id}: store '{store}' has no approved plan")
        dropped = 0
        if not row.phase.reached(Phase.EXECUTED):
            dropped = _execute(ctx, request_id, store, row.position)
            crash_point("executed", store)
        audit_batches(ctx, request_id, store, "erasure", dropped)
        crash_point("audited", store)
        return sum(b.affected for b in ctx.progress.batches(request_id, store))


def _execute(ctx: RequestContext, request_id: str, store: str, position: int) -> int:
    plan = StorePlan.from_json(ctx.progress.plan(request_id, store))
    earlier_attempts = ctx.progress.begin_attempt(request_id, store)
    dropped = 0
    with ctx.connector(store) as connector:
        if earlier_attempts:
            fresh = connector.locate(ctx.identities(request_id, before=position))
            plan, dropped = revalidate(plan, fresh)
        transactional = connector.capabilities.transactional

        def on_batch(batch: BatchResult) -> None:
            # Called after the commit: for a one-transaction store the first report
            # proves the whole plan committed, so the store is marked executed with it.
            ctx.progress.record_batch(request_id, batch_record(batch), committed=transactional)

        connector.execute(plan, on_batch)
    ctx.progress.mark_executed(request_id, store)
    return dropped


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
            detail={"action": b.action, "keys_digest": b.keys_digest},
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
    ctx.progress.mark_batches_audited(request_id, store)


@request_task("verify-store")
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
        ctx.audit(
            ctx.event(
                "erasure.verified",
                EventStatus.SUCCEEDED if result.clean else EventStatus.FAILED,
                request_id,
                connector=store,
                counts={k: sum(v.values()) for k, v in counts.items()},
                detail=counts,
            )
        )
        ctx.progress.record_verification(request_id, store, counts, clean=result.clean)
        crash_point("verified", store)
        return sum(result.remaining.values())
