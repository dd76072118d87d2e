"""``lifecycle retention``: what the retention rules do, and the commands store types add.

``explain`` says which rules and holds apply to a table, field, bucket or object key.
A store type may add its own commands to this group (``connectors.catalog``:
``retention_commands``), such as the one rendering the lifecycle rules a store enforces
itself from the retention policy (``s3-lifecycle``); they are registered here from the
catalog, so this module names no store type.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.output import JsonOption, console, handled_errors, print_json

app = typer.Typer(no_args_is_help=True)

ConfigDirOption = typer.Option(
    None,
    "--config",
    help="Folder holding inventory.yaml and policy.yaml (default: LIFECYCLE_CONFIG_DIR).",
    file_okay=False,
)


def _add_store_type_commands(group: typer.Typer) -> None:
    """Each store type's own commands (``retention_commands`` in ``connectors.catalog``)."""
    from connectors.catalog import STORE_TYPES
    from connectors.hooks import load_hook

    for spec in STORE_TYPES:
        if spec.retention_commands is not None:
            load_hook(spec.retention_commands)(group)


EXPLAIN_HELP = (
    "Say which retention rules and legal holds apply to TARGET, and what the sweep does.\n\n"
    "TARGET is store.table, store.table.column, store/bucket or store/bucket/key. Overlapping "
    "rules resolve to the longest retention: data goes only when every rule's period has "
    "passed. Holds that match but are not in force (ended, not yet started) are listed too."
)


@app.command("explain", help=EXPLAIN_HELP)
def explain_command(
    target: str = typer.Argument(..., help="store.table[.column] or store/bucket[/key]."),
    config: Path | None = ConfigDirOption,
    as_json: bool = JsonOption,
) -> None:
    """Which rules and holds apply to a table, field, bucket or object key."""
    from config.loader import load_config
    from retention.explain import explain

    with handled_errors():
        answer = explain(load_config(config), target, datetime.now(UTC))
    if as_json:
        print_json(answer)
        return
    if not answer["targets"]:
        console.print(
            f"no retention rule applies to {escape(target)}: kept until erased on request",
            highlight=False,
        )
        for hold in answer["holds"]:
            _print_hold(hold)
        return
    for item in answer["targets"]:
        console.print(f"[bold]{escape(item['target'])}[/]")
        rules = Table("rule", "age", "measured from", "cut-off today", "")
        for rule in item["rules"]:
            mark = "governs (longest)" if rule["governing"] else ""
            rules.add_row(rule["id"], rule["age"], escape(rule["clock"]), rule["cutoff"][:19], mark)
        console.print(rules)
        for hold in item["holds"]:
            _print_hold(hold)
        console.print(escape(item["verdict"]), highlight=False)


def _print_hold(hold: dict[str, Any]) -> None:
    state = "in force" if hold["in_force"] else "NOT in force"
    until = f" until {hold['ends']}" if hold["ends"] else ""
    console.print(
        f"hold {hold['id']} ({state}, covers {hold['covers']}, from {hold['starts']}{until}): "
        f"{escape(hold['reason'])}",
        highlight=False,
    )


_add_store_type_commands(app)
