"""``core`` is the bottom layer: it may not import the packages built on it (not even
lazily inside a function), so the ledger, tasks and flows can depend on it freely."""

from __future__ import annotations

import ast
from pathlib import Path

from config.settings import PROJECT_ROOT

ABOVE_CORE = {
    "audit",
    "state",
    "engine",
    "tasks",
    "flows",
    "cli",
    "connectors",
    "transfers",
    "retention",
    "ops",
}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_core_imports_nothing_built_on_it() -> None:
    offenders = {
        str(path.relative_to(PROJECT_ROOT)): sorted(_imported_packages(path) & ABOVE_CORE)
        for path in sorted((PROJECT_ROOT / "core").rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from audit.keystore import load_keyring\n")
    assert "audit" in _imported_packages(module)
