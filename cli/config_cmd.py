"""``lifecycle config``: validate the policy and inventory, or show them resolved.

Problems are printed one per line as ``file:line path: message`` on stderr with exit
code 2, never as a traceback; ``show`` masks every secret. ``validate --live`` also runs
doctor's live checks on every store whose type has them (``connectors.catalog``: a SQL
store's schema against its database), printing ``store.table: message`` lines the same way.
The summary counts stores per type and the parts of each (tables, buckets) as the
catalog's types declare them.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
import yaml
from rich.markup import escape

from cli.output import console, err_console, print_json
from config.loader import load_config
from config.schema import LifecycleConfig
from core.errors import ConfigError

if TYPE_CHECKING:
    from connectors.doctor_report import DoctorReport

app = typer.Typer(no_args_is_help=True)

ConfigDirOption = typer.Option(
    None,
    "--config",
    help="Folder holding inventory.yaml and policy.yaml (default: LIFECYCLE_CONFIG_DIR).",
    file_okay=False,
)


def _load(config_dir: Path | None) -> LifecycleConfig:
    """Load the configuration or print its problems and exit 2."""
    try:
        return load_config(config_dir)
    except ConfigError as e:
        for problem in e.problems:
            # soft_wrap: one problem per line, whatever the terminal width.
            err_console.print(
                f"[bold red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True
            )
        raise typer.Exit(2) from None


def _live_checks(loaded: LifecycleConfig) -> list[DoctorReport]:
    """Doctor's live checks of every store whose type has them (read-only)."""
    # Imported only with --live: plain validate stays offline and fast.
    from connectors.doctor_report import run_doctor

    reports = [run_doctor(store) for store in loaded.inventory.stores]
    return [report for report in reports if report is not None]


def _counted(counts: Mapping[str, int], noun: str = "") -> str:
    """``1 sql, 1 s3`` (``noun`` after each count: ``6 tables``), in catalog order."""
    return ", ".join(f"{n} {name}{noun}" for name, n in counts.items())


def _summary(loaded: LifecycleConfig) -> tuple[dict[str, int], dict[str, int]]:
    """Stores per type (every type of the catalog) and parts per kind (``table``: 6)."""
    from connectors.catalog import STORE_TYPES, spec_for

    stores = {spec.name: 0 for spec in STORE_TYPES}
    parts = {key: 0 for spec in STORE_TYPES for key in spec.config.policy_parts}
    for store in loaded.inventory.stores:
        stores[spec_for(store).name] += 1
        for key in store.policy_parts:
            parts[key] += len(store.part_names(key))
    return stores, parts


def _checked_types(loaded: LifecycleConfig) -> dict[str, int]:
    """Stores per type, of the types with live checks (what --live checks)."""
    from connectors.catalog import spec_for

    checked: dict[str, int] = {}
    for store in loaded.inventory.stores:
        spec = spec_for(store)
        if spec.doctor is not None:
            checked[spec.name] = checked.get(spec.name, 0) + 1
    return checked


@app.command()
def validate(
    config: Path | None = ConfigDirOption,
    live: bool = typer.Option(
        False,
        "--live",
        help="Also check every store live, as doctor does (a SQL store's schema against its "
        "database).",
    ),
) -> None:
    """Check both files; print a summary, or every problem with its file and line."""
    loaded = _load(config)
    reports = _live_checks(loaded) if live else []
    problems = [line for report in reports for line in report.problems]
    for warning in (warning for report in reports for warning in report.warnings):
        err_console.print(
            f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True
        )
    for problem in problems:
        err_console.print(f"[bold red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(2)
    stores, parts = _summary(loaded)
    checked = _checked_types(loaded)
    policy = loaded.policy
    counts = [
        f"{sum(stores.values())} stores ({_counted(stores)})",
        *([_counted(parts, "s")] if parts else []),
        f"{len(policy.retention)} retention rules",
        f"{len(policy.legal_holds)} legal holds",
    ]
    console.print(
        f"config OK ({escape(str(loaded.source))}): {', '.join(counts)}"
        + (f"; schema of {_counted(checked)} stores checked live" if live and checked else ""),
        highlight=False,
        soft_wrap=True,
    )
    if checked and not live:
        # What only the stores can tell: for SQL, reflected references and their
        # directions, undeclared tables holding foreign keys into declared ones.
        console.print(
            "next: lifecycle config validate --live (or lifecycle doctor) checks the "
            "inventory against the databases",
            highlight=False,
            soft_wrap=True,
        )


class _ShowDumper(yaml.SafeDumper):
    """SafeDumper that writes a clock duration (a processor's ``confirm_within``) as ``Ns``."""


_ShowDumper.add_representer(
    timedelta,
    lambda dumper, value: dumper.represent_str(f"{value.total_seconds():g}s"),
)


@app.command()
def show(
    config: Path | None = ConfigDirOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML."),
) -> None:
    """Print the resolved configuration (defaults filled in, ${ENV} replaced, secrets masked)."""
    masked = _load(config).masked_dict()
    if as_json:
        print_json(masked)
    else:
        sys.stdout.write(yaml.dump(masked, Dumper=_ShowDumper, sort_keys=False, allow_unicode=True))
