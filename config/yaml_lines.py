"""YAML reading that remembers the line of every value and interpolates ``${ENV}``.

PyYAML's composer gives nodes with start marks; we build the plain data ourselves from
the node tree so each path (a tuple of keys and indices) gets its line: the key's line
for a mapping value, the item's line for a sequence item. Booleans follow YAML 1.2
(``true``/``false`` only), so ``country: NO`` stays the string ``NO``. Duplicate keys,
which PyYAML would silently resolve to the last value, are reported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from config.problems import LineMap, Problem, YamlPath

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_INNER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)
_BOOL_TAG = "tag:yaml.org,2002:bool"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (no ``yes``/``no``/``on``/``off``)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def interpolate(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in ``text``; ``$${`` is a literal ``${``.

    Returns the new text and a message per reference that could not be resolved.
    ``${NAME:-default}`` uses the default when NAME is unset or empty. Messages name the
    variable, never a value.
    """
    errors: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        inner = match.group(1)
        if inner is None:
            errors.append("unclosed '${' (write '$${' for a literal '${')")
            return match.group(0)
        parsed = _INNER.match(inner)
        if parsed is None:
            errors.append("malformed reference: expected ${NAME} or ${NAME:-default}")
            return match.group(0)
        name, default = parsed.group(1), parsed.group(2)
        value = env.get(name)
        if default is not None and not value:
            return default
        if value is None:
            errors.append(f"environment variable {name} is not set")
            return ""
        return value

    return _REFERENCE.sub(replace, text), errors


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML file: plain data, the line of each path, and problems found reading it.

    ``data`` is None when the file could not be parsed (the problems say why) or is empty.
    """

    file: str
    data: Any
    lines: LineMap
    problems: tuple[Problem, ...]
    parsed: bool


class _Builder:
    """Turns a composed node tree into plain data, recording lines and problems."""

    def __init__(self, loader: _Loader, file: str, env: Mapping[str, str]) -> None:
        self.loader = loader
        self.file = file
        self.env = env
        self.lines: dict[YamlPath, int] = {}
        self.problems: list[Problem] = []
        self._active: set[int] = set()

    def problem(self, line: int, path: YamlPath, message: str) -> None:
        self.problems.append(Problem(self.file, line, path, message))

    def build(self, node: Node, path: YamlPath) -> Any:
        line = node.start_mark.line + 1
        if isinstance(node, ScalarNode):
            return self._scalar(node, path, line)
        if id(node) in self._active:
            self.problem(line, path, "recursive alias")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return self._sequence(node, path)
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            return None
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: ScalarNode, path: YamlPath, line: int) -> Any:
        value = self.loader.construct_object(node)
        if isinstance(value, str) and "${" in value:
            value, errors = interpolate(value, self.env)
            for message in errors:
                self.problem(line, path, message)
        return value

    def _sequence(self, node: SequenceNode, path: YamlPath) -> list[Any]:
        items = []
        for index, child in enumerate(node.value):
            child_path = (*path, index)
            self.lines[child_path] = child.start_mark.line + 1
            items.append(self.build(child, child_path))
        return items

    def _mapping(self, node: MappingNode, path: YamlPath) -> dict[Any, Any]:
        self.loader.flatten_mapping(node)  # resolve "<<" merge keys
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = (
                self.loader.construct_object(key_node) if isinstance(key_node, ScalarNode) else None
            )
            if key is None or isinstance(key, list | dict):
                self.problem(line, path, "mapping keys must be plain scalars")
                continue
            child_path = (*path, key)
            if key in result:
                first = self.lines[child_path]
                self.problem(line, child_path, f"duplicate key (first at line {first})")
                continue
            self.lines[child_path] = line
            result[key] = self.build(value_node, child_path)
        return result


def read_yaml(path: Path, env: Mapping[str, str], file: str | None = None) -> YamlDocument:
    """Parse ``path`` with line tracking and ``${ENV}`` interpolation from ``env``.

    Syntax and encoding errors do not raise: they come back as problems (with the line
    where the parser stopped) and ``parsed`` is False. ``file`` names the file in
    problems (default: its base name).
    """
    name = file or path.name
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return _failed(name, 1, "not valid UTF-8 text")
    except OSError as e:
        return _failed(name, 1, f"cannot read file: {e.strerror or type(e).__name__}")
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        builder = _Builder(loader, name, env)
        if root is None:
            return YamlDocument(name, None, LineMap({(): 1}), (), parsed=True)
        builder.lines[()] = root.start_mark.line + 1
        data = builder.build(root, ())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        return _failed(name, line, f"invalid YAML: {e.problem or e.context or 'syntax error'}")
    except yaml.YAMLError as e:
        return _failed(name, 1, f"invalid YAML: {type(e).__name__}")
    finally:
        loader.dispose()
    return YamlDocument(name, data, LineMap(builder.lines), tuple(builder.problems), parsed=True)


def _failed(file: str, line: int, message: str) -> YamlDocument:
    problem = Problem(file, line, (), message)
    return YamlDocument(file, None, LineMap({(): 1}), (problem,), parsed=False)
