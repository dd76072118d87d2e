"""``lifecycle discover``: compare the live stores with the inventory now (inventory drift).

Runs the ``inventory-drift`` flow in this process and prints its findings (new, persisting,
resolved against the previous run), how many the inventory's ``ignore:`` entries left out
and the stores it could not check (their type has no drift check). Exit 0 when no
high-severity finding stands, 3 when one does, 1 when the check itself failed (one line
saying what failed and where, and the log file holding the traceback), 2 for invalid
configuration. Findings name tables, columns, buckets and prefixes: never a sampled value.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer

from cli.flow_commands import VerboseOpt, failure_reason, log_failure, quiet_prefect
from cli.output import console, handled_errors, print_failure, print_json, print_table

EXIT_HIGH = 3
COLUMNS = ["state", "severity", "rule", "store", "resource", "evidence"]


def _latest() -> tuple[str, list[dict[str, Any]], int, dict[str, int]]:
    """The newest run's findings against the run before it, as the artifact shows them, and
    the counts its ledger summary holds."""
    from audit.ledger import Ledger
    from discovery.drift import DriftFinding, compare
    from flows.inventory_drift import outcome_rows
    from state.drift_checks import DriftChecks
    from tasks.drift_tasks import DriftOutcome

    ledger = Ledger.open()
    runs = DriftChecks(ledger.engine).recent(2)
    current = [DriftFinding.from_json(f) for f in runs[0].findings]
    previous = [DriftFinding.from_json(f) for f in runs[1].findings] if len(runs) > 1 else []
    comparison = compare(previous, current)
    rows = outcome_rows(DriftOutcome(runs[0].id, comparison))
    summary = list(ledger.events(request_id=runs[0].id, kinds=["drift.checked"]))
    counts = dict(summary[-1].counts) if summary else {}
    return runs[0].id, rows, len(comparison.high), counts


def discover(
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    sample_rows: Annotated[
        int,
        typer.Option(
            "--sample-rows",
            min=0,
            max=10_000,
            help="Rows (or object keys) sampled per undeclared table or prefix; 0 judges by "
            "column names alone.",
        ),
    ] = 200,
    all_buckets: Annotated[
        bool,
        typer.Option(
            "--all-buckets/--declared-only",
            help="Also report the buckets of the stores' accounts that no store declares.",
        ),
    ] = True,
    verbose: VerboseOpt = False,
) -> None:
    """Compare the live stores with the inventory: undeclared or vanished tables, columns,
    buckets and prefixes, unreachable tables, foreign keys erasures would trip on.

    Exit codes: 0 no high-severity finding; 3 at least one; 1 the check could not run;
    2 invalid configuration.
    """
    quiet_prefect(verbose)
    with handled_errors():
        from audit.keystore import keyring_from_settings
        from config.loader import load_config

        config = load_config()
        keyring_from_settings()  # a missing or wrong key: exit 2 before the check runs
    from core.errors import LifecycleError
    from discovery.drift import drift_steps
    from flows.inventory_drift import DriftParameters, inventory_drift

    try:
        inventory_drift(params=DriftParameters(sample_rows=sample_rows, all_buckets=all_buckets))
    except Exception as e:  # high-severity findings fail the run too: those are shown below
        if not isinstance(e, LifecycleError) or "check_id" not in e.fields:
            _failed(e, as_json)
    check_id, rows, high, counts = _latest()
    unchecked = drift_steps(config)[1]
    ignored = counts.get("ignored", 0)
    if as_json:
        print_json(
            {
                "check_id": check_id,
                "high": high,
                "ignored": ignored,
                "findings": rows,
                "unchecked": list(unchecked),
            }
        )
    else:
        if rows:
            print_table(rows, COLUMNS, title=f"Inventory drift {check_id}")
        for line in unchecked:
            console.print(f"not checked: {line}", highlight=False)
        console.print(
            f"drift check {check_id}: {sum(r['state'] != 'resolved' for r in rows)} findings, "
            f"{high} high severity, {ignored} left out by ignore entries",
            highlight=False,
        )
    raise typer.Exit(EXIT_HIGH if high else 0)


def _failed(error: Exception, as_json: bool) -> NoReturn:
    """The check could not run: one line (what failed, where, what to do next) and the log
    file holding the traceback; exit 1."""
    line = (
        f"inventory drift check failed: {failure_reason(error)}; once that is fixed, run "
        "`lifecycle discover` again"
    )
    log = log_failure(error, line)
    if as_json:
        print_json({"error": line, "log": log})
    print_failure(line, log)
    raise typer.Exit(1)
