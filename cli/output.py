"""Rendering for reporting commands: a rich table for people, JSON with ``--json``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import date, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.errors import ConfigError, InvalidInput, LifecycleError
from core.free_text import FreeTextRefused

JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")

EXIT_CODES = {
    0: "done",
    1: "failed or refused: one line says what, where and how to resume (details in the log)",
    2: "usage or validation error: an option, a value or the configuration; nothing changed",
    3: "findings stand: a check found something to act on (transfers check, discover: a "
    "high-severity drift finding, s3-lifecycle drift; incident list: an overdue breach "
    "notification; server status: not running)",
    4: "completed with deferrals: data kept under a legal hold or lock (request submit)",
    5: "busy: another run holds the job (sweep)",
}
"""Exit codes, the same for every command (``lifecycle --help`` and the README list them)."""
EXIT_USAGE = 2

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
        # Fold, never cut: a store.table label or an id cut to "trial_ch…" says nothing.
        table.add_column(col, overflow="fold")
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


def print_failure(line: str, log: str | None) -> None:
    """A failure's one line on stderr and, when its traceback was logged, the log file
    (shown relative to the working directory when inside it)."""
    print_error(line)
    if log:
        path = Path(log)
        with suppress(ValueError):
            path = path.relative_to(Path.cwd())
        err_console.print(f"details: {escape(str(path))}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear error line on stderr and return the Exit to raise."""
    print_error(message)
    return typer.Exit(code)


@contextmanager
def handled_errors() -> Iterator[None]:
    """Turn product errors into one clear error line and a non-zero exit: 2 for invalid
    configuration or input (``EXIT_CODES``), 1 for the rest."""
    try:
        yield
    except ConfigError as e:
        exits = [fail(problem, 2) for problem in e.problems]
        raise exits[-1] from None
    except (FreeTextRefused, InvalidInput) as e:  # personal data in a note; a bad value
        raise fail(e.message, 2) from None
    except LifecycleError as e:
        raise fail(e.message) from None
