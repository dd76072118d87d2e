"""The daily transfer and security-posture check: gather facts, judge, compare, report.

Thin: tasks in ``tasks.transfer_tasks`` read each store (through its type's posture hook)
and judge the facts. Findings go to the ledger, to a table artifact and a markdown summary
(new, persisting, resolved); stores whose type offers no posture facts are listed there
as unchecked.
When any high-severity finding stands, the flow ends Failed with a message naming them,
so a Prefect automation on failed runs notifies operators.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, Field

from core.errors import TerminalError
from tasks.transfer_tasks import CheckOutcome, Unchecked, check_context, gather, judge_task
from transfers.findings import Finding


class CheckParameters(BaseModel):
    """What the operator can choose when starting a check."""

    all_buckets: bool = Field(
        default=True,
        description="Also list what each store type's account holds (every bucket) and "
        "report what the inventory does not declare (unclassified stores).",
    )


def _row(f: Finding, state: str) -> dict[str, Any]:
    return {
        "state": state,
        "severity": f.severity,
        "rule": f.rule,
        "store": f.store or "-",
        "resource": f.resource,
        "evidence": f.evidence,
        "categories": ", ".join(f.categories) or "-",
        "safeguard": f.safeguard or "-",
    }


def outcome_rows(outcome: CheckOutcome) -> list[dict[str, Any]]:
    """Findings for the table artifact and the CLI, current first, then resolved."""
    c = outcome.comparison
    return [_row(f, c.status_of(f)) for f in c.current] + [_row(f, "resolved") for f in c.resolved]


def checked_text(counts: Mapping[str, int]) -> str:
    """``3 buckets and 1 databases checked.``: the facts counted per kind."""
    parts = [f"{n} {kind}" for kind, n in counts.items()]
    if not parts:
        return "Nothing checked."
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed} checked."


def unchecked_json(unchecked: Sequence[Unchecked]) -> list[dict[str, str]]:
    return [u.to_json() for u in unchecked]


def _markdown(outcome: CheckOutcome) -> str:
    c = outcome.comparison
    verdict = "FAILED: high-severity findings" if c.high else "passed"
    lines = [
        f"# Transfer and posture check {outcome.check_id}: {verdict}",
        "",
        checked_text(outcome.counts),
        *(f"Not checked: {u}." for u in outcome.unchecked),
        "",
        f"- findings: **{len(c.current)}** ({len(c.high)} high)",
        f"- new since the last run: **{len(c.new)}**, persisting: {len(c.persisting)}, "
        f"resolved: {len(c.resolved)}",
        "",
    ]
    for f in c.high:
        lines.append(f"- **{f.rule}** {f.resource}: {f.evidence}")
    return "\n".join(lines) + "\n"


@flow(name="transfer-check", log_prints=False)
def transfer_check(params: CheckParameters = CheckParameters()) -> dict[str, Any]:  # noqa: B008
    """Check every store's location, replicas, encryption and TLS against the policy."""
    config = check_context()
    outcome = judge_task(gather(config, params.all_buckets), config)
    rows = outcome_rows(outcome)
    create_table_artifact(
        key="transfer-check-findings",
        table=rows or [{"state": "-", "severity": "-", "rule": "no findings"}],
        description=f"Transfer and posture check {outcome.check_id}",
    )
    create_markdown_artifact(
        key="transfer-check-summary",
        markdown=_markdown(outcome),
        description=f"Transfer and posture check {outcome.check_id}",
    )
    high = outcome.comparison.high
    if high:
        names = "; ".join(f"{f.rule} {f.resource}" for f in high[:10])
        more = f" and {len(high) - 10} more" if len(high) > 10 else ""
        raise TerminalError(
            f"transfer check {outcome.check_id}: {len(high)} high-severity finding(s): "
            f"{names}{more}",
            check_id=outcome.check_id,
        )
    return {
        "check_id": outcome.check_id,
        "findings": rows,
        "unchecked": unchecked_json(outcome.unchecked),
    }
