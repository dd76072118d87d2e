"""The operators' notification automation shipped in ``automations/`` is valid for this Prefect."""

from __future__ import annotations

from typing import Any

import yaml
from prefect.automations import Automation

from config.settings import PROJECT_ROOT

FILE = PROJECT_ROOT / "automations" / "notify-operators.yaml"
FLOWS = {"retention-sweep", "transfer-check", "audit-verify", "subject-request"}


def _automations() -> list[dict[str, Any]]:
    data = yaml.safe_load(FILE.read_text())
    automations: list[dict[str, Any]] = data["automations"]
    return automations


def test_the_file_parses_as_prefect_automations_for_every_privacy_flow() -> None:
    (raw,) = _automations()
    automation = Automation.model_validate(raw)
    trigger: Any = automation.trigger
    assert trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    names = set(trigger.match_related.root["prefect.resource.name"])
    assert names == FLOWS
    assert [a.type for a in automation.actions] == ["send-notification"]


def test_the_server_accepts_it(prefect_server: None) -> None:
    (raw,) = _automations()
    created: Any = Automation.model_validate(raw).create()  # sync outside an event loop
    try:
        read: Any = Automation.read(id=created.id)
        assert read.name == raw["name"]
    finally:
        created.delete()
