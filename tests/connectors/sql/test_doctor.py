"""Index advice for locate's searches, and ``lifecycle doctor`` over every SQL store."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from cli.doctor_cmd import app
from connectors.sql.doctor import IndexAdvice, StoreCheck, case_notes, missing_indexes
from connectors.sql.locate import locate
from connectors.sql.schema import reflect_store
from tests.connectors.sql.conftest import (
    INVENTORY_TABLES,
    POLICY,
    SqlWorld,
    build_world,
)

runner = CliRunner()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _advised(advice: list[IndexAdvice]) -> dict[tuple[str, tuple[str, ...]], IndexAdvice]:
    return {(a.table, a.columns): a for a in advice}


def test_advises_indexes_only_where_locate_would_scan(shared_world: SqlWorld) -> None:
    schema = reflect_store(shared_world.engine, shared_world.store)
    advised = _advised(missing_indexes(shared_world.engine, schema, shared_world.store))

    # A declared-only reference without an index: every backend needs one.
    tickets = advised.pop(("support_tickets", ("customer_id",)))
    assert tickets.statement == (
        "CREATE INDEX ix_support_tickets_customer_id ON support_tickets (customer_id)"
    )
    assert tickets.reason == "rows are found through this reference to customers"
    if schema.is_mysql:
        # InnoDB indexes foreign key columns itself; the _ci collation serves the email.
        assert advised == {}
        assert case_notes(schema, shared_world.store) == [
            "store 'crm', table 'customers': identity column 'email' is compared without "
            "lower(): its _ci collation already ignores case, and lower() would prevent "
            "index use"
        ]
        return
    # An unindexed foreign key column (PostgreSQL and SQLite do not index them).
    login = advised.pop(("login_events", ("customer_id",)))
    assert login.statement == (
        "CREATE INDEX ix_login_events_customer_id ON login_events (customer_id)"
    )
    # customers.email has a plain index, but it is compared with lower().
    email = advised.pop(("customers", ("email",)))
    assert email.statement == "CREATE INDEX ix_customers_lower_email ON customers (lower(email))"
    assert "lower()" in email.reason
    # Covered: indexed references, order_items.order_id leading the composite key, the
    # unique customer_number, consents' indexed match column.
    assert advised == {}
    assert case_notes(schema, shared_world.store) == []


def test_running_the_advised_statements_clears_the_advice(sql_world: SqlWorld) -> None:
    schema = reflect_store(sql_world.engine, sql_world.store)
    advice = missing_indexes(sql_world.engine, schema, sql_world.store)
    assert advice
    with sql_world.engine.begin() as conn:
        for item in advice:
            assert item.statement is not None
            conn.execute(sa.text(item.statement))

    # Reflection stays clean (SQLite cannot reflect the expression index: no warning).
    schema = reflect_store(sql_world.engine, sql_world.store)
    assert missing_indexes(sql_world.engine, schema, sql_world.store) == []


def test_advice_texts_name_table_and_columns_only(shared_world: SqlWorld) -> None:
    schema = reflect_store(shared_world.engine, shared_world.store)
    advice = missing_indexes(shared_world.engine, schema, shared_world.store)
    tickets = _advised(advice)[("support_tickets", ("customer_id",))]

    assert tickets.warning == (
        "store 'crm', table 'support_tickets': no usable index on (customer_id): "
        "rows are found through this reference to customers"
    )
    assert tickets.to_json() == {
        "store": "crm",
        "table": "support_tickets",
        "columns": ["customer_id"],
        "reason": "rows are found through this reference to customers",
        "statement": tickets.statement,
    }


@pytest.mark.service
def test_mariadb_case_sensitive_collation_falls_back_to_lower(mariadb_url: str) -> None:
    world = build_world(mariadb_url)
    try:
        with world.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "ALTER TABLE customers MODIFY email VARCHAR(120) "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"
                )
            )
        schema = reflect_store(world.engine, world.store)
        advised = _advised(missing_indexes(world.engine, schema, world.store))

        email = advised[("customers", ("email",))]
        assert email.statement is None  # no index serves lower() on MariaDB
        assert "_ci collation" in email.reason
        assert case_notes(schema, world.store) == []
        # Still found regardless of case: compared with lower() on both sides.
        findings = locate(world.engine, schema, world.store, world.subject)
        assert {t.target: set(t.keys) for t in findings.targets} == world.expected
    finally:
        world.engine.dispose()


# --- lifecycle doctor -------------------------------------------------------------------


def _config_dir(tmp_path: Path, stores: list[dict[str, Any]]) -> Path:
    folder = tmp_path / "cfg"
    folder.mkdir(exist_ok=True)
    inventory = {"stores": stores}
    (folder / "inventory.yaml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    (folder / "policy.yaml").write_text(yaml.safe_dump(POLICY), encoding="utf-8")
    return folder


def _store(url: str, tables: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "name": "crm",
        "type": "sql",
        "url": url,
        "region": "eu-central-1",
        "tables": INVENTORY_TABLES if tables is None else tables,
    }


def _doctor(folder: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--config", str(folder), *args])
    return result.exit_code, _ANSI.sub("", result.output)


@pytest.fixture
def world_config(sql_world: SqlWorld, tmp_path: Path) -> Iterator[Path]:
    yield _config_dir(tmp_path, [_store(sql_world.url)])


def test_doctor_reports_advice_then_passes_once_applied(
    sql_world: SqlWorld, world_config: Path
) -> None:
    code, output = _doctor(world_config, "--json")
    assert code == 1
    [report] = json.loads(output)
    assert report["store"] == "crm"
    assert report["reachable"] is True
    assert report["ok"] is False
    assert report["problems"] == []
    statements = [a["statement"] for a in report["advice"]]
    assert "CREATE INDEX ix_support_tickets_customer_id ON support_tickets (customer_id)" in (
        statements
    )

    code, output = _doctor(world_config)
    assert code == 1
    assert "crm reachable" in output
    assert "needs attention" in output
    assert "CREATE INDEX ix_support_tickets_customer_id ON support_tickets (customer_id);" in (
        output
    )

    with sql_world.engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    code, output = _doctor(world_config)
    assert code == 0, output
    assert "crm reachable" in output
    assert ": OK" in output


def test_doctor_lists_schema_problems(shared_world: SqlWorld, tmp_path: Path) -> None:
    tables = [dict(t) for t in INVENTORY_TABLES]
    tables[1] = {**tables[1], "fields": {"shipping_addr": ["contact"]}}
    folder = _config_dir(tmp_path, [_store(shared_world.url, tables)])

    code, output = _doctor(folder, "--json")

    assert code == 1
    [report] = json.loads(output)
    assert report["reachable"] is True
    assert report["problems"] == [
        "store 'crm', table 'orders': unknown column 'shipping_addr' in fields"
    ]


def test_doctor_unreachable_store_hides_the_password(tmp_path: Path) -> None:
    missing = tmp_path / "absent" / "crm.db"
    folder = _config_dir(
        tmp_path,
        [
            _store("postgresql://lc:s3cret-pw@127.0.0.1:1/crm?connect_timeout=2"),
            {**_store(f"sqlite:///{missing}"), "name": "local"},
        ],
    )

    code, output = _doctor(folder)

    assert code == 1
    assert "s3cret-pw" not in output
    assert "crm unreachable postgresql+psycopg://lc:***@127.0.0.1:1/crm" in output
    assert "error: cannot connect (OperationalError:" in output
    assert "local unreachable" in output
    assert "database file does not exist" in output
    assert not missing.parent.exists()  # the doctor creates nothing


def test_doctor_invalid_config_exits_2(tmp_path: Path) -> None:
    folder = _config_dir(tmp_path, [{**_store("sqlite:///x.db"), "region": "nowhere"}])

    result = runner.invoke(app, ["--config", str(folder)])

    assert result.exit_code == 2
    assert "region" in result.stderr


@pytest.mark.parametrize("as_json", [False, True])
def test_doctor_hides_passwords_given_as_url_query_parameters(
    tmp_path: Path, as_json: bool
) -> None:
    url = "postgresql://lc@127.0.0.1:1/crm?connect_timeout=2&password=s3cret-pw&pass=s3cret-pw"
    folder = _config_dir(tmp_path, [_store(url)])

    code, output = _doctor(folder, *(["--json"] if as_json else []))

    assert code == 1
    assert "s3cret-pw" not in output
    shown = "postgresql+psycopg://lc@127.0.0.1:1/crm?connect_timeout=2&pass=***&password=***"
    if as_json:
        [report] = json.loads(output)
        assert report["url"] == shown
    else:
        assert f"crm unreachable {shown}" in output


def test_the_generic_report_keeps_every_line_and_json_key() -> None:
    advice = IndexAdvice("crm", "orders", ("customer_id",), "rows are found", "CREATE INDEX ix")
    check = StoreCheck(
        "crm",
        "sqlite:///crm.db",
        True,
        problems=("store 'crm', table 'orders': unknown column 'x' in fields",),
        advice=(advice, dataclasses.replace(advice, table="invoices", statement=None)),
        notes=("a note",),
        references=("orders.customer_id -> customers.id: follow holders (foreign key)",),
        warnings=("a warning",),
    )

    report = check.report()

    assert (report.store, report.type, report.location) == ("crm", "sql", "sqlite:///crm.db")
    assert (report.reachable, report.ok) == (True, False)
    assert [(line.label, line.text, line.severity, line.detail) for line in report.lines] == [
        ("schema", check.problems[0], "problem", ()),
        ("index", "orders (customer_id): rows are found", "advice", ("CREATE INDEX ix;",)),
        ("index", "invoices (customer_id): rows are found", "advice", ()),
        ("warning", "a warning", "warning", ()),
        ("note", "a note", "info", ()),
        ("reference", check.references[0], "info", ()),
    ]
    assert report.problems == ("crm.orders: unknown column 'x' in fields",)
    assert report.warnings == ("a warning",)
    assert report.to_json() == {**check.to_json(), "type": "sql"}
