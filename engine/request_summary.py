"""A request's outcome and its artifacts' content, from our own tables: counts, never contents.

Used by the flow (return value; ``tasks.request_tasks`` publishes the artifacts) and by
``lifecycle request status``. Rows
are per store and target: action, count, deferred, reason. Nothing here reads a store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connectors.base import SHARED_REASON, WITHHELD_REASON
from engine.request_models import Deferral, Kept, PackageOutcome, RequestOutcome, StoreOutcome
from state.progress import Phase, RequestProgress, StoreProgress
from state.register import RequestRecord

if TYPE_CHECKING:
    from engine.request_support import RequestContext

_NOT_THEIRS_ALONE = (SHARED_REASON, WITHHELD_REASON)
TABLE_COLUMNS = ("store", "target", "action", "count", "deferred", "reason")


def _store_outcome(progress: RequestProgress, request_id: str, row: StoreProgress) -> StoreOutcome:
    batches = progress.batches(request_id, row.store)
    verification = row.verification or {}
    return StoreOutcome(
        store=row.store,
        phase=row.phase.value,
        found=row.found,
        affected=sum(b.affected for b in batches),
        deferred=sum(s["count"] for s in row.plan_summary if s["action"] == "defer"),
        remaining=sum(verification.get("remaining", {}).values()),
        skipped_reason=row.skip_reason,
    )


def build_outcome(
    progress: RequestProgress, record: RequestRecord, rows: list[StoreProgress]
) -> RequestOutcome:
    """The outcome of ``record`` given its store progress rows."""
    run = progress.runs.run(record.id)
    package = None
    if run.package_location and run.package_sha256 and run.package_bytes is not None:
        package = PackageOutcome(
            location=run.package_location, sha256=run.package_sha256, size=run.package_bytes
        )
    deferrals = [
        Deferral(
            store=row.store,
            target=step["target"],
            count=step["count"],
            reason=step.get("reason"),
            until=step.get("until"),
        )
        for row in rows
        for step in row.plan_summary
        if step["action"] == "defer" and step["count"]
    ]
    return RequestOutcome(
        request_id=record.id,
        kind=record.kind.value,
        status=record.status.value,
        stores=[_store_outcome(progress, record.id, row) for row in rows],
        deferrals=deferrals,
        kept=kept_rows(progress, record.id, rows),
        package=package,
    )


def kept_rows(progress: RequestProgress, request_id: str, rows: list[StoreProgress]) -> list[Kept]:
    """Rows kept because they are shared or another person's: as planned, and as found when
    writing (an erasure's reference added while the plan waited; a rectification)."""
    kept = [
        Kept(store=row.store, target=s["target"], count=s["count"], reason=s.get("reason"))
        for row in rows
        for s in row.plan_summary
        if s["action"] == "keep"
        and s["count"]
        and s.get("reason") in (SHARED_REASON, WITHHELD_REASON)
    ]
    for row in rows:
        late: dict[str, int] = {}
        for b in progress.batches(request_id, row.store):
            if b.action == "keep" and b.affected:
                late[b.target] = late.get(b.target, 0) + b.affected
        kept += [
            Kept(
                store=row.store,
                target=target,
                count=count,
                reason=f"{SHARED_REASON} (seen when writing)",
            )
            for target, count in sorted(late.items())
        ]
    return kept


def outcome_of(ctx: RequestContext, request_id: str) -> RequestOutcome:
    return build_outcome(ctx.progress, ctx.record(request_id), ctx.progress.stores(request_id))


def table_rows(kind: str, rows: list[StoreProgress]) -> list[dict[str, Any]]:
    """Per store and target: action, count, deferred, reason (the table artifact)."""
    out: list[dict[str, Any]] = []
    for row in rows:
        if row.phase is Phase.SKIPPED:
            out.append(_row(row.store, "*", "skip", 0, 0, row.skip_reason))
        elif kind == "erasure" and row.plan_summary:
            for s in row.plan_summary:
                deferred = s["count"] if s["action"] == "defer" else 0
                out.append(
                    _row(row.store, s["target"], s["action"], s["count"], deferred, s["reason"])
                )
        else:
            action = {"access": "export", "rectification": "rectify"}.get(kind, "none")
            for target, count in row.counts.items():
                out.append(_row(row.store, target, action, count, 0, None))
    return out


def _row(*values: Any) -> dict[str, Any]:
    """A table row from values in ``TABLE_COLUMNS`` order (no reason shows as empty)."""
    return {c: "" if v is None else v for c, v in zip(TABLE_COLUMNS, values, strict=True)}


def summary_markdown(outcome: RequestOutcome) -> str:
    """The request's summary for the markdown artifact: status and counts per store."""
    lines = [
        f"# Subject request {outcome.request_id}",
        "",
        f"**Kind:** {outcome.kind}  ",
        f"**Status:** {outcome.status}",
        "",
        "| store | phase | found | affected | deferred | remaining | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for s in outcome.stores:
        lines.append(
            f"| {s.store} | {s.phase} | {s.found} | {s.affected} | {s.deferred} "
            f"| {s.remaining} | {s.skipped_reason or ''} |"
        )
    if outcome.deferrals:
        lines += ["", "## Deferred", ""]
        for d in outcome.deferrals:
            until = f" until {d.until}" if d.until else ""
            lines.append(
                f"- {d.store}.{d.target}: {d.count} ({d.reason or 'no reason given'}{until})"
            )
    if outcome.package is not None:
        lines += [
            "",
            f"Access package: {outcome.package.size} bytes, SHA-256 `{outcome.package.sha256}`",
        ]
    return "\n".join(lines) + "\n"


def artifact_key(request_id: str, suffix: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return f"subject-request-{request_id.replace('_', '-').lower()}-{suffix}"
