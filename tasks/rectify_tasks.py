"""Rectification: apply the corrected values in each store, then re-locate to verify.

The corrections (``table.column`` or a bare field name -> new value) come from the
register, sealed until the request closes; each store gets the ones that name its tables
or fields (``Rectifying.changes_for``). A store whose connector cannot rectify claims
none, and intake refused any correction no store claims. Rectifying is idempotent (it
sets values), so a store whose progress does not say "executed" is simply rectified
again after a crash. A store's reference for a batch (a processor's confirmation) is
recorded with it and named in its ``rectification.batch`` event (``audit_batches``). A
store an operator rectifies by hand (a manual processor: ``AwaitingConfirmation``) has its
batch written down as an intent first, which the operator's answer settles
(``engine.confirmation``).
"""

from __future__ import annotations

from audit.events import EventStatus
from connectors.base import AwaitingConfirmation, BatchResult, Rectifying
from connectors.registry import supports
from core.crash_points import crash_point
from core.errors import TerminalError
from engine.intake import decode_changes
from engine.request_support import (
    RequestContext,
    batch_record,
    clean_errors,
    findings_from_data,
    request_context,
)
from state.progress import BatchIntent, Phase
from tasks.erasure_tasks import audit_batches
from tasks.lifecycle_task import lifecycle_task


@lifecycle_task("rectify-store")
def rectify_store(request_id: str, store: str) -> int:
    """Write the corrections to the subject's rows in ``store``; returns rows updated."""
    with clean_errors(f"rectifying in store '{store}'"):
        ctx = request_context()
        row = ctx.progress.store(request_id, store)
        if row is None:
            raise TerminalError(f"request {request_id}: store '{store}' was not located")
        if row.phase is Phase.SKIPPED:
            return 0
        if not row.phase.reached(Phase.EXECUTED):
            _rectify(ctx, request_id, store)
            crash_point("executed", store)
        audit_batches(ctx, request_id, store, "rectification")
        return sum(b.affected for b in ctx.progress.batches(request_id, store))


def _rectify(ctx: RequestContext, request_id: str, store: str) -> None:
    findings = findings_from_data(store, ctx.progress.findings(request_id, store), {})
    results: list[BatchResult] | None = None  # None: nothing of this store's to correct
    if findings.total:
        with ctx.connector(store) as connector:
            if supports(connector, Rectifying):
                changes = decode_changes(ctx.register.open_changes(request_id))
                picked = connector.changes_for(changes)
                try:
                    results = connector.rectify(findings, picked) if picked else None
                except AwaitingConfirmation as awaiting:  # a manual processor: its intent first
                    _record_awaited(ctx, request_id, store, awaiting)
                    raise
    if results is not None:
        crash_point("rectified", store)  # committed, not recorded: rectified again (idempotent)
        # One transaction per store, reported after its commit: every batch recorded at
        # once, with the store marked executed, so a crash cannot record only some.
        records = [batch_record(batch) for batch in results]
        ctx.progress.record_batches(request_id, store, records, committed=True)
    ctx.progress.mark_executed(request_id, store)


def _record_awaited(
    ctx: RequestContext, request_id: str, store: str, awaiting: AwaitingConfirmation
) -> None:
    """Write the awaited batches down as the store's intents, once: the operator's answer
    settles them (``engine.confirmation``); a rerun finds them and asks the same question."""
    if ctx.progress.intents(request_id, store):
        return
    attempt = ctx.progress.begin_attempt(request_id, store) + 1
    intents = [BatchIntent(batch_record(b), b.keys, n) for n, b in enumerate(awaiting.batches)]
    ctx.progress.record_intents(request_id, store, attempt, intents)


@lifecycle_task("verify-rectified-store")
def verify_rectified_store(request_id: str, store: str) -> int:
    """Re-locate the subject (with corrected identities); returns rows no longer found."""
    with clean_errors(f"verifying the rectification in store '{store}'"):
        ctx = request_context()
        row = ctx.progress.store(request_id, store)
        if row is None or row.phase in (Phase.SKIPPED, Phase.VERIFIED):
            return 0
        identities = ctx.identities(request_id, before=row.position)
        with ctx.connector(store) as connector:
            if supports(connector, Rectifying):  # find the subject by corrected values too
                changes = decode_changes(ctx.register.open_changes(request_id))
                identities = connector.identities_after(identities, changes)
            fresh = connector.locate(identities).counts()
        lost = {t: n - fresh.get(t, 0) for t, n in row.counts.items() if n > fresh.get(t, 0)}
        recorded = ctx.progress.verification_step(
            request_id, store, {"remaining": lost}, clean=not lost
        )
        ctx.ledger.append_many(  # the event and the progress row commit together
            [
                ctx.event(
                    "rectification.verified",
                    EventStatus.FAILED if lost else EventStatus.SUCCEEDED,
                    request_id,
                    connector=store,
                    counts={"found_before": row.found, "found_after": sum(fresh.values())},
                    detail={"lost": lost},
                )
            ],
            also=recorded,
        )
        crash_point("verified", store)
        return sum(lost.values())
