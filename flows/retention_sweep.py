"""The nightly retention sweep: plan, (stop here on a dry run,) sweep each target, summarise.

Thin: every step is a task in ``tasks.sweep_tasks``. Progress is a Prefect progress
artifact updated after every batch range; the plan and the result are table and
markdown artifacts with counts per rule and target (no keys, no personal data). A
target that fails does not stop the others; the flow then fails naming it, and the
next run (scheduled or by hand) resumes the same sweep from its recorded cursor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from prefect import flow
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from pydantic import BaseModel, Field

from core.errors import TerminalError
from engine.sweep_runner import DEFAULT_BATCH_SIZE, SweepContext, sweep_context
from state.leases import LeaseLost
from state.sweeps import SweepConflict, SweepRun
from tasks.sweep_tasks import (
    MAX_PASSES,
    acquire_lease_task,
    finish_target_task,
    plan_sweep_task,
    record_target_failure,
    summarise_task,
    sweep_range_task,
    verify_target_task,
)


class SweepParameters(BaseModel):
    """What the operator can choose when starting a sweep (the UI renders this form)."""

    dry_run: bool = Field(
        default=False,
        description="Plan only: count what is expired and what legal holds keep, change nothing.",
    )
    rules: list[str] = Field(
        default_factory=list,
        description="Only targets these retention rule ids apply to (empty: every rule).",
    )
    batch_size: int = Field(
        default=DEFAULT_BATCH_SIZE,
        ge=100,
        le=200_000,
        description="Rows per SQL batch; each batch is its own short transaction.",
    )
    as_of: datetime | None = Field(
        default=None,
        description="Measure ages from this moment instead of now (UTC); normally empty.",
    )
    wait_minutes: int = Field(
        default=60,
        ge=0,
        le=24 * 60,
        description="When another sweep is running (it holds the sweep lease), wait up to "
        "this many minutes for it to finish, then fail naming it; 0: fail at once.",
    )


def _percent(ctx: SweepContext, run: SweepRun) -> float:
    done, planned = ctx.progress.totals(run.id)
    return 100.0 if planned == 0 else min(100.0, round(100.0 * done / planned, 1))


def _plan_table(run: SweepRun) -> list[dict[str, Any]]:
    return [
        {
            "target": p["label"],
            "action": p["action"] + (f" ({', '.join(p['fields'])})" if p["fields"] else ""),
            "rule": p["governing_rule"],
            "age": p["age"],
            "clock": p["clock"],
            "expired": p["expired"],
            "held": p["held"],
            "holds": ", ".join(p["holds"] + p["partial_holds"]) or "-",
        }
        for p in run.plan
    ]


def _markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# Retention sweep {summary['sweep_id']}: {summary['status']}",
        "",
        f"Ages measured from **{summary['as_of']}** (UTC).",
        "",
        f"- deleted: **{summary['deleted']}**",
        f"- anonymized: **{summary['anonymized']}**",
        f"- kept under legal hold or Object Lock: **{summary['held']}**",
        "",
        "| target | action | planned | done | held | batches | state |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {t['target']} | {t['action']} | {t['planned']} | {t['done']} | {t['held']} "
        f"| {t['batches']} | {t['state']} |"
        for t in summary["targets"]
    ]
    if summary["status"] == "failed":
        lines += ["", "Failed targets keep their cursor: run the sweep again to resume it."]
    return "\n".join(lines) + "\n"


def _sweep_targets(ctx: SweepContext, run: SweepRun, batch_size: int) -> list[str]:
    """Sweep every target not yet done; returns the ids of the targets that failed."""
    progress_id: UUID = create_progress_artifact(  # type: ignore[assignment]  # sync context
        progress=_percent(ctx, run),
        key="retention-sweep-progress",
        description=f"Retention sweep {run.id}: share of expired rows and objects handled",
    )
    states = {s.target: s.state for s in ctx.progress.targets(run.id)}
    failed: list[str] = []
    for target in ctx.targets(run):
        if states.get(target.id) in ("done", "held") and not target.held:
            continue
        try:
            for _ in range(MAX_PASSES if not target.held else 0):
                while True:
                    outcome = sweep_range_task(ctx, run, target, batch_size)
                    update_progress_artifact(progress_id, _percent(ctx, run))
                    if outcome.finished:
                        break
                if verify_target_task(ctx, run, target) == 0:
                    break
            else:
                if not target.held:
                    raise TerminalError(
                        f"{target.id}: expired data still found after {MAX_PASSES} passes",
                        target=target.id,
                    )
            finish_target_task(ctx, run, target)
        except (LeaseLost, SweepConflict):
            raise  # another run has taken this sweep over: write nothing more, stop
        except Exception as e:  # recorded per target; the flow fails after the others ran
            record_target_failure(ctx, run, target, e)
            failed.append(target.id)
    update_progress_artifact(progress_id, 100.0 if not failed else _percent(ctx, run))
    return failed


@flow(name="retention-sweep", log_prints=False)
def retention_sweep(params: SweepParameters = SweepParameters()) -> dict[str, Any]:  # noqa: B008
    """Delete or anonymize what retention rules say is expired, except what holds keep.

    A run resumes an unfinished sweep (same cut-offs) before starting a new one. One
    sweep at a time: a real sweep first takes the sweep lease, waiting up to
    ``wait_minutes`` for a running one; closing the context releases it.
    """
    with sweep_context() as ctx:
        if not params.dry_run:
            acquire_lease_task(ctx, params.wait_minutes)
        run = plan_sweep_task(ctx, params.as_of, tuple(params.rules), params.dry_run)
        create_table_artifact(
            key="retention-sweep-plan",
            table=_plan_table(run),
            description=f"Retention sweep {run.id}: expired and held per target (counts only)",
        )
        if run.dry_run:
            summary = summarise_task(ctx, run, "dry_run")
            create_markdown_artifact(
                key="retention-sweep-summary",
                markdown=_markdown(summary),
                description="Retention sweep (dry run): nothing was changed",
            )
            return summary
        failed = _sweep_targets(ctx, run, params.batch_size)
        summary = summarise_task(ctx, run, "failed" if failed else "completed")
        create_markdown_artifact(
            key="retention-sweep-summary",
            markdown=_markdown(summary),
            description=f"Retention sweep {run.id}",
        )
        create_table_artifact(
            key="retention-sweep-result",
            table=summary["targets"],
            description=f"Retention sweep {run.id}: what was done per target",
        )
        if failed:
            raise TerminalError(
                f"retention sweep {run.id}: {len(failed)} target(s) failed "
                f"({', '.join(failed)}); the others finished. Run the sweep again to resume "
                "the failed targets from where they stopped.",
                sweep_id=run.id,
            )
        return summary
