"""SQL drift: the live catalog against the declared tables, on SQLite, PostgreSQL and MariaDB.

The pure comparison first (a catalog built by hand, no database), then the whole read on
every backend: a schema of our own drifts the way developers drift one (a column of
e-mail addresses, a notes column, an undeclared table holding a foreign key into a
declared one, a declared table dropped), each change becomes a finding of its severity,
``ignore:`` entries with reasons drop what they name, and undoing the changes leaves
nothing. No sampled value shows in any finding.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from config.loader import load_config
from config.schema.model import LifecycleConfig
from connectors.sql.config import SqlIgnore, SqlStore
from core.engines import make_engine
from discovery.catalog import Catalog, ColumnInfo, ForeignKeyInfo, TableInfo
from discovery.detectors import Detection
from discovery.drift import RULES, StoreDrift
from discovery.drift_sql import columns_to_sample, ignores, read_drift, sql_findings
from tests.discovery.drift_helpers import (
    create_shop,
    drift_the_schema,
    leaked,
    sql_store_yaml,
    undo_the_drift,
    write_config,
)

# -- the comparison alone -------------------------------------------------------------------


def _store(**extra: Any) -> SqlStore:
    tables = [
        {
            "name": "customers",
            "identity": [{"column": "email", "kind": "email"}],
            "fields": {"email": ["contact"]},
        },
        {"name": "orders", "fields": {"address": ["contact"]}},
        {"name": "notes", "fields": {"body": ["contact"]}},
    ]
    data = {"type": "sql", "name": "shop", "url": "sqlite://", "region": "eu-central-1"}
    return SqlStore.model_validate(data | {"tables": tables} | extra)


def _table(name: str, *columns: str, fks: tuple[ForeignKeyInfo, ...] = ()) -> TableInfo:
    cols = tuple(ColumnInfo(c, "VARCHAR(50)", True) for c in ("id", *columns))
    return TableInfo(name, cols, ("id",), fks, None)


def _fk(column: str, table: str) -> ForeignKeyInfo:
    return ForeignKeyInfo((column,), table, ("id",))


EMAIL = Detection("contact", "email", 1.0, 30, "100% of 30 sampled values are e-mail addresses")


def _catalog() -> Catalog:
    return Catalog(
        {
            "customers": _table("customers", "email"),
            "orders": _table(
                "orders",
                "customer_id",
                "address",
                "contact_email",
                "total",
                fks=(_fk("customer_id", "customers"),),
            ),
            "notes": _table("notes", "body"),
            "coupons": _table("coupons", "customer_id", fks=(_fk("customer_id", "customers"),)),
            "audit_trail": _table("audit_trail", "what"),
        }
    )


def _rules(found: list[Any]) -> set[tuple[str, str, str]]:
    return {(f.rule, f.severity, f.resource) for f in found}


def test_each_difference_is_a_finding_of_its_severity() -> None:
    catalog = _catalog()
    del catalog.tables["notes"]
    detections = {("orders", "contact_email"): EMAIL}
    found, ignored = sql_findings(_store(), catalog, detections)
    assert ignored == 0
    assert _rules(found) == {
        ("sql.undeclared-personal-column", "high", "orders.contact_email"),
        ("sql.table-vanished", "high", "notes"),
        ("sql.undeclared-fk-holder", "high", "coupons(customer_id) -> customers"),
        ("sql.undeclared-table", "medium", "coupons"),
        ("sql.undeclared-table", "medium", "audit_trail"),
    }
    [personal] = [f for f in found if f.rule == "sql.undeclared-personal-column"]
    assert personal.categories == ("contact",)
    assert "e-mail addresses" in personal.evidence
    assert all(f.action for f in found)


def test_keys_and_named_columns_are_not_sampled() -> None:
    wanted = columns_to_sample(_store(), _catalog())
    # customer_id: a foreign key (structure); address: named; coupons: keys only
    assert wanted == {"orders": ("contact_email", "total"), "audit_trail": ("what",)}


def test_a_vanished_column_and_an_unreachable_table() -> None:
    catalog = _catalog()
    catalog.tables["orders"] = _table(
        "orders", "customer_id", fks=(_fk("customer_id", "customers"),)
    )
    found, _ = sql_findings(_store(), catalog, {})
    rules = _rules(found)
    assert ("sql.column-vanished", "high", "orders.address") in rules
    # notes: personal fields, no identity, no reference from a table with one
    assert ("sql.unreachable-table", "medium", "notes") in rules
    # orders is reached through its foreign key into customers
    assert not any(r == ("sql.unreachable-table", "medium", "orders") for r in rules)


def test_an_undeclared_table_that_looks_personal_is_high() -> None:
    detections = {("audit_trail", "what"): EMAIL}
    found, _ = sql_findings(_store(), _catalog(), detections)
    [table] = [f for f in found if f.resource == "audit_trail"]
    assert (table.rule, table.severity) == ("sql.undeclared-personal-table", "high")
    assert "what: email" in table.evidence and table.categories == ("contact",)


def test_ignore_entries_drop_what_they_name_and_count_it() -> None:
    entries = [
        {"table": "coupons", "reason": "reviewed: erased by the coupons job"},
        {"table": "orders", "column": "contact_email", "reason": "copied from customers"},
        {"table": "audit_trail", "reason": "ours"},
    ]
    store = _store(ignore=entries)
    found, ignored = sql_findings(store, _catalog(), {("orders", "contact_email"): EMAIL})
    assert _rules(found) == {("sql.unreachable-table", "medium", "notes")}
    assert ignored == 4  # coupons twice (table, foreign key), the column, audit_trail


def test_ignore_matching() -> None:
    entries = (
        SqlIgnore(table="a", reason="r"),
        SqlIgnore(table="b", column="c", reason="r"),
        SqlIgnore(column="d", reason="r"),
    )
    assert ignores(entries, "a", None) and ignores(entries, "a", "x")
    assert ignores(entries, "b", "c") and not ignores(entries, "b", "x")
    assert not ignores(entries, "b", None)
    assert ignores(entries, "z", "d") and not ignores(entries, "z", None)


def test_every_rule_has_a_severity_and_an_action() -> None:
    assert {severity for severity, _ in RULES.values()} == {"high", "medium"}
    assert all(action for _, action in RULES.values())


# -- the whole read, on every backend ----------------------------------------------------


@pytest.fixture
def shop(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    create_shop(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _config(tmp_path: Path, url: str, **options: Any) -> LifecycleConfig:
    folder = write_config(tmp_path / "cfg", sql_store_yaml(url, **options))
    return load_config(folder)


def _drift(config: LifecycleConfig, rows: int = 50) -> StoreDrift:
    return read_drift(config, config.store("shop"), account_wide=True, sample_rows=rows)


def test_drift_appears_as_the_schema_changes_and_resolves_when_undone(
    shop: Engine, db_url: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, db_url)
    clean = _drift(config)
    assert clean.findings == () and clean.ignored == 0
    assert clean.counts == {"tables": 3, "sampled_columns": 0}

    drift_the_schema(shop)
    drifted = _drift(config)
    assert _rules(list(drifted.findings)) == {
        ("sql.table-vanished", "high", "login_events"),
        ("sql.undeclared-personal-column", "high", "orders.contact_email"),
        ("sql.undeclared-fk-holder", "high", "gift_cards(customer_id) -> customers"),
        ("sql.undeclared-table", "medium", "gift_cards"),
    }
    text = json.dumps([f.to_json() for f in drifted.findings])
    assert not leaked(text), "a sampled value reached a finding"
    assert "e-mail addresses" in text

    undo_the_drift(shop)
    assert _drift(config).findings == ()


def test_ignore_with_reasons_silences_reviewed_findings(
    shop: Engine, db_url: str, tmp_path: Path
) -> None:
    drift_the_schema(shop)
    ignore = (
        "      - {table: orders, column: contact_email, reason: copied at checkout}\n"
        "      - {table: gift_cards, reason: reviewed - removed by the gift card job}\n"
        "      - {table: login_events, reason: retired}\n"
    )
    config = _config(tmp_path, db_url, ignore=ignore)
    drift = _drift(config)
    assert drift.findings == ()
    assert drift.ignored == 4


def test_an_unreachable_declared_table(shop: Engine, db_url: str, tmp_path: Path) -> None:
    # Without its declared reference nothing reaches login_events, and its customer_id is
    # a column the inventory no longer names: by its name alone (no rows sampled), an
    # identifier of a person.
    config = _config(tmp_path, db_url, reference=False)
    assert _rules(list(_drift(config, rows=0).findings)) == {
        ("sql.unreachable-table", "medium", "login_events"),
        ("sql.undeclared-personal-column", "high", "login_events.customer_id"),
    }
