"""The automation that marks runs whose process died Crashed (``ops.unresponsive_runs``)."""

from __future__ import annotations

import pytest

from ops import serve_env as se
from ops import unresponsive_runs


def test_the_automation_is_valid_for_prefect_and_spares_runs_waiting_for_approval() -> None:
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    parsed = AutomationCore.model_validate(unresponsive_runs.automation())
    trigger = parsed.trigger
    assert isinstance(trigger, EventTrigger)
    assert trigger.posture is Posture.Proactive
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert trigger.for_each == {"prefect.resource.id"}
    # Missing more than a few beats of the worker's runs, never one late beat.
    assert trigger.within.total_seconds() >= 3 * se.HEARTBEAT_SECONDS
    # A run beating at Prefect's own default (a client without our env file) is no zombie.
    from prefect.settings.models.flows import FlowsSettings

    default = FlowsSettings.model_fields["heartbeat_frequency"].default
    assert default == unresponsive_runs.PREFECT_DEFAULT_HEARTBEAT_SECONDS
    assert trigger.within.total_seconds() > default
    # A suspended or paused run stops beating on purpose: that must not crash it.
    assert {"prefect.flow-run.Suspended", "prefect.flow-run.Paused"} <= trigger.expect
    assert {"prefect.flow-run.Completed", "prefect.flow-run.Failed"} <= trigger.expect
    (action,) = parsed.actions
    assert isinstance(action, ChangeFlowRunState)
    assert action.state.value == "CRASHED"


def test_a_busy_server_is_asked_again_and_a_refusal_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prefect's SQLite answers 503 while it starts: the automation is saved once it clears."""
    replies: list[tuple[int, object]] = [(503, None), (200, []), (503, None), (503, None)]
    answers = iter([*replies, (201, {"id": "a"})])
    calls: list[str] = []

    def fake(url: str, auth: str | None = None, body: object = None, **_: object) -> object:
        calls.append(url.rsplit("/", 2)[-2] + "/" + url.rsplit("/", 1)[-1])
        return next(answers)

    monkeypatch.setattr(unresponsive_runs, "request", fake)
    monkeypatch.setattr("ops.unresponsive_runs.time.sleep", lambda _s: None)
    assert unresponsive_runs.ensure("http://api", "u:p") == "created"
    assert len(calls) == 5

    monkeypatch.setattr(unresponsive_runs, "request", lambda *_a, **_k: (500, None))
    with pytest.raises(RuntimeError, match="HTTP 500"):
        unresponsive_runs.ensure("http://api", "u:p")
