"""The inventory-drift flow and ``lifecycle discover`` on SQLite, PostgreSQL and MariaDB.

A clean schema exits 0; drift fails the run (exit 3) with new findings, a second run
calls them persisting, ``ignore:`` entries with reasons resolve what they name and undoing
the schema change resolves the rest. Every finding and the run's summary are in the
ledger; the table artifact holds the rows; no sampled value reaches the output, the
ledger, the drift record or Prefect's database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Select, inspect, literal_column, select, table
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from audit.ledger import Ledger
from cli.main import app
from config.settings import get_settings
from core.engines import make_engine
from core.errors import TerminalError
from flows.inventory_drift import DriftParameters, inventory_drift
from state.drift_checks import DriftChecks
from tests.discovery.drift_helpers import (
    create_shop,
    drift_the_schema,
    leaked,
    sql_store_yaml,
    undo_the_drift,
    write_config,
)

HIGH = {
    "sql.table-vanished",
    "sql.undeclared-personal-column",
    "sql.undeclared-fk-holder",
}


@pytest.fixture
def shop(
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_server: None,
) -> Iterator[Engine]:
    engine = make_engine(db_url)
    create_shop(engine)
    _configure(tmp_path, monkeypatch, db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, ignore: str = "") -> None:
    folder = write_config(tmp_path / "cfg", sql_store_yaml(url, ignore=ignore))
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(folder))
    get_settings.cache_clear()


def _discover() -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(app, ["discover", "--json"], env={"COLUMNS": "200"})
    output = result.stdout + result.stderr
    return result.exit_code, json.loads(result.stdout), output


def _states(payload: dict[str, Any]) -> dict[str, str]:
    return {f"{r['rule']} {r['resource']}": r["state"] for r in payload["findings"]}


def test_drift_runs_compare_exit_and_resolve(
    shop: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs: list[str] = []
    code, clean, out = _discover()
    outputs.append(out)
    assert code == 0, out
    assert clean["findings"] == [] and clean["high"] == 0

    drift_the_schema(shop)
    code, drifted, out = _discover()
    outputs.append(out)
    assert code == 3, out
    assert drifted["high"] == 3
    assert _states(drifted) == {
        "sql.table-vanished login_events": "new",
        "sql.undeclared-personal-column orders.contact_email": "new",
        "sql.undeclared-fk-holder gift_cards(customer_id) -> customers": "new",
        "sql.undeclared-table gift_cards": "new",
    }

    with pytest.raises(TerminalError) as failed:  # the flow itself fails on a high finding
        inventory_drift(params=DriftParameters(sample_rows=50))
    assert "3 high-severity finding(s)" in failed.value.message
    assert not leaked(failed.value.message)
    (persisting,) = DriftChecks(Ledger.open().engine).recent(1)
    assert persisting.high == 3 and persisting.total == 4

    # Reviewed: the e-mail copy and the gift-card table are accepted, with reasons.
    _configure(
        tmp_path,
        monkeypatch,
        db_url,
        ignore="      - {table: orders, column: contact_email, reason: copy erased with orders}\n"
        "      - {table: gift_cards, reason: erased by the gift card job}\n",
    )
    code, reviewed, out = _discover()
    outputs.append(out)
    assert code == 3, out  # login_events is still gone
    assert reviewed["ignored"] == 3
    assert _states(reviewed) == {
        "sql.table-vanished login_events": "persisting",
        "sql.undeclared-personal-column orders.contact_email": "resolved",
        "sql.undeclared-fk-holder gift_cards(customer_id) -> customers": "resolved",
        "sql.undeclared-table gift_cards": "resolved",
    }

    undo_the_drift(shop)
    code, fixed, out = _discover()
    outputs.append(out)
    assert code == 0, out
    assert _states(fixed) == {
        "sql.table-vanished login_events": "resolved",
    }

    _assert_ledger()
    text_run = CliRunner().invoke(app, ["discover", "--sample-rows", "0"], env={"COLUMNS": "200"})
    assert text_run.exit_code == 0, text_run.output
    assert "drift check drf_" in text_run.stdout and "0 findings, 0 high" in text_run.stdout
    outputs.append(text_run.stdout + text_run.stderr)
    for text in outputs:
        assert not leaked(text), "a sampled value reached the command's output"
    for run in DriftChecks(Ledger.open().engine).recent(10):
        assert not leaked(json.dumps(run.findings))
    _assert_prefect_clean()


def _assert_ledger() -> None:
    ledger = Ledger.open()
    checked = list(ledger.events(kinds=["drift.checked"]))
    assert [e.counts["high"] for e in checked] == [0, 3, 3, 1, 0]
    assert [e.counts["new"] for e in checked] == [0, 4, 0, 0, 0]
    assert [e.counts["resolved"] for e in checked] == [0, 0, 0, 3, 1]
    assert [e.counts["ignored"] for e in checked] == [0, 0, 0, 3, 0]
    assert checked[1].counts["tables"] == 3
    found = list(ledger.events(kinds=["drift.finding"]))
    assert {(e.detail["rule"], e.target) for e in found if e.detail["state"] == "new"} == {
        ("sql.table-vanished", "login_events"),
        ("sql.undeclared-personal-column", "orders.contact_email"),
        ("sql.undeclared-fk-holder", "gift_cards(customer_id) -> customers"),
        ("sql.undeclared-table", "gift_cards"),
    }
    assert all(e.connector == "shop" for e in found)
    resolved = list(ledger.events(kinds=["drift.resolved"]))
    assert len(resolved) == 4
    everything = [json.dumps([e.target, dict(e.detail), dict(e.counts)]) for e in ledger.events()]
    assert not any(leaked(text) for text in everything)
    assert ledger.verify().ok


def _prefect_rows() -> list[str]:
    """Every row of the test server's database, as lowercase text (logs and events
    flushed first)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)
    url = make_url(str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value()))
    engine = make_engine(f"sqlite:///{url.database}")
    try:
        rows: list[str] = []
        with engine.connect() as conn:
            for name in inspect(engine).get_table_names():
                everything: Select[Any] = select(literal_column("*")).select_from(table(name))
                rows += [f"{name}: {tuple(row)!r}".lower() for row in conn.execute(everything)]
        return rows
    finally:
        engine.dispose()


def _assert_prefect_clean() -> None:
    rows = _prefect_rows()
    artifacts = [r for r in rows if r.startswith("artifact") and "inventory drift" in r]
    assert any("orders.contact_email" in r for r in artifacts)  # the table artifact's rows
    assert [r[:200] for r in rows if leaked(r)] == []
