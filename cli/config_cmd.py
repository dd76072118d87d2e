"""``lifecycle config``: validate the policy and inventory, or show them resolved.

Problems are printed one per line as ``file:line path: message`` on stderr with exit
code 2, never as a traceback; ``show`` masks every secret. ``validate --live`` also
connects to every SQL store and runs doctor's schema checks, printing ``store.table:
message`` lines the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
import yaml
from rich.markup import escape

from cli.output import console, err_console, print_json
from config.loader import load_config
from config.schema import LifecycleConfig
from core.errors import ConfigError

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


def _live_problems(loaded: LifecycleConfig) -> tuple[list[str], list[str]]:
    """Connect to every SQL store and run doctor's schema checks: problems and warnings."""
    # Imported only with --live: plain validate stays offline and fast.
    from connectors.sql.doctor import check_store

    checks = [check_store(store) for store in loaded.sql_stores()]
    problems = [line for check in checks for line in check.located_problems()]
    return problems, [warning for check in checks for warning in check.warnings]


@app.command()
def validate(
    config: Path | None = ConfigDirOption,
    live: bool = typer.Option(
        False,
        "--live",
        help="Also connect to every SQL store and check the schema, as doctor does.",
    ),
) -> None:
    """Check both files; print a summary, or every problem with its file and line."""
    loaded = _load(config)
    problems, warnings = _live_problems(loaded) if live else ([], [])
    for warning in warnings:
        err_console.print(
            f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True
        )
    for problem in problems:
        err_console.print(f"[bold red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(2)
    sql, s3 = loaded.sql_stores(), loaded.s3_stores()
    tables = sum(len(store.tables) for store in sql)
    buckets = sum(len(store.buckets) for store in s3)
    policy = loaded.policy
    console.print(
        f"config OK ({escape(str(loaded.source))}): {len(sql) + len(s3)} stores "
        f"({len(sql)} sql, {len(s3)} s3), {tables} tables, {buckets} buckets, "
        f"{len(policy.retention)} retention rules, {len(policy.legal_holds)} legal holds"
        + (f"; schema of {len(sql)} sql stores checked live" if live else ""),
        highlight=False,
        soft_wrap=True,
    )
    if sql and not live:
        # What only the databases can tell: reflected references and their directions,
        # undeclared tables holding foreign keys into declared ones.
        console.print(
            "next: lifecycle config validate --live (or lifecycle doctor) checks the "
            "inventory against the databases",
            highlight=False,
            soft_wrap=True,
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
        sys.stdout.write(yaml.safe_dump(masked, sort_keys=False, allow_unicode=True))
