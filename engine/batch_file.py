"""Reading a batch file of requests: CSV or JSON lines, one request per line.

CSV has a header naming ``kind`` and ``identity`` (``KIND=VALUE``, several joined by
``;``), optionally ``requested_by``. JSON lines hold one object per line with ``kind``,
``identity`` (an object, or the same ``KIND=VALUE;...`` text) and optionally
``requested_by``. Blank lines and lines starting with ``#`` are skipped. A line that cannot
be read is reported by its number and what is wrong with it, never by its content (it
holds identities); the other lines are unaffected. A file that cannot be read at all
(missing, not UTF-8, no header, too many lines) is one ``BatchFileError``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import TerminalError

MAX_LINES = 100_000
"""Lines per batch file: bounds memory; split bigger backlogs into several batches."""

_FIELDS = {"kind", "identity", "requested_by"}
_ALIASES = {"requested-by": "requested_by", "requestedby": "requested_by"}


@dataclass(frozen=True)
class BatchLine:
    """One request read from the file (``number``: its line in the file)."""

    number: int
    kind: str
    identity: dict[str, str]
    requested_by: str | None = None


@dataclass
class BatchFile:
    """The lines read, and the problems of the lines that could not be (number, problem)."""

    lines: list[BatchLine] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def read(self) -> int:
        return len(self.lines) + len(self.problems)


class BatchFileError(TerminalError):
    """The file as a whole cannot be read (a usage error: the CLI exits 2)."""


class LineProblem(Exception):
    """What is wrong with one line (never quoting it)."""


def read_batch(path: Path) -> BatchFile:
    """Parse ``path`` (CSV, or JSON lines when it ends in .jsonl/.ndjson/.json or its first
    non-blank character is ``{``)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BatchFileError(f"batch file {path} does not exist") from None
    except UnicodeDecodeError:
        raise BatchFileError(f"batch file {path} is not UTF-8 text") from None
    except OSError as e:
        raise BatchFileError(f"cannot read batch file {path} ({e.strerror})") from None
    json_lines = path.suffix.lower() in (".jsonl", ".ndjson", ".json") or text.lstrip().startswith(
        "{"
    )
    batch = BatchFile()
    for number, parsed in _json_lines(text) if json_lines else _csv_lines(text, path):
        if isinstance(parsed, LineProblem):
            batch.problems.append((number, str(parsed)))
        else:
            batch.lines.append(parsed)
        if batch.read > MAX_LINES:
            raise BatchFileError(
                f"batch file {path} has more than {MAX_LINES:,} requests; split it into "
                "several batches"
            )
    if not batch.read:
        raise BatchFileError(f"batch file {path} holds no request")
    return batch


Parsed = Iterator[tuple[int, "BatchLine | LineProblem"]]


def _json_lines(text: str) -> Parsed:
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            item = json.loads(stripped)
        except json.JSONDecodeError:
            yield number, LineProblem("not a JSON object")
            continue
        if not isinstance(item, dict):
            yield number, LineProblem("not a JSON object")
            continue
        yield number, _line(number, item)


def _csv_lines(text: str, path: Path) -> Parsed:
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [_ALIASES.get(c.strip().lower(), c.strip().lower()) for c in row]
            missing = {"kind", "identity"} - set(header)
            if missing:
                raise BatchFileError(
                    f"batch file {path}: the CSV header (line {number}) needs the columns "
                    "kind and identity (and optionally requested_by); missing: "
                    + ", ".join(sorted(missing))
                )
            unknown = [c for c in header if c not in _FIELDS]
            if unknown:
                raise BatchFileError(
                    f"batch file {path}: unknown CSV column(s) {', '.join(unknown)} in the "
                    "header; expected kind, identity, requested_by"
                )
            continue
        if len(row) != len(header):
            yield number, LineProblem(f"{len(row)} fields, the header has {len(header)}")
            continue
        yield number, _line(number, dict(zip(header, row, strict=True)))


def _line(number: int, item: dict[str, Any]) -> BatchLine | LineProblem:
    unknown = sorted(str(k) for k in item if k not in _FIELDS and k not in _ALIASES)
    if unknown:
        return LineProblem(f"unknown field(s) {', '.join(unknown)}")
    item = {_ALIASES.get(k, k): v for k, v in item.items()}
    kind = item.get("kind")
    if not isinstance(kind, str) or not kind.strip():
        return LineProblem("kind is missing")
    try:
        identity = _identity(item.get("identity"))
    except LineProblem as e:
        return e
    by = item.get("requested_by")
    if by is not None and not isinstance(by, str):
        return LineProblem("requested_by must be text")
    return BatchLine(number, kind.strip(), identity, (by or "").strip() or None)


def _identity(value: Any) -> dict[str, str]:
    pairs: dict[str, str] = {}
    if isinstance(value, dict):
        for kind, one in value.items():
            if not isinstance(one, str) or not one.strip():
                raise LineProblem(f"identity {kind}: the value must be non-empty text")
            pairs[str(kind).strip()] = one.strip()
    elif isinstance(value, str):
        for n, pair in enumerate((p for p in value.split(";") if p.strip()), start=1):
            kind, sep, one = pair.partition("=")
            if not sep or not kind.strip() or not one.strip():
                raise LineProblem(f"identity #{n}: expected KIND=VALUE")
            if kind.strip() in pairs:
                raise LineProblem(f"identity {kind.strip()} is given twice")
            pairs[kind.strip()] = one.strip()
    elif value is not None:
        raise LineProblem("identity must be an object or KIND=VALUE text")
    if not pairs:
        raise LineProblem("identity is missing")
    return pairs
