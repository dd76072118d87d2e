"""Outside ``connectors/`` no code names a store type: the connector is the unit of extension.

The packages that run requests, sweeps and checks (and the CLI and ops around them) reach
store types only through ``connectors.catalog`` (configuration, hooks) and
``connectors.registry`` (connectors): no ``SqlStore``/``S3Store``, no ``sql_stores()``/
``s3_stores()``, no ``"sql"``/``"s3"`` literals, no import of ``connectors.sql``/
``connectors.s3``. The patterns are the fixed ones below plus those derived from the catalog,
so a new type is covered by its catalog line. Configuration assembly, docs, tests, demo/
and benchmarks/ may name types and are not scanned.

Files other helpers are still converting are allow-listed by name; each entry goes when its
file is clean (``clean_allow_list_entries`` lists those). A match that is not a store type
at all is allowed by its exact line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from connectors.catalog import STORE_TYPES

REPO = Path(__file__).resolve().parents[1]

SCANNED = (
    "cli",
    "ops",
    "flows",
    "tasks",
    "engine",
    "state",
    "retention",
    "transfers",
    "audit",
    "core",
)
"""Folders every ``*.py`` file of which is scanned."""
SCANNED_FILES = ("config/schema/model.py",)
"""Single files scanned besides: the loaded configuration is not store-type assembly."""

CONVERTING: Mapping[str, str] = {
    # Issue 14, not converted yet. Remove each entry once its file is clean (a stale entry
    # fails test_the_allow_list_holds_no_clean_file).
}
"""Path (or ``folder/*``) -> what replaces its store-type names."""

NOT_A_STORE_TYPE: Mapping[tuple[str, str], str] = {
    # (path, the whole line stripped) -> what the match really names.
    ("ops/server.py", 'S3 = Proc("s3", "the local S3", ("ops.local_s3",), se.S3_PORT_ENV)'): (
        "the name of the local S3 server process"
    ),
}

FIXED_PATTERNS = {
    "SqlStore": r"\bSqlStore\b",
    "S3Store": r"\bS3Store\b",
    "sql_stores(": r"\bsql_stores\(",
    "s3_stores(": r"\bs3_stores\(",
    '"sql"': r"([\"'])sql\1",
    '"s3"': r"([\"'])s3\1",
}


def type_patterns(
    types: Iterable[tuple[str, str]] = (),
) -> dict[str, re.Pattern[str]]:
    """The fixed patterns plus, per ``(type name, model class name)``, the model, the typed
    store list and the quoted type name."""
    patterns = dict(FIXED_PATTERNS)
    for name, model in types:
        patterns[model] = rf"\b{re.escape(model)}\b"
        patterns[f"{name}_stores("] = rf"\b{re.escape(name)}_stores\("
        patterns[f'"{name}"'] = rf"([\"']){re.escape(name)}\1"
    return {label: re.compile(pattern) for label, pattern in patterns.items()}


def catalog_types() -> list[tuple[str, str]]:
    return [(spec.name, spec.config.__name__) for spec in STORE_TYPES]


def type_imports(source: str, names: Iterable[str]) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of a store type's package ``connectors.<name>``."""
    packages = {f"connectors.{name}" for name in names}

    def named(module: str) -> bool:
        return any(module == p or module.startswith(p + ".") for p in packages)

    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if named(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            found += [(node.lineno, m) for m in modules if named(m)][:1]
    return found


def offences(
    root: Path,
    *,
    folders: Iterable[str] = SCANNED,
    files: Iterable[str] = SCANNED_FILES,
    types: Iterable[tuple[str, str]] = (),
    converting: Iterable[str] = CONVERTING,
    allowed_lines: Iterable[tuple[str, str]] = NOT_A_STORE_TYPE,
) -> dict[str, list[str]]:
    """``path -> ["line: what"]`` for every file under ``root`` that names a store type."""
    types = list(types)
    patterns = type_patterns(types)
    skipped = set(converting)
    allowed = set(allowed_lines)
    paths = {p for folder in folders for p in (root / folder).rglob("*.py")}
    paths |= {root / f for f in files if (root / f).is_file()}
    found: dict[str, list[str]] = {}
    for path in sorted(paths):
        rel = path.relative_to(root).as_posix()
        if rel in skipped or any(rel.startswith(e[:-1]) for e in skipped if e.endswith("/*")):
            continue
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        hits = [
            f"{number}: {label}: {line.strip()}"
            for number, line in enumerate(lines, 1)
            for label, pattern in patterns.items()
            if pattern.search(line) and (rel, line.strip()) not in allowed
        ]
        hits += [
            f"{number}: import {module}: {lines[number - 1].strip()}"
            for number, module in type_imports(source, (name for name, _ in types))
        ]
        if hits:
            found[rel] = hits
    return found


def clean_allow_list_entries() -> list[str]:
    """The ``CONVERTING`` entries whose files name no store type any more (to remove)."""
    return [
        entry
        for entry in CONVERTING
        if not offences(
            REPO,
            folders=[entry.removesuffix("/*")] if entry.endswith("/*") else [],
            files=[] if entry.endswith("/*") else [entry],
            types=catalog_types(),
            converting=(),
        )
    ]


def test_no_code_outside_connectors_names_a_store_type() -> None:
    assert offences(REPO, types=catalog_types()) == {}


def test_the_allow_list_holds_no_clean_file() -> None:
    assert clean_allow_list_entries() == []


# --- the check checks -----------------------------------------------------------------------


def _tree(root: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_check_finds_every_pattern_in_a_new_file(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "cli/new_cmd.py": (
                "from config.schema import SqlStore\n"
                "def f(config, store):\n"
                "    if isinstance(store, S3Store):\n"
                "        return config.sql_stores() + config.s3_stores()\n"
                "    return store.type == 'sql' or store.type == \"s3\"\n"
            ),
            "tasks/new_task.py": (
                "from connectors.s3.lifecycle import desired_rules\n"
                "import connectors.sql.doctor\n"
                "from connectors import catalog\n"
            ),
            "ops/clean.py": 'print("no store type: sqlite, s3-lifecycle, SQLStore3")\n',
        },
    )

    found = offences(root, files=(), converting=(), allowed_lines=(), types=catalog_types())

    assert set(found) == {"cli/new_cmd.py", "tasks/new_task.py"}
    labels = {hit.split(": ")[1] for hit in found["cli/new_cmd.py"]}
    assert labels == {"SqlStore", "S3Store", "sql_stores(", "s3_stores(", '"sql"', '"s3"'}
    assert [hit.split(": ")[1] for hit in found["tasks/new_task.py"]] == [
        "import connectors.s3.lifecycle",
        "import connectors.sql.doctor",
    ]


def test_a_new_catalog_type_is_checked_and_allow_lists_work(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "flows/a.py": 'KIND = "processor"\nfrom connectors.processor import client\n',
            "retention/converting.py": "x = 's3'\n",
            "transfers/any.py": "x = 'sql'\n",
            "ops/server.py": 'S3 = Proc("s3", "the local S3")\n',
        },
    )
    types = [*catalog_types(), ("processor", "ProcessorStore")]

    found = offences(
        root,
        files=(),
        types=types,
        converting=("retention/converting.py", "transfers/*"),
        allowed_lines=[("ops/server.py", 'S3 = Proc("s3", "the local S3")')],
    )

    assert list(found) == ["flows/a.py"]
    assert [hit.split(": ")[1] for hit in found["flows/a.py"]] == [
        '"processor"',
        "import connectors.processor",
    ]
    # Without the allow-lists every one of them is reported.
    assert set(offences(root, files=(), types=types, converting=(), allowed_lines=())) == {
        "flows/a.py",
        "retention/converting.py",
        "transfers/any.py",
        "ops/server.py",
    }
