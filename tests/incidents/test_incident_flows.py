"""The incident-assessment and incident-report flows on the session's Prefect test server.

The assessment run is named after its incident, publishes counts (a table artifact and a
markdown summary) and leaves no seeded address anywhere in Prefect's database; a value that
is no incident id is refused, removed from the run's parameters and never names the run.
The report form opens an incident in triage and keeps no summary in Prefect; a summary
holding an e-mail address or phone number is refused and removed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from audit.ledger import Ledger
from core.engines import make_engine
from flows.incident_assessment import ARTIFACT_KEY, SUMMARY_KEY, incident_assessment
from flows.incident_report import incident_report
from flows.run_parameters import REMOVED
from incidents.scope import ScopePart, TimeWindow
from state.incidents import TRIAGE
from tests.flows.register_helpers import latest_artifact
from tests.incidents.conftest import WINDOW, Shop, declared, prefect_rows, register

ORDERS_IN_WINDOW = ScopePart(
    store="shop", table="orders", window=TimeWindow(start=WINDOW[0], end=WINDOW[1])
)
CUSTOMER_EMAILS = ScopePart(store="shop", table="customers", columns=("email",))


def flow_run(run_id: UUID) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def logs_of(run_id: UUID) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        found = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return [log.message for log in found]


def leaks(values: list[str]) -> list[str]:
    """The rows of Prefect's database holding any of ``values`` (lower-cased), shortened."""
    return [row[:200] for row in prefect_rows() if any(v.lower() in row for v in values)]


def test_the_assessment_flow_records_and_publishes_counts_only(prefect: None, shop: Shop) -> None:
    incident = declared(ORDERS_IN_WINDOW, CUSTOMER_EMAILS)
    state = incident_assessment(incident.id, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert (summary.records, summary.subjects, summary.risk) == (30, 20, "high")
    assert [n["audience"] for n in summary.notifications] == [
        "authority",
        "subjects",
        "client:acme",
        "client:globex",
    ]

    run_id = state.state_details.flow_run_id
    assert run_id is not None
    run = flow_run(run_id)
    assert run.name == incident.id and run.parameters == {"incident_id": incident.id}
    recorded = register().get(incident.id)
    assert recorded.risk == "high" and recorded.assessment is not None
    assert recorded.assessment.subjects == 20

    table = latest_artifact(ARTIFACT_KEY, str(run_id))
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [r["part"] for r in rows] == ["shop.orders", "shop.customers[email]", "total"]
    assert rows[0] | {"key held by": "-"} == {
        "part": "shop.orders",
        "records": 10,
        "subjects": 10,
        "identity": "customer_id",
        "categories": "payment",
        "region": "eu-central-1",
        "encrypted": "unknown",
        "key held by": "-",
    }
    assert (rows[-1]["records"], rows[-1]["subjects"]) == (30, 20)
    assert "risk high" in table.description and "authority required by" in table.description
    markdown = latest_artifact(SUMMARY_KEY, str(run_id)).data
    assert "risk high" in markdown and "| authority | required |" in markdown
    assert leaks(["shop.customers[email]"])  # the search reads the artifacts ...
    assert leaks(shop.emails) == []  # ... and logs, parameters, events, task runs


def test_a_value_that_is_no_incident_id_is_refused_and_removed(prefect: None) -> None:
    pasted = "Someone.Pasted@example.com"
    state = incident_assessment(pasted, return_state=True)
    assert state.is_failed()
    assert "give the id of a reported incident" in (state.message or "")
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    run = flow_run(run_id)
    assert run.name == "invalid-incident-id"
    assert run.parameters == {"incident_id": REMOVED}
    assert leaks([pasted]) == []


def test_an_unknown_incident_fails_the_run_naming_it(prefect: None, shop: Shop) -> None:
    state = incident_assessment("inc_0123456789abcdef", return_state=True)
    assert state.is_failed()
    assert "no incident inc_0123456789abcdef" in (state.message or "")


def test_a_failed_assessment_is_in_the_ledger_and_records_nothing(
    prefect: None, shop: Shop
) -> None:
    incident = declared(ORDERS_IN_WINDOW)
    engine = make_engine(f"sqlite:///{shop.db}")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE orders"))  # the store no longer matches
    finally:
        engine.dispose()
    state = incident_assessment(incident.id, return_state=True)
    assert state.is_failed()
    (failed,) = Ledger.open().events(request_id=incident.id, kinds=["incident.assessment-failed"])
    assert failed.detail["error"] == "store 'shop': the inventory does not match the schema"
    assert register().get(incident.id).assessment is None
    assert leaks(shop.emails) == []


@pytest.mark.parametrize(
    ("summary", "found"),
    [
        ("Laptop stolen from the office; owner Jane.Doe.Breach@example.com", "an e-mail address"),
        ("Caller at +49 30 901820 says invoices are visible to everyone", "a phone number"),
    ],
)
def test_the_report_form_refuses_personal_data_and_removes_it(
    prefect: None, summary: str, found: str
) -> None:
    state = incident_report(summary, "help-desk", return_state=True)
    assert state.is_failed()
    message = state.message or ""
    assert "the concern was not recorded" in message and f"holds {found}" in message
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert flow_run(run_id).parameters == {
        "summary": REMOVED,
        "reported_by": "help-desk",
        "detected_at": None,
    }
    assert register().list() == []
    # The whole value as typed, and the number without its spaces: never a bare run of
    # digits, which the session's thousands of hex ids hold by chance (a CI run found
    # "901820" inside an event's UUID).
    sensitive = [summary, "Jane.Doe.Breach@example.com", "+49 30 901820", "+4930901820"]
    assert leaks(sensitive) == []


def test_a_reporter_given_as_an_address_is_refused_and_removed(prefect: None) -> None:
    state = incident_report(
        "Printer queue shows other people's payslips", "Reporter.X@example.com", return_state=True
    )
    assert state.is_failed()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert flow_run(run_id).parameters["reported_by"] == REMOVED
    assert leaks(["Reporter.X@example.com"]) == []


def test_only_the_policy_s_report_roles_may_report(
    prefect: None, make_shop: Callable[..., Shop]
) -> None:
    make_shop(report_roles=("help-desk", "security-team"))
    state = incident_report("Badge reader logs exposed", "Some Intern", return_state=True)
    assert state.is_failed()
    assert "give one of the policy's report_roles: help-desk, security-team" in (
        state.message or ""
    )
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert flow_run(run_id).parameters["reported_by"] == REMOVED
    assert incident_report("Badge reader logs exposed", "security-team")
    assert [i.reported_by for i in register().list()] == ["security-team"]


def test_the_report_form_opens_an_incident_and_keeps_no_summary(prefect: None) -> None:
    summary = "Unencrypted backup tape missing after the courier pickup on Tuesday"
    state = incident_report(summary, "security-team", return_state=True)
    assert state.is_completed(), state.message
    incident_id = state.result()
    found = register().get(incident_id)
    assert (found.state, found.summary, found.reported_by) == (TRIAGE, summary, "security-team")

    run_id = state.state_details.flow_run_id
    assert run_id is not None
    parameters = flow_run(run_id).parameters
    assert parameters["summary"] == f"(kept in the incident register: {incident_id})"
    assert any(incident_id in line for line in logs_of(run_id))
    assert leaks([incident_id])  # the search finds what the run did keep
    assert leaks(["courier pickup"]) == []
