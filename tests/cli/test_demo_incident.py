"""The demo's incident stage (``cli.demo_incident``): report, declare, scope, assess with the
flow, draft and record the authority report, one corrective action, close.

Runs the stage alone on a freshly seeded demo CRM and the session's Prefect test server;
the counts it prints are checked against the seeded rows, read directly.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from audit.ledger import Ledger
from cli.demo_incident import SUMMARY, _window, incident_result, run_incident
from config.loader import load_config
from core.engines import make_engine
from demo.crm_schema import crm_metadata
from demo.customers import DEMO_CUSTOMERS
from demo.seed_sql import seed_crm


def _truth(crm: Path, today: date) -> tuple[int, int]:
    """Login events in the stage's window and their distinct customers, from the rows."""
    start, end = _window(today)
    events = crm_metadata().tables["login_events"]
    in_window = (events.c.occurred_at >= start.replace(tzinfo=None)) & (
        events.c.occurred_at < end.replace(tzinfo=None)
    )
    engine = make_engine(f"sqlite:///{crm}")
    try:
        with engine.connect() as conn:
            records = conn.execute(select(func.count()).where(in_window)).scalar_one()
            subjects = conn.execute(
                select(func.count(events.c.customer_id.distinct())).where(in_window)
            ).scalar_one()
    finally:
        engine.dispose()
    return int(records), int(subjects)


def test_the_demo_incident_runs_from_report_to_closed(
    prefect_server: None,
    isolated_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    crm = isolated_settings / "crm.db"
    isolated_settings.mkdir(parents=True, exist_ok=True)
    seed_crm(f"sqlite:///{crm}", customers=DEMO_CUSTOMERS)
    today = datetime.now(UTC).date()  # one date for the seed's truth and the stage
    records, subjects = _truth(crm, today)
    assert subjects > 0  # recent logins every day: the window is never empty

    outcome = run_incident(load_config(), isolated_settings, "demo", today=today)

    out = capsys.readouterr().out
    iid = outcome["incident_id"]
    assert (outcome["records"], outcome["subjects"]) == (records, subjects)
    assert outcome["state"] == "closed" and outcome["risk"] == "medium"
    assert outcome["authority_reference"] == "DEMO-DPA-0001"
    assert f"assessed: {records:,} records, {subjects:,} distinct subjects" in out
    assert "authority notification recorded as sent (DEMO-DPA-0001)" in out
    assert "subjects: not required" in out and f"{iid} closed in " in out
    assert incident_result(outcome).startswith(f"{iid} closed: {records:,} records")
    draft = (isolated_settings / "incidents" / f"{iid}-authority.md").read_text()
    assert f"Data subjects concerned: approximately {subjects:,}" in draft

    ledger = Ledger.open()
    assert [e.kind for e in ledger.events(request_id=iid)] == [
        "incident.reported",
        "incident.declared",
        "incident.scoped",
        "incident.assessed",
        "incident.notified",
        "incident.action-added",
        "incident.action-done",
        "incident.closed",
    ]
    assert SUMMARY not in str([dict(e.detail) for e in ledger.events(request_id=iid)])
    assert "@" not in out + draft  # counts and names only, no address
    assert ledger.verify().ok
