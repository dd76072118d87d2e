"""The operators' automations shipped in ``automations/`` and the request-register
deployment's trigger in ``prefect.yaml`` are valid for this Prefect, and say what they should."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
import yaml
from prefect.automations import Automation
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture

from config.settings import PROJECT_ROOT
from tasks.register_artifact import EVENT_DEADLINE_NEAR, EVENT_OVERDUE, request_resource

FILE = PROJECT_ROOT / "automations" / "notify-operators.yaml"
FAILING_FLOWS = {
    "retention-sweep",
    "transfer-check",
    "audit-verify",
    "subject-request",
    "request-register",
    "incident-assessment",
    "incident-deadlines",
}
SUBJECT_REQUEST_RUNS = {"prefect.resource.role": "flow", "prefect.resource.name": "subject-request"}
NAMES = [
    "notify-operators-on-failed-privacy-jobs",
    "notify-operators-on-request-awaiting-approval",
    "notify-operators-on-request-deadline-near",
    "notify-operators-on-request-overdue",
    "notify-operators-on-incident-deadline-near",  # tests.incidents.test_incident_deadlines
    "notify-operators-on-incident-overdue",
]


def _raw() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(FILE.read_text())
    return {a["name"]: a for a in data["automations"]}


def _automation(name: str) -> Automation:
    return Automation.model_validate(_raw()[name])


def _trigger(name: str) -> EventTrigger:
    trigger = _automation(name).trigger
    assert isinstance(trigger, EventTrigger)
    assert trigger.posture is Posture.Reactive and trigger.threshold == 1
    return trigger


def _dumped(trigger: EventTrigger, field: str) -> Any:
    """A trigger field as plain JSON data (``match``, ``match_related``)."""
    return trigger.model_dump(mode="json")[field]


def _notification(name: str) -> SendNotification:
    (action,) = _automation(name).actions
    assert isinstance(action, SendNotification)
    return action


def test_every_automation_validates_as_a_prefect_automation() -> None:
    raw = _raw()
    assert list(raw) == NAMES
    for name in NAMES:
        automation = Automation.model_validate(raw[name])
        assert automation.enabled and automation.description
        assert [a.type for a in automation.actions] == ["send-notification"]


def test_failed_privacy_jobs_notify() -> None:
    trigger = _trigger("notify-operators-on-failed-privacy-jobs")
    assert trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert set(_dumped(trigger, "match_related")["prefect.resource.name"]) == FAILING_FLOWS


def test_a_subject_request_waiting_for_approval_notifies() -> None:
    trigger = _trigger("notify-operators-on-request-awaiting-approval")
    assert trigger.expect == {"prefect.flow-run.Paused", "prefect.flow-run.Suspended"}
    assert _dumped(trigger, "match_related") == SUBJECT_REQUEST_RUNS
    body = _notification("notify-operators-on-request-awaiting-approval").body
    assert "{{ flow_run|ui_url }}" in body and "parameters" not in body


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("notify-operators-on-request-deadline-near", EVENT_DEADLINE_NEAR),
        ("notify-operators-on-request-overdue", EVENT_OVERDUE),
    ],
)
def test_deadline_events_notify_and_render(name: str, event: str) -> None:
    """The trigger matches the events ``tasks.register_artifact`` emits, and the message
    renders with such an event as the server renders it (Prefect's user templates)."""
    from prefect.events.schemas.events import Resource, ResourceSpecification
    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect.server.utilities.user_templates import render_user_template_sync

    trigger = _trigger(name)
    assert trigger.expect == {event}
    assert _dumped(trigger, "match") == {"prefect.resource.id": "lifecycle.request.*"}
    resource = request_resource("req_0123456789abcdef", "erasure", "awaiting_approval")
    match = ResourceSpecification.model_validate(_dumped(trigger, "match"))
    assert match.matches(Resource(root=resource))
    assert not match.matches(Resource(root={"prefect.resource.id": "prefect.flow-run.x"}))
    received = ReceivedEvent.model_validate(
        {
            "occurred": datetime.now(UTC),
            "event": event,
            "resource": resource,
            "payload": {
                "request_id": "req_0123456789abcdef",
                "deadline": "2030-01-02T03:04:05+00:00",
                "days_left": -2,
                "extended": True,
                "within_days": 3,
            },
            "id": uuid4(),
        }
    )
    notification = _notification(name)
    subject = render_user_template_sync(notification.subject, {"event": received})
    body = " ".join(render_user_template_sync(notification.body, {"event": received}).split())
    assert "req_0123456789abcdef" in subject
    assert "The erasure request req_0123456789abcdef (awaiting_approval)" in body
    assert "2030-01-02T03:04:05+00:00" in body and "Extended already: True." in body
    if event == EVENT_OVERDUE:
        assert "2 day(s) overdue" in body
    else:
        assert "-2 whole day(s) left" in body


def test_the_server_accepts_every_automation(prefect_server: None) -> None:
    created: list[Any] = []
    try:
        for name in NAMES:
            created.append(_automation(name).create())  # sync outside an event loop
        for automation in created:
            read: Any = Automation.read(id=automation.id)
            assert read.name == automation.name
    finally:
        for automation in created:
            automation.delete()


# -- the request-register deployment's trigger (prefect.yaml) ------------------------------


def _register_deployment() -> dict[str, Any]:
    config = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    (deployment,) = [d for d in config["deployments"] if d["name"] == "request-register"]
    return dict(deployment)


def test_the_request_register_deployment_runs_daily_and_when_subject_requests_wait_or_end() -> None:
    """``prefect deploy`` turns the trigger into an automation that runs the deployment:
    validated here with the model ``prefect deploy`` uses."""
    from prefect.events import DeploymentEventTrigger, DeploymentTriggerTypes
    from pydantic import TypeAdapter

    deployment = _register_deployment()
    assert deployment["entrypoint"] == "flows/request_register.py:request_register"
    assert deployment["schedules"] and deployment["schedules"][0]["cron"]
    assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    (spec,) = deployment["triggers"]
    trigger = TypeAdapter(DeploymentTriggerTypes).validate_python(spec)
    assert isinstance(trigger, DeploymentEventTrigger)
    assert trigger.expect == {
        "prefect.flow-run.Suspended",
        "prefect.flow-run.Cancelled",
        "prefect.flow-run.Failed",
    }
    assert _dumped(trigger, "match_related") == SUBJECT_REQUEST_RUNS
    assert trigger.parameters == {"deadline_events": False}
    trigger.set_deployment_id(uuid4())
    automation = trigger.as_automation()
    assert [a.type for a in automation.actions] == ["run-deployment"]


def test_the_flow_entrypoint_and_parameters_match_the_deployment() -> None:
    from prefect.utilities.callables import parameter_schema

    from flows.request_register import request_register

    properties = parameter_schema(request_register.fn).properties
    assert set(properties) == {"deadline_events", "deadline_near_days"}
    assert set(_register_deployment()["triggers"][0]["parameters"]) <= set(properties)
