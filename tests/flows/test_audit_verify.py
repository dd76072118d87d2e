"""The daily audit-verify flow: passes on an intact ledger, fails loudly on a broken one."""

from __future__ import annotations

import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from sqlalchemy import text

from audit.events import EventStatus
from audit.ledger import Ledger
from config.settings import get_settings
from core.errors import IntegrityError
from flows.audit_verify import audit_verify


def _artifact_markdown() -> str:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["audit-verify"])),
            limit=1,
            sort=ArtifactSort.CREATED_DESC,
        )
    assert artifacts
    return str(artifacts[0].data)


def test_intact_ledger_verifies_and_anchors_head(prefect_server: None) -> None:
    ledger = Ledger.open()
    for i in range(5):
        ledger.append("test.step", status=EventStatus.SUCCEEDED, counts={"rows": i})

    result = audit_verify()

    assert result == {"events": 5, "checkpoints": 0}
    anchors = sorted((get_settings().data_dir / "anchors").glob("checkpoint-*.json"))
    assert len(anchors) == 1
    assert json.loads(anchors[0].read_text())["seq"] == 5
    assert "Audit ledger intact" in _artifact_markdown()


def test_broken_ledger_fails_the_flow_and_names_the_event(prefect_server: None) -> None:
    ledger = Ledger.open()
    for i in range(4):
        ledger.append("test.step", status=EventStatus.SUCCEEDED, counts={"rows": i})
    with ledger.engine.begin() as conn:  # an attacker with database access edits event 3
        conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update"))
        conn.execute(text("UPDATE audit_events SET kind = 'forged' WHERE seq = 3"))

    with pytest.raises(IntegrityError, match="ledger broken at event 3"):
        audit_verify()
    assert "BROKEN" in _artifact_markdown()
    assert not (get_settings().data_dir / "anchors").exists()
