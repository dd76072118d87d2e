"""Tasks every kind of subject request uses: locate per store, status moves, failure, completion.

Each task takes the request id (and a store name), reads what it needs from the register
and the progress tables, does one side effect and audits it. Each is safe to run again:
a rerun after a crash skips what the progress tables say is done.
"""

from __future__ import annotations

from audit.events import EventStatus
from connectors.base import Findings, Identities
from core.crash_points import crash_point
from core.errors import LifecycleError, TerminalError, TransientError
from engine.request_models import RequestOutcome
from engine.request_summary import artifact_key, outcome_of, outcome_rows, summary_markdown
from engine.request_support import (
    FLOW_ACTOR,
    RequestContext,
    clean_errors,
    findings_data,
    has_connector,
    request_context,
    safe_message,
    status_past,
)
from state.progress import Phase
from state.register import RequestStatus
from tasks.lifecycle_task import lifecycle_task

RESUMABLE = frozenset({RequestStatus.FAILED})


@lifecycle_task("prepare-request")
def prepare_request(request_id: str) -> tuple[str, str]:
    """Check the request can run and resume a failed one; returns its kind and status.

    A request that failed during execution goes back to executing: the progress tables
    say which stores are done, so nothing is executed twice.
    """
    with clean_errors("preparing the request"):
        ctx = request_context()
        record = ctx.record(request_id)
        ctx.progress.runs.ensure_run(request_id)
        if record.status in RESUMABLE:
            ctx.register.transition(
                request_id,
                RequestStatus.EXECUTING,
                actor=FLOW_ACTOR,
                note="resumed after a failure",
                expected=RequestStatus.FAILED,
            )
        return record.kind.value, ctx.record(request_id).status.value


@lifecycle_task("locate-store")
def locate_store(request_id: str, store: str) -> int:
    """Find the subject's data in ``store`` with the identities known so far; returns the count.

    Identities derived by earlier stores (inventory order) are used too. A store located
    before (a rerun) is not searched again: its recorded findings stand, so data erased
    since then is not mistaken for "nothing found".
    """
    with clean_errors(f"locating in store '{store}'"):
        ctx = request_context()
        done = ctx.progress.store(request_id, store)
        if done is not None:
            return done.found
        position = ctx.position(store)
        config = ctx.config.store(store)
        if not has_connector(config.type):
            reason = f"no connector for store type '{config.type}' yet"
            ctx.audit(
                ctx.event(
                    "store.skipped",
                    EventStatus.SKIPPED,
                    request_id,
                    connector=store,
                    detail={"reason": reason, "store_type": config.type},
                )
            )
            ctx.progress.record_skipped(request_id, store, position, reason)
            return 0
        identities = ctx.identities(request_id, before=position)
        with ctx.connector(store) as connector:
            findings = connector.locate(identities)
        record_located(ctx, request_id, store, identities, findings)
        return findings.total


def record_located(
    ctx: RequestContext, request_id: str, store: str, identities: Identities, findings: Findings
) -> None:
    """Record what locating ``store`` found for the request: progress row and ledger event.

    Shared by the single request's step and the batch's set-based locate
    (``tasks.batch_tasks``), so both leave exactly the same record.
    """
    # The event and the progress row commit together: a crash before them means this
    # store is searched again, never audited twice or located without an event.
    located = ctx.progress.located_step(
        request_id,
        store,
        ctx.position(store),
        counts=findings.counts(),
        findings=findings_data(findings),
        derived=findings.derived,
    )
    ctx.ledger.append_many(
        [
            ctx.event(
                "store.located",
                EventStatus.SUCCEEDED,
                request_id,
                connector=store,
                counts=findings.counts(),
                detail={
                    "identity_kinds": sorted(identities),
                    "derived_kinds": sorted(findings.derived),
                    "warnings": list(findings.warnings),
                },
            )
        ],
        also=located,
    )
    crash_point("located", store)


@lifecycle_task("advance-request")
def advance_request(request_id: str, to: str, note: str | None = None) -> str:
    """Move the request to status ``to`` unless it is already there or past it (reruns)."""
    with clean_errors("changing the request status"):
        ctx = request_context()
        target = RequestStatus(to)
        record = ctx.record(request_id)
        if record.status == target or status_past(record.status, target):
            return record.status.value
        ctx.register.transition(
            request_id, target, actor=FLOW_ACTOR, note=note, expected=record.status
        )
        return target.value


@lifecycle_task("record-nothing-found")
def record_nothing_found(request_id: str) -> None:
    """Every store was searched and none holds the subject's data: say so in the ledger."""
    with clean_errors("recording nothing found"):
        ctx = request_context()
        if any(ctx.ledger.events(request_id=request_id, kinds=["request.nothing_found"])):
            return
        stores = ctx.progress.stores(request_id)
        ctx.audit(
            ctx.event(
                "request.nothing_found",
                EventStatus.SUCCEEDED,
                request_id,
                detail={
                    "searched": [s.store for s in stores if s.phase is not Phase.SKIPPED],
                    "skipped": [s.store for s in stores if s.phase is Phase.SKIPPED],
                },
            )
        )


@lifecycle_task("record-failure")
def record_failure(request_id: str, store: str | None, error: str, message: str | None) -> None:
    """Audit a failure: which store, what error, and what had been done before it.

    A request that failed while executing or verifying becomes ``failed`` (a rerun resumes
    it); one that failed earlier keeps its status, since nothing was changed yet.
    """
    with clean_errors("recording a failure"):
        ctx = request_context()
        stores = ctx.progress.stores(request_id)
        done = [
            {"store": s.store, "phase": s.phase.value}
            for s in stores
            if s.phase.reached(Phase.EXECUTED)
        ]
        detail: dict[str, object] = {"error": error, "done_before": done}
        if message is not None:
            detail["message"] = message
        ctx.audit(
            ctx.event(
                "request.failed", EventStatus.FAILED, request_id, connector=store, detail=detail
            )
        )
        record = ctx.record(request_id)
        if record.status in (RequestStatus.EXECUTING, RequestStatus.VERIFYING):
            ctx.register.transition(
                request_id,
                RequestStatus.FAILED,
                actor=FLOW_ACTOR,
                note=f"failed at store {store}" if store else "failed",
                expected=record.status,
            )


def failure_fields(error: BaseException) -> tuple[str, str | None]:
    """The error's type and (when safe for the ledger) message, for ``record_failure``."""
    if isinstance(error, LifecycleError):
        return type(error).__name__, safe_message(error)
    return type(error).__name__, None


@lifecycle_task("complete-request")
def complete_request(request_id: str) -> str:
    """Close the request as completed (identity destroyed) and record that exactly once.

    Compare-and-set twice: the register moves only from ``verifying`` to ``completed``,
    and only the run that claims the completion row appends "request.completed". A rerun
    after a crash between the two finds the claim missing, or the event missing, and
    finishes the job without repeating it.
    """
    with clean_errors("completing the request"):
        ctx = request_context()
        record = ctx.record(request_id)
        if record.status == RequestStatus.VERIFYING:
            ctx.progress.forget(request_id)
            try:
                ctx.register.close(
                    request_id,
                    outcome=RequestStatus.COMPLETED,
                    actor=FLOW_ACTOR,
                    expected=RequestStatus.VERIFYING,
                )
            except (TerminalError, TransientError):
                if ctx.record(request_id).status != RequestStatus.COMPLETED:
                    raise  # not a concurrent close: a real problem
            ctx.progress.vacuum()
            crash_point("closed")
        elif record.status != RequestStatus.COMPLETED:
            raise TerminalError(
                f"request {request_id} is '{record.status}'; only a verified request completes",
                request_id=request_id,
            )
        claimed = ctx.progress.runs.claim_completion(request_id)
        if not claimed and any(
            ctx.ledger.events(request_id=request_id, kinds=["request.completed"])
        ):
            return RequestStatus.COMPLETED.value
        outcome = outcome_of(ctx, request_id)
        ctx.audit(
            ctx.event(
                "request.completed",
                EventStatus.SUCCEEDED,
                request_id,
                counts={
                    "stores": len(outcome.stores),
                    "found": sum(s.found for s in outcome.stores),
                    "affected": sum(s.affected for s in outcome.stores),
                    "deferred": sum(d.count for d in outcome.deferrals),
                },
                detail={"kind": outcome.kind, "deferrals": len(outcome.deferrals)},
            )
        )
        crash_point("completed")
        return RequestStatus.COMPLETED.value


@lifecycle_task("close-rejected")
def close_rejected(request_id: str, note: str) -> None:
    """End a rejected (or timed-out) request without touching data; its identity is destroyed."""
    with clean_errors("rejecting the request"):
        ctx = request_context()
        record = ctx.record(request_id)
        if record.status.terminal:
            return
        ctx.progress.forget(request_id)
        ctx.register.close(
            request_id,
            outcome=RequestStatus.REJECTED,
            actor=FLOW_ACTOR,
            note=note,
            expected=record.status,
        )
        ctx.progress.vacuum()


@lifecycle_task("summarize-request")
def summarize_request(request_id: str) -> RequestOutcome:
    """The request's outcome from the register and progress tables (counts only)."""
    with clean_errors("summarizing the request"):
        return outcome_of(request_context(), request_id)


@lifecycle_task("publish-summary")
def publish_summary(request_id: str) -> RequestOutcome:
    """Publish the outcome as Prefect artifacts (markdown and a table): counts, no contents."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    with clean_errors("publishing the summary"):
        ctx = request_context()
        outcome = outcome_of(ctx, request_id)
        _, rows = outcome_rows(outcome)
        create_markdown_artifact(
            key=artifact_key(request_id, "summary"),
            markdown=summary_markdown(outcome),
            description=f"Subject request {request_id}: outcome",
        )
        create_table_artifact(
            key=artifact_key(request_id, "steps"),
            table=rows,
            description=f"Subject request {request_id}: per store and table",
        )
        return outcome
