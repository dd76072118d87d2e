"""A request's outcome and its artifacts' content, from our own tables: counts, never contents.

Used by the flow (return value; ``tasks.request_tasks`` publishes the artifacts) and by
``lifecycle request submit`` and ``status``. The outcome is per store and per table: what
was found, deleted, masked, exported or rectified, what was kept or deferred and why, and
what verification found left. Nothing here reads a store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connectors.base import SHARED_REASON, WITHHELD_REASON
from engine.request_models import (
    Deferral,
    FailureReport,
    Kept,
    PackageOutcome,
    RequestOutcome,
    StoreOutcome,
    TableOutcome,
)
from state.progress import BatchRecord, Phase, RequestProgress, StoreProgress
from state.register import RequestRecord

if TYPE_CHECKING:
    from audit.ledger import Ledger
    from engine.request_support import RequestContext

_NOT_THEIRS_ALONE = (SHARED_REASON, WITHHELD_REASON)
TABLE_COLUMNS = ("store", "target", "action", "count", "deferred", "reason")
_DONE = {"delete": "deleted", "mask": "masked", "rectify": "rectified", "unlink": "unlinked"}
"""Batch actions and the ``TableOutcome`` count each adds to."""
Exported = Mapping[str, Mapping[str, int]]
"""Records written to an access package, per store and target."""


def _store_outcome(row: StoreProgress, batches: Sequence[BatchRecord]) -> StoreOutcome:
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


def exported_counts(ledger: Ledger, request_id: str) -> dict[str, dict[str, int]]:
    """Records the request's access package holds per store and target (from the ledger's
    last ``access.package`` event; empty when none was written)."""
    events = ledger.events(
        request_id=request_id, kinds=["access.package"], newest_first=True, limit=1
    )
    last = next(iter(events), None)
    counts = {} if last is None else last.detail.get("counts", {})
    return {str(s): {str(t): int(n) for t, n in c.items()} for s, c in counts.items()}


def _join(reasons: list[str | None]) -> str | None:
    unique = list(dict.fromkeys(r for r in reasons if r))
    return "; ".join(unique) or None


def _targets(row: StoreProgress, batches: Sequence[BatchRecord]) -> list[str]:
    """The store's tables in the order found, then planned, then written."""
    names = [*row.counts, *(s["target"] for s in row.plan_summary), *(b.target for b in batches)]
    return list(dict.fromkeys(names))


def _table(
    row: StoreProgress, target: str, batches: Sequence[BatchRecord], exported: Mapping[str, int]
) -> TableOutcome:
    """One table of one store, from its counts, plan steps, batches and verification."""
    out = TableOutcome(
        store=row.store,
        target=target,
        phase=row.phase.value,
        found=row.counts.get(target, 0),
        exported=exported.get(target, 0),
        remaining=(row.verification or {}).get("remaining", {}).get(target, 0),
    )
    kept: list[str | None] = []
    deferred: list[str | None] = []
    masked: list[str | None] = []
    notes: list[str | None] = []
    for step in (s for s in row.plan_summary if s["target"] == target):
        action, count, reason = step["action"], int(step["count"]), step.get("reason")
        if action == "keep" and count:
            out.kept += count
            kept.append(reason)
        elif action == "defer" and count:
            out.deferred += count
            deferred.append(reason)
            out.deferred_until = step.get("until") or out.deferred_until
        elif count:
            out.planned[action] = out.planned.get(action, 0) + count
            (masked if action == "mask" else notes).append(reason)
    for batch in (b for b in batches if b.target == target):
        if batch.action == "keep" and batch.affected:  # shared, seen when writing
            out.kept += batch.affected
            kept.append(f"{SHARED_REASON} (seen when writing)")
        elif batch.action in _DONE:
            field = _DONE[batch.action]
            setattr(out, field, getattr(out, field) + batch.affected)
    out.kept_reason, out.deferred_reason = _join(kept), _join(deferred)
    out.masked_reason, out.note = _join(masked), _join(notes)
    return out


def table_outcomes(
    rows: Sequence[StoreProgress],
    batches: Mapping[str, Sequence[BatchRecord]],
    exported: Exported | None = None,
) -> list[TableOutcome]:
    """Per store and table, in inventory order: a skipped store or one where nothing was
    found is one row (target ``*``) saying so."""
    out: list[TableOutcome] = []
    for row in rows:
        if row.phase is Phase.SKIPPED:
            out.append(
                TableOutcome(store=row.store, target="*", phase="skipped", note=row.skip_reason)
            )
            continue
        store_batches = batches.get(row.store, ())
        targets = _targets(row, store_batches)
        if not any(row.counts.values()) and not row.plan_summary and not store_batches:
            out.append(
                TableOutcome(
                    store=row.store, target="*", phase=row.phase.value, note="nothing found"
                )
            )
            continue
        found = (exported or {}).get(row.store, {})
        out += [_table(row, t, store_batches, found) for t in targets]
    return out


def build_outcome(
    progress: RequestProgress,
    record: RequestRecord,
    rows: list[StoreProgress],
    exported: Exported | None = None,
) -> RequestOutcome:
    """The outcome of ``record`` given its store progress rows (and, for an access
    request, the records its package holds: ``exported_counts``)."""
    run = progress.runs.run(record.id)
    batches = {row.store: progress.batches(record.id, row.store) for row in rows}
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
        stores=[_store_outcome(row, batches[row.store]) for row in rows],
        tables=table_outcomes(rows, batches, exported),
        deferrals=deferrals,
        kept=_kept(rows, batches),
        package=package,
    )


def _kept(
    rows: Sequence[StoreProgress], batches: Mapping[str, Sequence[BatchRecord]]
) -> list[Kept]:
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
        for b in batches.get(row.store, ()):
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
    """The request's outcome, per store and table (access: with its package's counts)."""
    record = ctx.record(request_id)
    exported = exported_counts(ctx.ledger, request_id) if record.kind.value == "access" else None
    return build_outcome(ctx.progress, record, ctx.progress.stores(request_id), exported)


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


OUTCOME_COLUMNS: dict[str, tuple[str, ...]] = {
    "erasure": (
        "store",
        "table",
        "phase",
        "found",
        "deleted",
        "masked",
        "kept",
        "deferred",
        "left",
        "why",
    ),
    "access": ("store", "table", "phase", "found", "exported", "missing", "why"),
    "rectification": ("store", "table", "phase", "found", "rectified", "kept", "lost", "why"),
}
"""The per-table columns shown for each kind of request (``outcome_rows``)."""


def _why(t: TableOutcome) -> str:
    """Why the table's rows were kept, masked or deferred, and what is still to come."""
    parts = []
    if t.masked_reason and (t.masked or t.planned.get("mask")):
        parts.append(f"masked: {t.masked_reason}")
    if t.kept:
        parts.append(f"kept: {t.kept_reason or 'policy'}")
    if t.deferred:
        until = f" until {t.deferred_until}" if t.deferred_until else ""
        parts.append(f"deferred: {t.deferred_reason or 'locked'}{until}")
    if t.phase in ("located", "planned", "approved") and t.planned:
        parts.append("planned: " + ", ".join(f"{a} {n}" for a, n in t.planned.items()))
    if t.note:
        parts.append(t.note)
    return "; ".join(parts)


def outcome_rows(outcome: RequestOutcome) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """The outcome per store and table as display rows, with the columns for its kind:
    what ``lifecycle request submit`` and ``status`` print and the artifacts show."""
    columns = OUTCOME_COLUMNS.get(outcome.kind, OUTCOME_COLUMNS["erasure"])
    rows = [
        t.model_dump(exclude={"target", "remaining", "planned", "note"})
        | {
            "table": t.target,
            "left": t.remaining,
            "missing": t.remaining,
            "lost": t.remaining,
            "why": _why(t),
        }
        for t in outcome.tables
    ]
    return columns, [{c: row[c] for c in columns} for row in rows]


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
    columns, rows = outcome_rows(outcome)
    if rows:
        align = ["---" if c in ("store", "table", "phase", "why") else "---:" for c in columns]
        lines += ["", "## Per table", "", "| " + " | ".join(columns) + " |"]
        lines.append("|" + "|".join(align) + "|")
        cells = ({c: str(r[c]).replace("|", "\\|") for c in columns} for r in rows)
        lines += ["| " + " | ".join(r.values()) + " |" for r in cells]
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


_STEP_AFTER = {
    None: "locating",
    "located": "planning",
    "planned": "executing",
    "approved": "executing",
    "executed": "verifying",
    "verified": "completing",
}
"""The step a store was in when it failed, from the last phase it reached."""
_WHOLE_REQUEST_STEP = {"executing": "executing", "verifying": "verifying"}


def failure_report(
    ctx: RequestContext, request_id: str, since: datetime, reason: str
) -> FailureReport:
    """Where and why a run of ``request_id`` begun at ``since`` stopped, from the ledger's
    ``request.failed`` events of that run and the stores' phases; how to resume it."""
    record = ctx.record(request_id)
    failed = list(ctx.ledger.events(request_id=request_id, since=since, kinds=["request.failed"]))
    stores = list(dict.fromkeys(e.connector for e in failed if e.connector))
    phases = {s.store: s.phase.value for s in ctx.progress.stores(request_id)}
    step: str | None = None
    if stores:
        step = _STEP_AFTER.get(phases.get(stores[0]), "executing")
        if step == "planning" and record.kind.value != "erasure":
            step = "executing"
    elif failed:
        history = ctx.register.history(request_id)
        before = history[-1].from_status if history else None
        step = _WHOLE_REQUEST_STEP.get(before.value if before else "", "running the request")
    resume = None
    if not record.status.terminal and "--resume" not in reason:
        resume = f"lifecycle request submit --resume {request_id}"
    return FailureReport(
        request_id=request_id, stores=stores, step=step, reason=reason, resume=resume
    )


def artifact_key(request_id: str, suffix: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return f"subject-request-{request_id.replace('_', '-').lower()}-{suffix}"
