"""What a reviewer does with a draft, and a policy defining its categories."""

from __future__ import annotations

import re
from pathlib import Path

POLICY = """\
categories:
  - {name: contact, description: "E-mail, phone, names"}
  - {name: financial, description: "IBANs and card numbers"}
  - {name: telemetry, description: "IP addresses"}
  - {name: documents, description: "Stored files"}
requests:
  approval: {required_for: []}
"""


def confirm_todos(text: str) -> str:
    """The draft after its review: each TODO read and accepted, so its comment removed.

    A commented-out alternative (``# identity:`` held back) stays commented: accepting
    the draft's default keeps it so.
    """
    lines = [re.sub(r"\s*# TODO:.*$", "", line) for line in text.splitlines()]
    kept = [line for line in lines if line.strip() not in ("#",)]
    return "\n".join(kept) + "\n"


def write_config(folder: Path, inventory: str) -> Path:
    """A config folder holding ``inventory`` and ``POLICY``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inventory.yaml").write_text(inventory, encoding="utf-8")
    (folder / "policy.yaml").write_text(POLICY, encoding="utf-8")
    return folder
