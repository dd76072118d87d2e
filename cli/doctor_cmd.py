"""``lifecycle doctor``: check every store before a request depends on it.

Each store is checked by its type's ``doctor`` hook (``connectors.catalog``), live and
read-only: nothing is created. A SQL store, for example, is reached (its URL shown
without its password), its reflected schema compared with the inventory, the undeclared
tables holding foreign keys into declared ones named (an erasure would fail on them, or
cascade into rows nobody planned), and the indexes locate would need listed, each with
the exact ``CREATE INDEX`` to run. A store whose type has no live checks is listed as such.
Exit 0 when there is nothing to fix, 1 otherwise (2 for invalid configuration).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from cli.output import JsonOption, console, handled_errors, print_json

if TYPE_CHECKING:
    from config.schema.stores import StoreConfig
    from connectors.doctor_report import DoctorLine, DoctorReport

app = typer.Typer()

ConfigDirOption = typer.Option(
    None,
    "--config",
    help="Folder holding inventory.yaml and policy.yaml (default: LIFECYCLE_CONFIG_DIR).",
    file_okay=False,
)


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def _line(line: DoctorLine) -> None:
    label = (
        f"[yellow]{escape(line.label)}:[/]"
        if line.severity == "warning"
        else f"{escape(line.label)}:"
    )
    _say(f"  {label} {escape(line.text)}")
    for detail in line.detail:
        _say(f"    {escape(detail)}")


def _print(report: DoctorReport) -> None:
    state = "[green]reachable[/]" if report.reachable else "[red]unreachable[/]"
    verdict = "[green]OK[/]" if report.ok else "[red]needs attention[/]"
    _say(f"[bold]{escape(report.store)}[/] {state} {escape(report.location)}: {verdict}")
    for line in report.lines:
        _line(line)


def _unchecked(store: StoreConfig) -> None:
    _say(f"[bold]{escape(store.name)}[/] ({escape(store.type)}): no checks for this store type")


@app.callback(invoke_without_command=True)
def doctor(config: Path | None = ConfigDirOption, as_json: bool = JsonOption) -> None:
    """Check every store live (SQL: reachable, schema matches the inventory, indexes)."""
    # Imported when the command runs: keeps ``lifecycle --help`` fast.
    from config.loader import load_config
    from connectors.doctor_report import run_doctor

    with handled_errors():
        loaded = load_config(config)
        checked = [(store, run_doctor(store)) for store in loaded.inventory.stores]
    reports = [report for _store, report in checked if report is not None]
    if as_json:
        print_json([report.to_json() for report in reports])  # the stores checked
    else:
        for store, report in checked:
            if report is None:
                _unchecked(store)
            else:
                _print(report)
    if not all(report.ok for report in reports):
        raise typer.Exit(1)
