"""The daily inventory-drift check: compare every store's live catalog with inventory.yaml.

Thin: one task per store (``tasks.drift_tasks``) reads its catalog, samples what the
inventory does not name and returns findings; the record task compares them with the
previous run (new, persisting, resolved), stores and audits them. Findings go to a table
artifact and a markdown summary; stores whose type has no drift check are listed there.
When a high-severity finding stands, the flow ends Failed with a message naming them, so
a Prefect automation on failed runs notifies operators.

Nothing sampled reaches Prefect: the parameters are numbers and switches, the findings
name tables, columns, buckets and prefixes and count values.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, Field

from core.errors import TerminalError
from discovery.drift import DriftFinding, drift_steps
from tasks.drift_tasks import DriftOutcome, drift_context, record_drift_task, store_drift_task

COLUMNS = ["state", "severity", "rule", "store", "resource", "evidence", "categories", "action"]


class DriftParameters(BaseModel):
    """What the operator can choose when starting a drift check."""

    sample_rows: int = Field(
        default=200,
        ge=0,
        le=10_000,
        description="Rows (or object keys) sampled per undeclared table or prefix to tell "
        "whether it looks personal; 0 judges by column names alone.",
    )
    all_buckets: bool = Field(
        default=True,
        description="Also list what each store type's account holds (every bucket) and "
        "report what no store declares.",
    )


def _row(f: DriftFinding, state: str) -> dict[str, Any]:
    return {
        "state": state,
        "severity": f.severity,
        "rule": f.rule,
        "store": f.store,
        "resource": f.resource,
        "evidence": f.evidence,
        "categories": ", ".join(f.categories) or "-",
        "action": f.action or "-",
    }


def outcome_rows(outcome: DriftOutcome) -> list[dict[str, Any]]:
    """Findings for the table artifact and the CLI, current first, then resolved."""
    c = outcome.comparison
    return [_row(f, c.status_of(f)) for f in c.current] + [_row(f, "resolved") for f in c.resolved]


def _markdown(outcome: DriftOutcome) -> str:
    c = outcome.comparison
    verdict = "FAILED: high-severity findings" if c.high else "passed"
    read = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in outcome.counts.items())
    lines = [
        f"# Inventory drift {outcome.check_id}: {verdict}",
        "",
        f"Read: {read or 'nothing'}.",
        *(f"Not checked: {u}." for u in outcome.unchecked),
        "",
        f"- findings: **{len(c.current)}** ({len(c.high)} high)",
        f"- new since the last run: **{len(c.new)}**, persisting: {len(c.persisting)}, "
        f"resolved: {len(c.resolved)}",
        f"- left out by `ignore:` entries: {outcome.ignored}",
        "",
    ]
    lines += [f"- **{f.rule}** {f.store}: {f.resource}: {f.evidence}" for f in c.high]
    return "\n".join(lines) + "\n"


@flow(name="inventory-drift", log_prints=False)
def inventory_drift(params: DriftParameters = DriftParameters()) -> dict[str, Any]:  # noqa: B008
    """Compare every store's tables, columns, buckets and prefixes with the inventory."""
    config = drift_context()
    steps, unchecked = drift_steps(config)
    drifts = [
        store_drift_task(
            config, step.store, params.all_buckets and step.account_wide, params.sample_rows
        )
        for step in steps
    ]
    outcome = record_drift_task(drifts, unchecked)
    rows = outcome_rows(outcome)
    create_table_artifact(
        key="inventory-drift-findings",
        table=rows or [{"state": "-", "severity": "-", "rule": "no findings"}],
        description=f"Inventory drift {outcome.check_id}",
    )
    create_markdown_artifact(
        key="inventory-drift-summary",
        markdown=_markdown(outcome),
        description=f"Inventory drift {outcome.check_id}",
    )
    high = outcome.comparison.high
    if high:
        names = "; ".join(f"{f.rule} {f.store}:{f.resource}" for f in high[:10])
        more = f" and {len(high) - 10} more" if len(high) > 10 else ""
        raise TerminalError(
            f"inventory drift {outcome.check_id}: {len(high)} high-severity finding(s): "
            f"{names}{more}",
            check_id=outcome.check_id,
        )
    return {
        "check_id": outcome.check_id,
        "findings": rows,
        "unchecked": list(outcome.unchecked),
        "ignored": outcome.ignored,
    }
