"""Configuration problems located by file, line and YAML path, and pydantic errors as such.

Every problem renders as one line, ``<file>:<line> <path>: <message>``, for example
``policy.yaml:14 retention[2].age: invalid duration '90 dayz'``. Pydantic reports a
location as a ``loc`` tuple that includes segments of its own (the tag of a
discriminated union, ``[key]`` for dict keys); ``yaml_path`` maps it back onto the
YAML structure so the line can be found. Messages never include the offending input:
it may be a secret or personal data.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

YamlPath = tuple[str | int, ...]

_MISSING = object()
_INTERNAL = re.compile(r"[\[\]]")
_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "none", "date", "datetime", "list"})


def format_path(path: YamlPath) -> str:
    """``('stores', 0, 'tables')`` -> ``stores[0].tables``."""
    text = ""
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text += f".{segment}" if text else str(segment)
    return text


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration; ``str()`` gives the one-line report."""

    file: str
    line: int
    path: YamlPath
    message: str

    def __str__(self) -> str:
        if not self.file:
            return self.message
        where = f"{self.file}:{self.line}"
        path = format_path(self.path)
        return f"{where} {path}: {self.message}" if path else f"{where}: {self.message}"

    def sort_key(self) -> tuple[str, int, str, str]:
        return (self.file, self.line, format_path(self.path), self.message)


class LineMap:
    """Lines of YAML paths: a mapping value's key line, a sequence item's own line."""

    def __init__(self, lines: Mapping[YamlPath, int]) -> None:
        self._lines = dict(lines)

    def line_of(self, path: YamlPath) -> int:
        """The line of ``path``, else of its nearest ancestor present in the file."""
        while path not in self._lines and path:
            path = path[:-1]
        return self._lines.get(path, 1)


class Reporter:
    """Collects the problems of one file, locating each by its YAML path."""

    def __init__(self, file: str, lines: LineMap, sink: list[Problem]) -> None:
        self.file = file
        self._lines = lines
        self._sink = sink

    @property
    def count(self) -> int:
        """Problems collected so far (by every reporter sharing the sink)."""
        return len(self._sink)

    def line(self, path: YamlPath) -> int:
        return self._lines.line_of(path)

    def add(self, path: YamlPath, message: str) -> None:
        self._sink.append(Problem(self.file, self.line(path), path, message))


def _distance(a: str, b: str) -> int:
    """Edit distance counting a swap of neighbours as one edit (optimal string alignment)."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def suggest(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` is most likely a typo of, if any is close enough."""
    limit = max(1, len(name) // 3)
    scored = sorted((_distance(name, k), k) for k in set(known))
    return scored[0][1] if scored and scored[0][0] <= limit else None


def unknown(what: str, name: str, known: Iterable[str], where: str = "") -> str:
    """``unknown table 'x' in store 'crm' (did you mean 'y'?)``: a dangling name's message."""
    close = suggest(name, known)
    hint = f" (did you mean '{close}'?)" if close else ""
    place = f" in {where}" if where else ""
    return f"unknown {what} '{name}'{place}{hint}"


def duplicates(
    items: Iterable[tuple[YamlPath, str]], what: str, report: Reporter, where: str = ""
) -> None:
    """Report every repeat of a name after its first declaration."""
    first: dict[str, YamlPath] = {}
    place = f" in {where}" if where else ""
    for path, name in items:
        if name in first:
            line = report.line(first[name])
            report.add(path, f"duplicate {what} '{name}'{place} (first declared at line {line})")
        else:
            first[name] = path


def yaml_path(loc: Sequence[str | int], data: Any) -> YamlPath:
    """Map a pydantic ``loc`` onto the YAML structure of ``data``.

    Segments pydantic adds (a discriminated union's tag, ``[key]``, type names of
    union members) are dropped; a key absent from the data (a missing field) is kept,
    and everything below it is kept as is.
    """
    path: list[str | int] = []
    node: Any = data
    for segment in loc:
        present = (isinstance(node, dict) and segment in node) or (
            isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node)
        )
        if present:
            path.append(segment)
            node = node[segment]
        elif isinstance(segment, str) and _is_internal(segment, node):
            continue
        else:
            path.append(segment)
            node = _MISSING
    return tuple(path)


def _is_internal(segment: str, node: Any) -> bool:
    if _INTERNAL.search(segment) or segment in _TYPE_NAMES:
        return True
    # The tag of a discriminated union is the value of its discriminator field.
    return isinstance(node, dict) and node.get("type") == segment


def _strip(annotation: Any) -> Any:
    """Unwrap ``Annotated[...]`` and ``X | None`` down to the interesting type."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _tagged_member(union: Any, tag: str) -> Any:
    for member in get_args(union):
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get("type")
            is_literal = field is not None and get_origin(field.annotation) is Literal
            if is_literal and field is not None and tag in get_args(field.annotation):
                return member
    return None


def _step(annotation: Any, segment: str | int) -> Any:
    """The type found one ``loc`` segment below ``annotation`` (None if unknown)."""
    annotation = _strip(annotation)
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if segment in (name, field.alias):
                return field.annotation
        return None
    if origin in (tuple, list) and isinstance(segment, int):
        return get_args(annotation)[0]
    if origin is dict:
        return get_args(annotation)[1]
    if origin in (Union, types.UnionType) and isinstance(segment, str):
        return _tagged_member(annotation, segment)
    return None


def allowed_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The YAML keys the model at ``loc`` (a pydantic loc below ``model``) accepts."""
    annotation: Any = model
    for segment in loc:
        annotation = _step(annotation, segment)
        if annotation is None:
            return []
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [field.alias or name for name, field in annotation.model_fields.items()]
    return []


def _unknown_field(model: type[BaseModel], loc: Sequence[str | int]) -> str:
    allowed = allowed_keys(model, loc[:-1])
    close = suggest(str(loc[-1]), allowed)
    if close:
        return f"unknown field (did you mean '{close}'?)"
    if allowed:
        return f"unknown field (expected one of: {', '.join(allowed)})"
    return "unknown field"


_PREFIXES = ("Value error, ", "Assertion failed, ")


def _message(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind, msg = str(error["type"]), str(error["msg"])
    if kind == "extra_forbidden":
        return _unknown_field(model, error["loc"])
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    discriminator = str(ctx.get("discriminator", "")).strip("'")
    rewritten = {
        "missing": "required field is missing",
        "literal_error": f"must be one of {ctx.get('expected')}",
        "union_tag_invalid": f"unknown {discriminator} '{ctx.get('tag')}' "
        f"(expected one of {ctx.get('expected_tags')})",
        "union_tag_not_found": f"required field '{discriminator}' is missing",
    }
    if kind in rewritten:
        return rewritten[kind]
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


def validation_problems(
    error: ValidationError, model: type[BaseModel], data: Any, report: Reporter
) -> None:
    """Report each error of validating ``data`` against ``model`` at its YAML line."""
    for item in error.errors(include_url=False, include_input=False):
        report.add(yaml_path(item["loc"], data), _message(item, model))
