"""``engine.events.ledger_event``: the one builder of ledger events for every job."""

from __future__ import annotations

import pytest

from audit.events import EventStatus
from engine.events import ledger_event


def test_an_event_names_its_job_actor_and_no_run_outside_prefect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT__FLOW_RUN_ID", raising=False)
    event = ledger_event(
        "sweep.batch", EventStatus.SUCCEEDED, "swp_1", actor="flow:retention-sweep", target="t"
    )
    assert (event.kind, event.request_id, event.actor, event.target) == (
        "sweep.batch",
        "swp_1",
        "flow:retention-sweep",
        "t",
    )
    assert (event.flow_run_id, event.task_run_id) == (None, None)
    assert (dict(event.counts), dict(event.detail), event.subject) == ({}, {}, None)
