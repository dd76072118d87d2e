"""``engine`` and ``state`` need no Prefect: importing any of their modules in a fresh
process loads none of it (the CLI, the intake server and the benchmarks call them
without paying for Prefect's import). ``tasks`` is where Prefect comes in.

Also the layers' directions: ``audit`` (the ledger) never imports ``state`` (but for
``REACHES_UP``), neither imports ``engine``, ``tasks``, ``flows`` or connectors, ``engine``
never imports ``tasks`` or ``flows``; and no module of these
packages takes part in an import cycle, not even through a type-checking import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = ("audit", "state", "engine", "tasks")
REACHES_UP = {
    "audit.rotation": (
        "a key rotation re-seals, in the transaction that switches the key, what state holds "
        "sealed under the old one (request identities, request-run secrets)"
    ),
}
"""Modules allowed to import the layer above theirs, and why."""


def _modules(package: str) -> list[str]:
    return sorted(
        f"{package}.{path.stem}"
        for path in (REPO / package).glob("*.py")
        if path.stem != "__init__"
    )


def _loaded_after_import(modules: list[str]) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules)
    code += "print('\\n'.join(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


@pytest.mark.parametrize("module", _modules("engine"))
def test_an_engine_module_imports_no_prefect(module: str) -> None:
    loaded = _loaded_after_import([module])
    assert module in loaded
    assert not {m for m in loaded if m.split(".")[0] == "prefect"}


def test_state_and_ledger_modules_import_no_prefect() -> None:
    modules = _modules("state") + _modules("audit")
    loaded = _loaded_after_import(modules)
    assert set(modules) <= loaded
    assert not {m for m in loaded if m.split(".")[0] == "prefect"}


def _imports(path: Path) -> set[str]:
    """Every first-party module ``path`` imports, at any depth (functions, TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    modules = {m for package in LAYERS for m in _modules(package)}
    return {
        m: {i for i in _imports(REPO / (m.replace(".", "/") + ".py")) if i in modules} - {m}
        for m in modules
    }


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("audit", {"state", "engine", "tasks", "flows", "connectors"}),
        ("state", {"engine", "tasks", "flows", "connectors"}),
        ("engine", {"tasks", "flows"}),
    ],
)
def test_layers_import_only_below_them(package: str, forbidden: set[str]) -> None:
    offenders = {
        module: sorted(
            i
            for i in _imports(REPO / package / f"{module.split('.')[1]}.py")
            if i.split(".")[0] in forbidden
        )
        for module in _modules(package)
        if module not in REACHES_UP
    }
    assert {m: v for m, v in offenders.items() if v} == {}


def test_no_import_cycle_among_the_layers() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_cycle_check_sees_type_checking_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from engine.sweep_runner import X\n"
    )
    assert "engine.sweep_runner" in _imports(module)
