"""``--set`` corrections are checked against the store's columns before anything is registered.

The demo CRM on SQLite with the demo inventory: the SQL connector validates each
correction as rectification would (declared field or identity column, not a key, type,
length, NOT NULL) and the request is refused with exit 2, naming ``table.column`` and what
it expects, never the value. No flow runs: nothing gets that far.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.keystore import keyring_from_settings
from cli.main import app
from config.loader import load_config
from connectors.sql.config import SqlStore
from connectors.sql.connector import SqlConnector
from demo.seed_sql import DemoData, seed_crm
from engine.request_support import request_context

TOO_LONG = "Q" * 201  # customers.full_name is VARCHAR(200)


@pytest.fixture
def crm(isolated_settings: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DemoData]:
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    yield seed_crm(f"sqlite:///{isolated_settings / 'crm.db'}", customers=5)


def rectify(email: str, *changes: str) -> tuple[int, str, str]:
    args = ["request", "submit", "--kind", "rectification", "--identity", f"email={email}"]
    for change in changes:
        args += ["--set", change]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("customers.email=", "--set customers.email: empty"),
        ("customers.id=5", "crm.customers.id: key columns cannot be rectified"),
        ("customers.nope=x", "crm.customers.nope: no such column"),
        (
            f"customers.full_name={TOO_LONG}",
            "crm.customers.full_name: expected text of at most 200",
        ),
        ("customers.contract_ended_at=soon", "crm.customers.contract_ended_at: expected an ISO"),
        ("orders.customer_id=7", "crm.orders.customer_id: not a declared personal field"),
        ("nowhere.x=1", "correction 'nowhere.x' names no declared table or field"),
    ],
)
def test_a_correction_the_column_cannot_hold_is_refused_before_registering(
    crm: DemoData, change: str, expected: str
) -> None:
    code, out, err = rectify(crm.subject.email, change)

    assert code == 2, err
    assert expected in err and out == ""
    assert TOO_LONG not in err and "soon" not in err
    assert request_context().register.list() == []


def test_every_problem_is_named_at_once(crm: DemoData) -> None:
    changes = ("customers.id=5", "customers.phone=+4930901820", "orders.nope=1")
    code, _, err = rectify(crm.subject.email, *changes)

    assert code == 2
    assert "crm.customers.id" in err and "crm.orders.nope" in err
    assert "customers.phone" not in err  # a valid correction is not a problem


def test_a_store_that_cannot_check_refuses_the_request(isolated_settings: Path) -> None:
    # No CRM seeded: the store's tables do not exist, so nothing can be checked.
    code, _, err = rectify("demo.subject@example.com", "customers.full_name=Robin")

    assert code == 1
    assert "store 'crm' could not check the corrections" in err
    assert "nothing was registered" in err
    assert request_context().register.list() == []


def test_the_connector_checks_without_writing(crm: DemoData) -> None:
    config = load_config()
    store = config.store("crm")
    assert isinstance(store, SqlStore)
    connector = SqlConnector(store, config.policy, keys=keyring_from_settings())
    try:
        assert connector.check_changes({"customers.full_name": "Robin Q", "phone": ""}) == []
        assert connector.check_changes({"customers.email": " "}) == [
            "crm.customers.email: expected a value (an identity column, NOT NULL) (VARCHAR)"
        ]
        assert connector.check_changes({"quantity": "two"}) == [
            "crm.order_items.quantity: expected an integer (INTEGER)"
        ]
    finally:
        connector.close()
