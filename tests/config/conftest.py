"""Config test helpers: a copy of the demo config that a test may edit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT

DEMO_DIR = PROJECT_ROOT / "config" / "demo"
DEMO_FILES = ("inventory.yaml", "policy.yaml")

Edit = tuple[str, str, str]
"""(file name, old text, new text): one exact replacement in a demo file."""

MakeConfig = Callable[..., Path]


def demo_text(name: str) -> str:
    return (DEMO_DIR / name).read_text(encoding="utf-8")


def line_of(text: str, anchor: str) -> int:
    """The 1-based line where ``anchor`` first occurs in ``text``."""
    index = text.index(anchor)
    return text.count("\n", 0, index) + 1


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    """Write the demo config with edits applied into a fresh folder and return it."""

    def make(*edits: Edit, folder: str = "cfg") -> Path:
        target = tmp_path / folder
        target.mkdir()
        texts = {name: demo_text(name) for name in DEMO_FILES}
        for name, old, new in edits:
            assert texts[name].count(old) == 1, f"edit anchor not unique in {name}: {old!r}"
            texts[name] = texts[name].replace(old, new)
        for name, text in texts.items():
            (target / name).write_text(text, encoding="utf-8")
        return target

    return make
