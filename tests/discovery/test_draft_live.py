"""``lifecycle inventory draft`` on a live shop (SQLite, PostgreSQL, MariaDB).

Every planted column is found with its kind; no planted value appears in the draft, the
command's output or the log folder; the reviewed draft validates and runs an exact erasure
of one subject through the SQL connector (locate, plan, execute, verify).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from cli.main import app
from config.loader import load_config
from connectors.sql.config import SqlStore
from connectors.sql.connector import SqlConnector
from core.engines import make_engine
from core.keys import KeyRing
from discovery.catalog import read_catalog
from discovery.pipeline import classify_catalog, draft_inventory, read_only_engine
from tests.discovery.conftest import Shop
from tests.discovery.helpers import confirm_todos, write_config
from tests.discovery.shop import (
    CUSTOMERS,
    ITEMS_PER_ORDER,
    ORDERS_PER_CUSTOMER,
    VISITS,
    email,
    metadata,
)

PLANTED_KINDS = {
    ("customers", "email"): "email",
    ("customers", "phone"): "phone",
    ("customers", "full_name"): "person_name",
    ("customers", "iban"): "iban",
    ("customers", "customer_number"): "identifier",
    ("orders", "card_number"): "card_number",
    ("orders", "customer_id"): "identifier",  # by name; the draft shows it as a reference
    ("web_visits", "ip_address"): "ip_address",
}


def test_every_planted_column_is_found_with_its_kind(shop: Shop) -> None:
    engine = read_only_engine(shop.url)
    try:
        found = classify_catalog(engine, read_catalog(engine), rows=1000)
    finally:
        engine.dispose()
    kinds = {(t, c): d.kind for t, columns in found.items() for c, d in columns.items()}
    assert kinds == PLANTED_KINDS


def test_the_draft_names_tables_keys_references_and_never_a_value(shop: Shop) -> None:
    text = draft_inventory(shop.url, region="eu-central-1").text
    assert not [v for v in shop.planted.values if v in text]
    assert "- {column: email, kind: email, case_insensitive: true}" in text
    assert "- {column: customer_number, kind: customer_number}" in text
    assert "primary_key: [order_id, line_no]" in text
    assert "customer_id -> customers.id: holders" in text
    assert "order_id -> orders.id: holders" in text
    assert "card_number: [financial]" in text and "ip_address: [telemetry]" in text
    assert "full_name: [contact]   # person_name: column name" in text
    web = text[text.index("- name: web_visits") :]
    assert "TODO: no identity reaches this table" in web
    left_out = [line for line in text.splitlines() if "products" in line]
    assert len(left_out) == 1 and "no personal-data candidates" in left_out[0]


def test_the_command_writes_the_draft_and_leaks_no_value(
    shop: Shop, tmp_path: Path, isolated_settings: Path
) -> None:
    out = tmp_path / "cfg" / "inventory.yaml"
    out.parent.mkdir()
    result = CliRunner().invoke(app, ["inventory", "draft", "--url", shop.url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "customers: 3 identity, 4 personal-field candidates" in result.output
    assert (
        "web_visits: 0 identity, 1 personal-field candidates; no identity reaches" in result.output
    )
    assert "review the TODO comments" in result.output
    seen = [result.output, out.read_text()]
    seen += [p.read_text(errors="replace") for p in isolated_settings.rglob("*") if p.is_file()]
    for blob in seen:
        assert not [v for v in shop.planted.values if v in blob]
    again = CliRunner().invoke(app, ["inventory", "draft", "--url", shop.url, "--out", str(out)])
    assert again.exit_code != 0  # an existing file is not overwritten without --force


def _rows(url: str) -> dict[str, set[tuple[object, ...]]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: {tuple(r) for r in conn.execute(sa.select(table))}
                for name, table in metadata.tables.items()
            }
    finally:
        engine.dispose()


def test_the_reviewed_draft_validates_and_erases_exactly_one_subject(
    shop: Shop, tmp_path: Path
) -> None:
    draft = draft_inventory(shop.url).text
    load_config(write_config(tmp_path / "as-written", draft))  # valid before any edit
    config = load_config(write_config(tmp_path / "reviewed", confirm_todos(draft)))
    store = config.inventory.stores[0]
    assert isinstance(store, SqlStore)
    before = _rows(shop.url)
    subject = {"email": frozenset({email(7)})}
    engine = make_engine(shop.url)
    connector = SqlConnector(
        store, config.policy, keys=KeyRing.from_master(b"k" * 32), engine=engine
    )
    try:
        plan = connector.plan_erasure(connector.locate(subject), "2026-03-01")
        connector.execute(plan, lambda _batch: None)
        assert connector.verify(subject, plan).clean
    finally:
        connector.close()
        engine.dispose()
    after = _rows(shop.url)
    gone = {name: before[name] - after[name] for name in before}
    assert all(not (after[name] - before[name]) for name in before)  # nothing changed in place
    assert {r[0] for r in gone["customers"]} == {7}
    assert {r[1] for r in gone["orders"]} == {7}
    assert len(gone["orders"]) == ORDERS_PER_CUSTOMER
    assert {r[0] for r in gone["order_items"]} == {r[0] for r in gone["orders"]}
    assert len(gone["order_items"]) == ORDERS_PER_CUSTOMER * ITEMS_PER_ORDER
    assert not gone["web_visits"] and not gone["products"]
    assert len(after["customers"]) == CUSTOMERS - 1 and len(after["web_visits"]) == VISITS
