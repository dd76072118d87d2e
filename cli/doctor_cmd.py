"""``lifecycle doctor``: check every SQL store before a request depends on it.

For each SQL store of the inventory: whether it is reachable (the URL shown without its
password), whether the inventory matches the reflected schema, which undeclared tables
hold foreign keys into declared ones (an erasure would fail on them, or cascade into rows
nobody planned), and which indexes locate would need, each with the exact ``CREATE INDEX``
to run. Read-only: nothing is created.
Exit 0 when there is nothing to fix, 1 otherwise (2 for invalid configuration).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from cli.output import JsonOption, console, handled_errors, print_json

if TYPE_CHECKING:
    from connectors.sql.doctor import StoreCheck

app = typer.Typer()

ConfigDirOption = typer.Option(
    None,
    "--config",
    help="Folder holding inventory.yaml and policy.yaml (default: LIFECYCLE_CONFIG_DIR).",
    file_okay=False,
)


def _print(check: StoreCheck) -> None:
    state = "[green]reachable[/]" if check.reachable else "[red]unreachable[/]"
    verdict = "[green]OK[/]" if check.ok else "[red]needs attention[/]"
    console.print(
        f"[bold]{escape(check.store)}[/] {state} {escape(check.url)}: {verdict}",
        highlight=False,
        soft_wrap=True,
    )
    if check.error:
        console.print(f"  error: {escape(check.error)}", highlight=False, soft_wrap=True)
    outside = {r.problem(check.store) for r in check.outside_references}
    for problem in check.problems:
        label = "reference" if problem in outside else "schema"
        console.print(f"  {label}: {escape(problem)}", highlight=False, soft_wrap=True)
    for advice in check.advice:
        console.print(
            f"  index: {escape(advice.table)} ({escape(', '.join(advice.columns))}): "
            f"{escape(advice.reason)}",
            highlight=False,
            soft_wrap=True,
        )
        if advice.statement:
            console.print(f"    {escape(advice.statement)};", highlight=False, soft_wrap=True)
    for warning in check.warnings:
        console.print(f"  [yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    for note in check.notes:
        console.print(f"  note: {escape(note)}", highlight=False, soft_wrap=True)
    for reference in check.references:
        console.print(f"  reference: {escape(reference)}", highlight=False, soft_wrap=True)


@app.callback(invoke_without_command=True)
def doctor(config: Path | None = ConfigDirOption, as_json: bool = JsonOption) -> None:
    """Check every SQL store: reachable, schema matches the inventory, indexes in place."""
    # Imported when the command runs: keeps ``lifecycle --help`` fast.
    from config.loader import load_config
    from connectors.sql.doctor import check_store

    with handled_errors():
        loaded = load_config(config)
        checks = [check_store(store) for store in loaded.sql_stores()]
    if as_json:
        print_json([c.to_json() for c in checks])
    elif not checks:
        console.print("no SQL stores in the inventory", highlight=False)
    else:
        for check in checks:
            _print(check)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
