"""Prefect tasks of the retention sweep: thin wrappers over ``engine.sweep_runner``.

One task plans the sweep; one task runs a *range* of batches of one target (up to 50
batches or 10 seconds), never one per row or object; one closes each target, one the
sweep. Declared with ``lifecycle_task`` like every lifecycle task: results not persisted,
no cache, retries only for ``TransientError``; errors leave without causes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from audit.events import EventStatus
from core.errors import LifecycleError
from engine.request_support import clean_errors, safe_message
from engine.sweep_lease import acquire_lease
from engine.sweep_runner import (
    RangeOutcome,
    SweepContext,
    finish_target,
    plan_sweep,
    run_range,
    summarise,
    verify_and_rewind,
)
from retention.targets import SweepTarget
from state.leases import WaitReport
from state.sweeps import SweepProgress, SweepRun
from tasks.lifecycle_task import lifecycle_task


@lifecycle_task("acquire-sweep-lease")
def acquire_lease_task(ctx: SweepContext, wait_minutes: int) -> None:
    """Take the sweep lease, waiting up to ``wait_minutes`` for a running sweep (a log
    line while it waits), then fail naming who holds it and since when."""
    from prefect import get_run_logger

    logger = get_run_logger()
    limit = timedelta(minutes=wait_minutes)
    report = WaitReport(logger.info, job="retention sweep", limit=limit)
    with clean_errors("taking the sweep lease"):
        acquire_lease(ctx, wait=limit, on_wait=report)


@lifecycle_task("plan-sweep")
def plan_sweep_task(
    ctx: SweepContext, as_of: datetime | None, rules: tuple[str, ...], dry_run: bool
) -> SweepRun:
    """Resume the unfinished sweep or count what is expired and held now (counts only)."""
    with clean_errors("planning the sweep"):
        return plan_sweep(ctx, as_of=as_of, rules=rules, dry_run=dry_run)


@lifecycle_task("sweep-range")
def sweep_range_task(
    ctx: SweepContext, run: SweepRun, target: SweepTarget, batch_size: int
) -> RangeOutcome:
    """A range of batches of one target, each audited with its count and key digest."""
    with clean_errors(f"sweeping {target.id}"):
        return run_range(ctx, run, target, batch_size=batch_size)


MAX_PASSES = 3
"""A target is re-scanned after its batches; expired data still found (an object store's
listing skipped a key, rows written behind the cursor) starts another pass from the top."""


@lifecycle_task("verify-sweep-target")
def verify_target_task(ctx: SweepContext, run: SweepRun, target: SweepTarget) -> int:
    """Re-scan the target: expired, unheld data left; when some is, rewind for another pass."""
    with clean_errors(f"verifying {target.id}"):
        return verify_and_rewind(ctx, run, target)


@lifecycle_task("finish-sweep-target")
def finish_target_task(ctx: SweepContext, run: SweepRun, target: SweepTarget) -> dict[str, Any]:
    """Secure-erasure follow-up for the target and its ledger event."""
    with clean_errors(f"finishing {target.id}"):
        return finish_target(ctx, run, target)


@lifecycle_task("summarise-sweep")
def summarise_task(ctx: SweepContext, run: SweepRun, status: str) -> dict[str, Any]:
    """Close the sweep in our tables and the ledger."""
    with clean_errors("summarising the sweep"):
        return summarise(ctx, run, status=status)


def record_target_failure(
    ctx: SweepContext, run: SweepRun, target: SweepTarget, error: BaseException
) -> None:
    """Audit a target that failed (the sweep stays resumable) and mark it failed."""
    message = safe_message(error) if isinstance(error, LifecycleError) else None
    state = ctx.progress.target(run.id, target.id)
    ctx.append(
        [
            ctx.event(
                "sweep.target",
                EventStatus.FAILED,
                run.id,
                connector=target.store,
                target=target.id,
                counts={"done": state.done, "batches": state.batches},
                detail={"error": message or type(error).__name__},
            )
        ],
        also=SweepProgress.target_state(run.id, target.id, "failed"),
    )
