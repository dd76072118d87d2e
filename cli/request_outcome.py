"""A request's outcome as ``request submit`` prints it when a run ends and ``request
status`` at any time: per store and table, then deferrals, rows kept, package and status."""

from __future__ import annotations

from typing import Any

from cli.output import console, print_table


def print_outcome(outcome: Any) -> None:
    """A request's outcome per store and table (found, deleted, masked, kept and why,
    deferred and until when, left after verification), its deferrals, the rows kept, the
    package and the status: what ``submit`` prints when a run ends, ``status`` at any time."""
    from engine.request_summary import outcome_rows

    columns, rows = outcome_rows(outcome)
    if rows:
        title = f"Request {outcome.request_id} ({outcome.kind}), per table"
        print_table(rows, list(columns), title=title)
    for d in outcome.deferrals:
        until = f" until {d.until}" if d.until else ""
        console.print(f"deferred: {d.store}.{d.target} ({d.count}): {d.reason or ''}{until}")
    for k in outcome.kept:
        console.print(f"kept {k.count} {k.store}.{k.target} rows: {k.reason or ''}")
    if outcome.package is not None:
        console.print(f"package: {outcome.package.location}", highlight=False, soft_wrap=True)
    console.print(f"request {outcome.request_id}: {outcome.status}", highlight=False)
