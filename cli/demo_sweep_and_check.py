"""The demo's last two flows (``cli.demo_cmd``): the retention sweep, a dry run first, and
the transfer and posture check of every store; each prints what it did."""

from __future__ import annotations

import time
from typing import Any

from cli.output import console, print_table

CHECK_COLUMNS = ["severity", "rule", "resource", "evidence"]
SWEEP_COLUMNS = ["target", "action", "planned", "done", "held", "batches", "state"]


def run_sweep() -> dict[str, Any]:
    """A dry run of the retention sweep, then the sweep itself; the sweep's summary."""
    from flows.retention_sweep import SweepParameters, retention_sweep

    console.print("[bold]Retention sweep[/]: a dry run first, then the sweep itself")
    plan = retention_sweep(params=SweepParameters(dry_run=True))
    console.print(
        f"  dry run {plan['sweep_id']}: {plan['planned']} rows and objects expired, "
        f"{plan['held']} kept by legal holds; nothing changed"
    )
    started = time.perf_counter()
    summary = retention_sweep(params=SweepParameters())
    print_table(summary["targets"], SWEEP_COLUMNS, title=f"Retention sweep {summary['sweep_id']}")
    console.print(
        f"  {summary['status']} in {time.perf_counter() - started:.1f} s: deleted "
        f"{summary['deleted']}, anonymized {summary['anonymized']}, held {summary['held']}"
    )
    return summary


def run_transfer_check() -> dict[str, Any]:
    """The transfer and posture check; its result, or ``high`` when it found high-severity
    findings (the run fails then, naming them). A check that could not run raises."""
    from core.errors import TerminalError
    from flows.transfer_check import CheckParameters, transfer_check

    console.print(
        "[bold]Transfer and posture check[/]: regions, replicas, encryption, TLS and lifecycle "
        "rules of every store against the transfer policy"
    )
    try:
        result = transfer_check(params=CheckParameters(all_buckets=True))
    except TerminalError as e:
        if "check_id" not in e.fields:  # not findings: the check itself failed
            raise
        console.print(f"  {e.message}", highlight=False, soft_wrap=True)
        return {"findings": [], "high": True}
    rows = result["findings"]
    if rows:
        print_table(rows, CHECK_COLUMNS, title=f"Findings ({result['check_id']})")
    console.print(f"  {result['check_id']}: {len(rows)} findings, none of high severity")
    return result
