"""``lifecycle sweep``: run the retention sweep flow now, with a progress bar.

The flow runs in this process (on Prefect's temporary server unless ``PREFECT_API_URL``
points at one); a background thread reads our own progress table and draws the bar on
stderr, so stdout carries only the result (a table, or JSON with ``--json``).

One sweep at a time: when another sweep holds the sweep lease, the command says who and
since when and exits 5 before Prefect starts, or with ``--wait`` waits for it (bounded).
The flow takes the lease itself (``engine.sweep_lease``); this early look only saves
starting Prefect for nothing.

A failure (a store that cannot be reached, targets that failed) is one line on stderr
saying what failed, where and how to resume, and the log file holding the traceback.
"""

from __future__ import annotations

import sys
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from cli.flow_commands import VerboseOpt, failure_reason, log_failure, quiet_prefect
from cli.output import (
    console,
    err_console,
    handled_errors,
    print_error,
    print_failure,
    print_json,
    print_table,
)

EXIT_BUSY = 5
"""Another sweep holds the sweep lease (README, "The ``lifecycle`` command")."""
if TYPE_CHECKING:
    from state.leases import LeaseBusy, LeaseHolder

RESULT_COLUMNS = ["target", "action", "planned", "done", "held", "batches", "state"]
PLAN_COLUMNS = ["target", "action", "rules", "expired", "held", "holds"]


class _ProgressBar(threading.Thread):
    """Polls ``sweep_targets`` for the sweep this command started or resumed."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="sweep-progress")
        self.stop = threading.Event()

    def _current(self, progress: Any) -> Any:
        for run in progress.recent(limit=5):
            if run.status == "running" and not run.dry_run:
                return run
        return None

    def run(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        from audit.database import audit_engine
        from state.sweeps import SweepProgress

        progress = SweepProgress(audit_engine())
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        ) as bar:
            task = bar.add_task("planning", total=None)
            while not self.stop.wait(0.5):
                run = self._current(progress)
                if run is None:
                    continue
                done, planned = progress.totals(run.id)
                bar.update(task, description=f"sweep {run.id}", completed=done, total=planned)


def sweep(
    *,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan only: count expired and held, change nothing.")
    ] = False,
    rule: Annotated[
        list[str] | None,
        typer.Option("--rule", help="Only targets this retention rule applies to (repeatable)."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=100, max=200_000, help="Rows per SQL batch."),
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            help="Measure ages from this moment (UTC) instead of now, e.g. to repeat a past "
            "sweep's cut-offs.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="When another sweep is running, wait for it to finish (up to --wait-minutes) "
            "instead of exiting with code 5.",
        ),
    ] = False,
    wait_minutes: Annotated[
        int,
        typer.Option("--wait-minutes", min=1, max=24 * 60, help="With --wait: how long at most."),
    ] = 60,
    verbose: VerboseOpt = False,
) -> None:
    """Run the retention sweep now: delete or anonymize expired data, except what holds keep.

    An unfinished sweep (a crash, a failed target) is resumed with its own cut-offs first.
    One sweep at a time: while another holds the sweep lease, exit 5 naming it (or wait,
    with --wait). Exit codes: 0 done (or dry run); 1 a target failed (rerun to resume);
    2 invalid configuration or usage; 5 another sweep is running. A failure is one line
    (what failed, where, what to do next) and the log file holding its traceback.
    """
    quiet_prefect(verbose)
    with handled_errors():
        from audit.keystore import keyring_from_settings
        from config.loader import load_config

        load_config()  # invalid configuration: exit 2 with every problem, before Prefect starts
        keyring_from_settings()  # a missing or wrong key: exit 2, nothing changed
        left = 0 if dry_run else _await_other_sweep(wait, wait_minutes, as_json)
    from flows.retention_sweep import SweepParameters, retention_sweep
    from state.leases import LeaseBusy

    params = SweepParameters(
        dry_run=dry_run, rules=list(rule or []), as_of=as_of, wait_minutes=left
    )
    if batch_size is not None:
        params.batch_size = batch_size
    bar = _ProgressBar() if sys.stderr.isatty() and not as_json else None
    if bar is not None:
        bar.start()
    failed: Exception | None = None
    summary: dict[str, Any] | None = None
    try:
        summary = retention_sweep(params=params)
    except LeaseBusy as e:  # another sweep took the lease after the look above
        _busy(e, as_json, hint=not wait)
    except Exception as e:  # one line and the log file's path; the traceback goes there
        failed = e
    finally:
        if bar is not None:
            bar.stop.set()
            bar.join(timeout=2)
    if failed is None:
        _report(summary, as_json)
        return
    line = _failure_line(failed)
    log = log_failure(failed, line)
    _report(_failed_summary(failed), as_json, {"error": line, "log": log})
    print_failure(line, log)
    raise typer.Exit(1)


def _failure_line(error: Exception) -> str:
    """What failed, where and what to do next, in one line."""
    from core.errors import LifecycleError

    sweep_id = error.fields.get("sweep_id") if isinstance(error, LifecycleError) else None
    if sweep_id is None:
        return (
            f"retention sweep failed: {failure_reason(error)}; once that is fixed, run "
            "`lifecycle sweep` again (an unfinished sweep resumes where it stopped)"
        )
    failed = _failed_targets(str(sweep_id))
    if not failed:
        return failure_reason(error)  # names the failed targets and says to run it again
    shown = "; ".join(f"{target}: {why}" for target, why in failed[:3])
    more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
    return (
        f"retention sweep {sweep_id}: {len(failed)} target(s) failed ({shown}{more}); the "
        "others finished; run `lifecycle sweep` again to resume them from where they stopped"
    )


def _failed_targets(sweep_id: str) -> list[tuple[str, str]]:
    """The sweep's targets whose last ``sweep.target`` event in the ledger is a failure,
    with its error; none when the ledger cannot be read."""
    from audit.events import EventStatus
    from audit.ledger import Ledger
    from core.errors import LifecycleError

    failed: dict[str, str] = {}
    try:
        for event in Ledger.open().events(request_id=sweep_id, kinds=["sweep.target"]):
            if event.target is None:
                continue
            if event.status == EventStatus.FAILED:
                failed[event.target] = str(event.detail.get("error") or "failed")
            else:
                failed.pop(event.target, None)
    except LifecycleError:
        return []
    return list(failed.items())


def _await_other_sweep(wait: bool, wait_minutes: int, as_json: bool) -> int:
    """Exit 5 while another sweep holds the lease, or wait for it with ``--wait``; returns
    the minutes the flow may still wait (it takes the lease itself, and may lose a race)."""
    from audit.database import audit_engine
    from state.leases import LeaseBusy, WaitReport, await_lease, current_holder, utc_now
    from state.sweeps import SWEEP_LEASE

    engine = audit_engine()

    def holder() -> LeaseHolder | None:
        found = current_holder(engine, SWEEP_LEASE)
        return None if found is None or found.gone(utc_now()) else found

    limit = timedelta(minutes=wait_minutes if wait else 0)
    say = WaitReport(
        lambda line: err_console.print(line, highlight=False, soft_wrap=True),
        job="retention sweep",
        limit=limit,
    )
    try:
        waited = await_lease(holder, job="retention sweep", wait=limit, on_wait=say)
    except LeaseBusy as e:
        _busy(e, as_json, hint=not wait)
    return max(0, -(-int((limit - waited).total_seconds()) // 60)) if wait else 0


def _busy(error: LeaseBusy, as_json: bool, *, hint: bool) -> NoReturn:
    """Another sweep holds the lease: say who and since when, exit 5."""
    holder = error.holder
    message = error.message
    if hint:
        message += "; run `lifecycle sweep` again once it has finished, or with --wait"
    if as_json:
        print_json(
            {
                "error": message,
                "lease": {
                    "name": holder.name,
                    "owner": holder.owner,
                    "acquired_at": holder.acquired_at,
                    "renewed_at": holder.renewed_at,
                    "expires_at": holder.expires_at,
                },
            }
        )
    print_error(message)
    raise typer.Exit(EXIT_BUSY)


def _failed_summary(error: Exception) -> dict[str, Any] | None:
    """The summary of the sweep that failed, when the flow names it (targets failed, the
    others finished); None when it failed before that or the summary cannot be read."""
    from audit.database import audit_engine
    from core.errors import LifecycleError
    from state.sweeps import SweepProgress

    sweep_id = error.fields.get("sweep_id") if isinstance(error, LifecycleError) else None
    if sweep_id is None:
        return None
    try:
        run = SweepProgress(audit_engine()).run(str(sweep_id))
    except LifecycleError:
        return None
    return None if run is None else run.summary


def _report(
    summary: dict[str, Any] | None, as_json: bool, failure: dict[str, str] | None = None
) -> None:
    if as_json:
        print_json((summary or {}) | (failure or {}))
        return
    if summary is None:
        return
    if summary.get("dry_run"):
        _print_plan(summary["sweep_id"])
        console.print(f"dry run {summary['sweep_id']}: nothing was changed", highlight=False)
        return
    print_table(summary["targets"], RESULT_COLUMNS, title=f"Retention sweep {summary['sweep_id']}")
    console.print(
        f"sweep {summary['sweep_id']}: {summary['status']}; deleted {summary['deleted']}, "
        f"anonymized {summary['anonymized']}, kept under hold {summary['held']}",
        highlight=False,
    )


def _print_plan(sweep_id: str) -> None:
    from audit.database import audit_engine
    from state.sweeps import SweepProgress

    run = SweepProgress(audit_engine()).run(sweep_id)
    if run is None:
        return
    rows = [
        {
            "target": p["label"],
            "action": p["action"],
            "rules": ", ".join(p["rules"]),
            "expired": p["expired"],
            "held": p["held"],
            "holds": ", ".join(p["holds"] + p["partial_holds"]),
        }
        for p in run.plan
    ]
    print_table(rows, PLAN_COLUMNS, title=f"Retention sweep plan {sweep_id} (dry run)")
