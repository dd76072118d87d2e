"""Rendering for reporting commands: a rich table for people, JSON with ``--json``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.errors import ConfigError, LifecycleError
from core.free_text import FreeTextRefused

JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")

console = Console()
err_console = Console(stderr=True)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def print_json(payload: Any) -> None:
    """Write ``payload`` as JSON on stdout (datetimes as ISO 8601)."""
    sys.stdout.write(json.dumps(payload, default=_default, indent=2, sort_keys=False) + "\n")


def print_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], title: str | None = None
) -> None:
    """Write ``rows`` as a table with the given column order."""
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else escape(str(row.get(c))) for c in columns))
    console.print(table)


def emit(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    as_json: bool,
    title: str | None = None,
) -> None:
    """Table by default, a JSON list of objects with ``--json``."""
    if as_json:
        print_json([dict(r) for r in rows])
    else:
        print_table(rows, columns, title)


def print_error(message: str) -> None:
    """One error line on stderr; the message is shown literally, never as rich markup."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear error line on stderr and return the Exit to raise."""
    print_error(message)
    return typer.Exit(code)


@contextmanager
def handled_errors() -> Iterator[None]:
    """Turn product errors into one clear error line and a non-zero exit."""
    try:
        yield
    except ConfigError as e:
        exits = [fail(problem, 2) for problem in e.problems]
        raise exits[-1] from None
    except FreeTextRefused as e:  # personal data in a note or reason: a usage error
        raise fail(e.message, 2) from None
    except LifecycleError as e:
        raise fail(e.message) from None
