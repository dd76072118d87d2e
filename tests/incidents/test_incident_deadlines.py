"""The incident clock: deadline events (near, overdue), their once-only rule, the register
artifact, and the automations that turn the events into notifications.

Breaches are declared with awareness in the past, so the authority's 72 hours (and the
clients' contract hours) are near or already over; their assessments are recorded
directly (the counting is ``test_assessment_engine``'s).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
import yaml

from audit.ledger import Ledger
from config.loader import load_config
from config.settings import PROJECT_ROOT
from engine.incident_deadlines import (
    ALERT_KIND,
    EVENT_DEADLINE_NEAR,
    EVENT_OVERDUE,
    DeadlineAlert,
    deadline_alerts,
    incident_resource,
)
from flows.incident_deadlines import incident_deadlines
from incidents.assess import combine
from incidents.assessment import PartAssessment
from incidents.rules import notifications
from incidents.scope import ScopePart
from state.incidents import Incident
from tasks import incident_tasks
from tasks.incident_tasks import REGISTER_KEY, emit_deadline_events
from tests.flows.register_helpers import latest_artifact
from tests.incidents.conftest import ACTOR, Shop, declared, now, register

PART = ScopePart(store="shop", table="orders")
SUMMARY_WORDS = "public share"  # in every test incident's summary: must reach no event


def assessed(hours_ago: float, *, clients: dict[str, int] | None = None) -> Incident:
    """A breach we became aware of ``hours_ago``, assessed medium risk now: the authority
    is due 72 h after awareness (a client by its contract)."""
    incident = declared(PART, hours_ago=hours_ago)
    config = load_config()
    part = PartAssessment(
        label=PART.label,
        store="shop",
        records=12,
        subjects=7,
        identity="customer_id",
        categories=("contact",),
        region="eu-central-1",
        clients=clients or {},
    )
    assessment = combine(
        config, [part], {"customer_id": 7}, kinds=incident.kinds, key_compromised=None
    )
    assert incident.aware_at is not None
    at = now()
    due = notifications(config.policy.incidents, assessment, incident.aware_at, at)
    return register().record_assessment(incident.id, assessment, due, actor=ACTOR, assessed_at=at)


@pytest.fixture
def clock(shop: Shop) -> dict[str, str]:
    """Incidents whose authority deadline is near (7 h left), over (8 h late) or far, one
    whose client (acme: 24 h by contract) is late while the authority is not, and a
    concern still in triage."""
    reg = register()
    triage = reg.report("Odd export seen in a public share", reported_by="help-desk", actor=ACTOR)
    return {
        "near": assessed(65).id,
        "overdue": assessed(80).id,
        "far": assessed(10).id,
        "client_late": assessed(30, clients={"acme": 3}).id,
        "triage": triage.id,
    }


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The events the deadline task emits (still sent to the test server)."""
    from prefect.events import Event, emit_event

    sent: list[Event] = []

    def recording(**kwargs: Any) -> Event | None:
        event = emit_event(**kwargs)
        if event is not None:
            sent.append(event)
        return event

    monkeypatch.setattr(incident_tasks, "emit_event", recording)
    yield sent


def test_alerts_name_near_and_overdue_notifications_only(clock: dict[str, str]) -> None:
    at = now()
    alerts = deadline_alerts(register().due(), warn_hours=12, now=at)
    found = {(a.incident_id, a.audience): a for a in alerts}
    assert set(found) == {
        (clock["near"], "authority"),
        (clock["overdue"], "authority"),
        (clock["client_late"], "client:acme"),
    }
    assert found[(clock["near"], "authority")].event == EVENT_DEADLINE_NEAR
    assert found[(clock["near"], "authority")].hours_left == 6  # 7 h less the test's moments
    assert found[(clock["overdue"], "authority")].event == EVENT_OVERDUE
    assert found[(clock["overdue"], "authority")].hours_left == -9  # 8 h and moments late
    assert found[(clock["client_late"], "client:acme")].event == EVENT_OVERDUE


def test_the_hourly_flow_emits_once_and_publishes_the_register(
    prefect: None, clock: dict[str, str], emitted: list[Any]
) -> None:
    outcome = incident_deadlines()
    assert outcome.events == {
        EVENT_DEADLINE_NEAR: [clock["near"]],
        EVENT_OVERDUE: [clock["overdue"], clock["client_late"]],  # soonest deadline first
    }
    by_key = {(e.resource.id, e.resource["lifecycle.incident.audience"]): e for e in emitted}
    near = by_key[(f"lifecycle.incident.{clock['near']}", "authority")]
    assert near.event == EVENT_DEADLINE_NEAR
    assert near.resource.name == clock["near"]
    assert near.resource["lifecycle.incident.risk"] == "medium"
    assert near.payload["hours_left"] == 6 and near.payload["warn_hours"] == 12
    late = by_key[(f"lifecycle.incident.{clock['client_late']}", "client:acme")]
    assert late.event == EVENT_OVERDUE and late.payload["hours_left"] < 0
    text = " ".join(e.model_dump_json() for e in emitted).lower()
    assert SUMMARY_WORDS not in text and "help-desk" not in text

    alerts = list(Ledger.open().events(kinds=[ALERT_KIND]))
    assert {(e.request_id, e.detail["alert"], e.detail["audience"]) for e in alerts} == {
        (clock["near"], "near", "authority"),
        (clock["overdue"], "overdue", "authority"),
        (clock["client_late"], "overdue", "client:acme"),
    }

    rows = _register_rows()
    assert [r["incident"] for r in rows][:4] == [
        clock["overdue"],
        clock["client_late"],
        clock["near"],
        clock["far"],
    ]  # soonest deadline first; the concern in triage has none
    assert {r["incident"] for r in rows} == set(clock.values())
    by_id = {r["incident"]: r for r in rows}
    assert by_id[clock["overdue"]]["overdue"] == 1 and by_id[clock["near"]]["near"] == 1
    assert by_id[clock["client_late"]]["notifications due"] == 2  # authority and acme
    assert by_id[clock["triage"]]["state"] == "triage" and by_id[clock["triage"]]["risk"] == "-"
    assert outcome.counts == {"open": 5, "overdue": 2, "near": 1, "triage": 1}

    emitted.clear()
    again = incident_deadlines()  # the next hour: nothing new to say
    assert again.events == {} and emitted == []


def test_an_overdue_notification_is_alerted_again_a_day_later(
    prefect: None, clock: dict[str, str]
) -> None:
    at = now()
    first = emit_deadline_events.fn(now=at)
    assert set(first) == {EVENT_DEADLINE_NEAR, EVENT_OVERDUE}
    assert emit_deadline_events.fn(now=at + timedelta(hours=23)) == {
        EVENT_OVERDUE: [clock["near"]]  # its deadline has passed since: first time overdue
    }
    later = emit_deadline_events.fn(now=at + timedelta(hours=25))  # a day after the first
    overdue = [clock["overdue"], clock["client_late"], clock["near"]]
    assert later == {EVENT_OVERDUE: overdue}


def test_a_notification_recorded_as_sent_is_no_longer_alerted(
    prefect: None, clock: dict[str, str]
) -> None:
    register().notified(
        clock["overdue"], "authority", recipient_role="dpo", reference="SA-2026-17", actor=ACTOR
    )
    emitted = emit_deadline_events.fn(now=now())
    assert clock["overdue"] not in emitted.get(EVENT_OVERDUE, [])


def _register_rows() -> list[dict[str, Any]]:
    table = latest_artifact(REGISTER_KEY)
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    return list(rows)


# -- the automations (automations/notify-operators.yaml) -----------------------------------

AUTOMATIONS = PROJECT_ROOT / "automations" / "notify-operators.yaml"


@pytest.mark.parametrize(
    ("name", "event", "hours_left"),
    [
        ("notify-operators-on-incident-deadline-near", EVENT_DEADLINE_NEAR, 5),
        ("notify-operators-on-incident-overdue", EVENT_OVERDUE, -3),
    ],
)
def test_the_automations_match_the_events_and_render(
    name: str, event: str, hours_left: int
) -> None:
    """Each automation's trigger matches the events the flow emits (and nothing else), and
    its message renders with such an event as the server renders it."""
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger
    from prefect.events.schemas.events import Resource, ResourceSpecification
    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect.server.utilities.user_templates import render_user_template_sync

    raw = {a["name"]: a for a in yaml.safe_load(AUTOMATIONS.read_text())["automations"]}
    automation = Automation.model_validate(raw[name])
    trigger = automation.trigger
    assert isinstance(trigger, EventTrigger) and trigger.expect == {event}
    (action,) = automation.actions
    assert isinstance(action, SendNotification)

    due = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    alert = DeadlineAlert(event, "inc_0123456789abcdef", "client:acme", "high", due, hours_left)
    resource = alert.resource()
    match = ResourceSpecification.model_validate(trigger.model_dump(mode="json")["match"])
    assert match.matches(Resource(root=resource))
    other = incident_resource("inc_0123456789abcdef", "authority", None)
    assert match.matches(Resource(root=other))
    assert not match.matches(Resource(root={"prefect.resource.id": "lifecycle.request.req_1"}))
    received = ReceivedEvent.model_validate(
        {
            "occurred": datetime.now(UTC),
            "event": event,
            "resource": resource,
            "payload": alert.payload(12),
            "id": uuid4(),
        }
    )
    subject = render_user_template_sync(action.subject, {"event": received})
    body = " ".join(render_user_template_sync(action.body, {"event": received}).split())
    assert "inc_0123456789abcdef" in subject and "client:acme" in subject
    assert "(risk high)" in body and "the client:acme notification" in body
    assert "2030-01-02T03:04:05+00:00" in body
    if event == EVENT_OVERDUE:
        assert "3 hour(s) late" in body
    else:
        assert "5 whole hour(s) from now" in body
