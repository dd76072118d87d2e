"""``lifecycle transfers check``: run the transfer and security-posture check now.

Runs the ``transfer-check`` flow in this process and prints its findings (new, persisting,
resolved against the previous run) and the stores it could not check (their type offers
no posture facts). Exit 0 when no high-severity finding stands, 3 when
one does, 1 when the check itself failed (one line saying what failed and where, and the
log file holding the traceback), 2 for invalid configuration.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer

from cli.flow_commands import VerboseOpt, failure_reason, log_failure, quiet_prefect
from cli.output import console, handled_errors, print_failure, print_json, print_table

app = typer.Typer(no_args_is_help=True)

EXIT_HIGH = 3
COLUMNS = ["state", "severity", "rule", "store", "resource", "evidence", "safeguard"]


def _latest_rows() -> tuple[str, list[dict[str, Any]], int]:
    """The newest run's findings compared with the run before it, as the artifact shows them."""
    from audit.database import audit_engine
    from flows.transfer_check import outcome_rows
    from state.transfer_checks import TransferChecks
    from tasks.transfer_tasks import CheckOutcome
    from transfers.findings import Finding, compare

    runs = TransferChecks(audit_engine()).recent(2)
    current = [Finding.from_json(f) for f in runs[0].findings]
    previous = [Finding.from_json(f) for f in runs[1].findings] if len(runs) > 1 else []
    comparison = compare(previous, current)
    rows = outcome_rows(CheckOutcome(runs[0].id, comparison))
    return runs[0].id, rows, len(comparison.high)


@app.command("check")
def check(
    *,
    all_buckets: Annotated[
        bool,
        typer.Option(
            "--all-buckets/--declared-only",
            help="Also report what the stores' accounts hold that the inventory does not "
            "declare (such as unclassified buckets).",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check every store's region, replicas, encryption and TLS against the transfer policy.

    Stores whose type offers no posture facts are listed as not checked. Exit codes: 0 no
    high-severity finding; 3 at least one; 1 the check could not run; 2 invalid
    configuration.
    """
    quiet_prefect(verbose)
    with handled_errors():
        from audit.keystore import keyring_from_settings
        from config.loader import load_config

        config = load_config()
        keyring_from_settings()  # a missing or wrong key: exit 2 before the check runs
    from core.errors import LifecycleError
    from flows.transfer_check import CheckParameters, transfer_check, unchecked_json
    from tasks.transfer_tasks import unchecked_stores

    try:
        transfer_check(params=CheckParameters(all_buckets=all_buckets))
    except Exception as e:  # high-severity findings fail the run too: those are shown below
        if not isinstance(e, LifecycleError) or "check_id" not in e.fields:
            _failed(e, as_json)
    check_id, rows, high = _latest_rows()
    unchecked = unchecked_stores(config)
    if as_json:
        print_json(
            {
                "check_id": check_id,
                "high": high,
                "findings": rows,
                "unchecked": unchecked_json(unchecked),
            }
        )
    else:
        if rows:
            print_table(rows, COLUMNS, title=f"Transfer and posture check {check_id}")
        for store in unchecked:
            console.print(f"not checked: {store}", highlight=False)
        console.print(
            f"check {check_id}: {sum(r['state'] != 'resolved' for r in rows)} findings, "
            f"{high} high severity",
            highlight=False,
        )
    raise typer.Exit(EXIT_HIGH if high else 0)


def _failed(error: Exception, as_json: bool) -> NoReturn:
    """The check could not run: one line (what failed, where, what to do next) and the log
    file holding the traceback; exit 1."""
    line = (
        f"transfer check failed: {failure_reason(error)}; once that is fixed, run "
        "`lifecycle transfers check` again"
    )
    log = log_failure(error, line)
    if as_json:
        print_json({"error": line, "log": log})
    print_failure(line, log)
    raise typer.Exit(1)
