"""``lifecycle incident scope``: what a breach covers, as data, checked against the inventory.

The scope comes from a file (YAML or JSON of ``incidents.scope.IncidentScope``) and/or
shorthand options, combined into one scope:

- ``--table STORE.TABLE[:COLUMN,COLUMN]``: a table (only rows where one of the columns
  holds a value, when columns are named);
- ``--bucket STORE:BUCKET[/PREFIX]``: a bucket, or the objects under a prefix;
- ``--window [COLUMN=]START..END``: a time window, once for every part given by option
  (a bucket part uses object dates and ignores the column), or once per part in the order
  tables first, then buckets. ``COLUMN`` is the table's, or ``Table.column`` of a table its
  rows belong to through their holders references (``Invoice.InvoiceDate`` on
  ``InvoiceLine``).

Every problem is named by the file's line and field or by the option and its number, and
by the part's label against the inventory (``incidents.assess.check_scope``); then exit 2
and nothing is recorded.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.incident_common import IdArg, actor, config, open_register, print_next, say, when
from cli.output import JsonOption, fail, handled_errors, print_json

if TYPE_CHECKING:
    from incidents.scope import IncidentScope, ScopePart


class KeyCompromised(StrEnum):
    """Whether the encryption keys of the affected data were compromised."""

    yes = "yes"
    no = "no"
    unknown = "unknown"


FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file",
        metavar="FILE",
        exists=True,
        dir_okay=False,
        readable=True,
        help="YAML or JSON: parts: [{store, table, columns, window: {column, start, end}} | "
        "{store, bucket, prefix, window: {start, end}}].",
    ),
]
TableOpt = Annotated[
    list[str] | None,
    typer.Option("--table", metavar="STORE.TABLE[:COL,COL]", help="A table part (repeatable)."),
]
BucketOpt = Annotated[
    list[str] | None,
    typer.Option("--bucket", metavar="STORE:BUCKET[/PREFIX]", help="A bucket part (repeatable)."),
]
WindowOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--window",
        metavar="[COLUMN=]START..END",
        help="A time window (ISO 8601 with zone): once for every option part, or one per "
        "part (tables first, then buckets). COLUMN: the table's, or Table.column of a table "
        "its rows belong to (Invoice.InvoiceDate on InvoiceLine).",
    ),
]
KeyOpt = Annotated[
    KeyCompromised,
    typer.Option(
        "--key-compromised",
        help="Could they read the data despite its encryption at rest? yes when they came in "
        "through the service (credentials, an app account: server-side encryption decrypts for "
        "them); no only for storage or copies taken without the key; unknown counts as yes.",
    ),
]


def _errors(error: Any) -> list[str]:
    """A pydantic ValidationError's problems as ``field: message`` (never the input)."""
    out = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        out.append(f"{where}: {message}" if where and not message.startswith(where) else message)
    return out


def _from_file(path: Path) -> list[ScopePart]:
    from pydantic import ValidationError

    from config.problems import Problem, Reporter, validation_problems
    from config.yaml_lines import read_yaml
    from incidents.scope import IncidentScope

    doc = read_yaml(path, {})
    problems = list(doc.problems)
    if not problems:
        data = {} if doc.data is None else doc.data
        try:
            return list(IncidentScope.model_validate(data).parts)
        except ValidationError as e:
            validation_problems(e, IncidentScope, data, Reporter(doc.file, doc.lines, problems))
    exits = [fail(str(p), 2) for p in sorted(problems, key=Problem.sort_key)]
    raise exits[-1]


def _window(text: str, option: str) -> dict[str, Any]:
    head = text.partition("..")[0]
    column, sep, span = text.partition("=") if "=" in head else ("", "", text)
    start, dots, end = span.partition("..")
    if not dots or not start.strip() or not end.strip():
        raise fail(f"{option}: expected [COLUMN=]START..END", 2)
    window: dict[str, Any] = {"start": start.strip(), "end": end.strip()}
    if sep:
        window["column"] = column.strip()
    return window


def _option_parts(
    tables: list[str], buckets: list[str], windows: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    """Each option part as (the option that named it, its fields)."""
    parts: list[tuple[str, dict[str, Any]]] = []
    for n, text in enumerate(tables, start=1):
        name, _, columns = text.partition(":")
        store, dot, table = name.partition(".")
        if not dot:
            raise fail(f"--table #{n}: expected STORE.TABLE[:COLUMN,COLUMN]", 2)
        cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else []
        parts.append((f"--table #{n}", {"store": store, "table": table, "columns": cols}))
    for n, text in enumerate(buckets, start=1):
        store, colon, rest = text.partition(":")
        bucket, slash, prefix = rest.partition("/")
        if not colon or not bucket:
            raise fail(f"--bucket #{n}: expected STORE:BUCKET[/PREFIX]", 2)
        fields: dict[str, Any] = {"store": store, "bucket": bucket}
        if slash and prefix:
            fields["prefix"] = prefix
        parts.append((f"--bucket #{n}", fields))
    if windows and len(windows) not in (1, len(parts)):
        raise fail(
            f"--window: give it once (for every part) or once per part ({len(parts)}), "
            f"not {len(windows)} times",
            2,
        )
    for n, (_, fields) in enumerate(parts):
        if not windows:
            break
        which = 0 if len(windows) == 1 else n
        window = _window(windows[which], f"--window #{which + 1}")
        if "bucket" in fields:
            window.pop("column", None)  # objects are dated by their last-modified time
        fields["window"] = window
    return parts


def _validated(parts: list[tuple[str, dict[str, Any]]]) -> list[ScopePart]:
    from pydantic import ValidationError

    from incidents.scope import ScopePart

    out, problems = [], []
    for option, fields in parts:
        try:
            out.append(ScopePart.model_validate(fields))
        except ValidationError as e:
            problems += [f"{option}: {p}" for p in _errors(e)]
    if problems:
        exits = [fail(p, 2) for p in problems]
        raise exits[-1]
    return out


def build_scope(
    file: Path | None, tables: list[str], buckets: list[str], windows: list[str]
) -> IncidentScope:
    """The scope from the file and the options; exit 2 naming every problem."""
    from incidents.scope import IncidentScope

    if windows and not (tables or buckets):
        raise fail("--window applies to --table and --bucket parts: give one", 2)
    parts = _from_file(file) if file is not None else []
    parts += _validated(_option_parts(tables, buckets, windows))
    if not parts:
        raise fail("give the scope: --file FILE, or --table / --bucket parts", 2)
    return IncidentScope(parts=tuple(parts))


def scope_command(
    incident_id: IdArg,
    *,
    file: FileOpt = None,
    table: TableOpt = None,
    bucket: BucketOpt = None,
    window: WindowOpt = None,
    key_compromised: KeyOpt = KeyCompromised.unknown,
    as_json: bool = JsonOption,
) -> None:
    """Record what a declared breach covers, checked against the inventory.

    Stores, tables, columns, buckets, prefixes, a time window; and whether the encryption
    keys were compromised.

    Replaces an earlier scope. Exit codes: 0 recorded; 1 refused (not a declared breach,
    unknown id); 2 a malformed scope or one the inventory does not declare (nothing
    recorded).
    """
    from incidents.assess import scope_problems

    key = {"yes": True, "no": False, "unknown": None}[key_compromised.value]
    with handled_errors():
        scope = build_scope(file, table or [], bucket or [], window or [])
        problems = scope_problems(config(), scope)
        if problems:  # each on its line, naming the part and the field; nothing recorded
            exits = [fail(f"scope: {p}", 2) for p in problems]
            raise exits[-1]
        register = open_register(actor())
        incident = register.set_scope(incident_id, scope, key_compromised=key, actor=actor())
    if as_json:
        print_json(
            {
                "incident_id": incident.id,
                "scope": scope.model_dump(mode="json"),
                "key_compromised": key,
            }
        )
        return
    say(
        f"{incident.id} scoped: {len(scope.parts)} part(s); keys compromised: "
        f"{key_compromised.value}"
    )
    for part in scope.parts:
        span = ""
        if part.window is not None:
            by = f" by {part.window.column}" if part.window.column else ""
            span = f" from {when(part.window.start)} to {when(part.window.end)}{by}"
        say(f"  {part.label}{span}")
    print_next(register, incident)
