"""The demo CRM seed: matches the demo inventory, deterministic, idempotent, fictional."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, inspect, select

from config.loader import load_config
from connectors.sql.config import SqlStore
from core.engines import make_engine
from demo.crm_schema import TABLES, crm_metadata
from demo.seed_sql import DemoData, seed_crm

TODAY = date(2026, 3, 15)
SMALL = 300


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every CRM table, in primary-key order."""
    engine = make_engine(url)
    try:
        md = crm_metadata()  # not reflected: SQLite cannot reflect the lower(email) index
        with engine.connect() as conn:
            return {
                name: [
                    tuple(r)
                    for r in conn.execute(select(table).order_by(*table.primary_key.columns))
                ]
                for name, table in md.tables.items()
            }
    finally:
        engine.dispose()


def _crm_store() -> SqlStore:
    store = load_config().store("crm")
    assert isinstance(store, SqlStore)
    return store


def test_counts_match_the_database(db_url: str) -> None:
    data = seed_crm(db_url, customers=SMALL, today=TODAY)
    rows = _dump(db_url)
    assert {name: len(r) for name, r in rows.items()} == dict(data.counts)
    assert data.counts["customers"] == SMALL
    assert data.total > 4 * SMALL  # every table has rows, in bulk
    assert all(data.counts[t] > 0 for t in TABLES)


def test_schema_matches_the_demo_inventory(db_url: str) -> None:
    seed_crm(db_url, customers=SMALL, today=TODAY)
    engine = make_engine(db_url)
    try:
        insp = inspect(engine)
        store = _crm_store()
        assert set(insp.get_table_names()) >= {t.name for t in store.tables}
        for table in store.tables:
            columns = {c["name"]: c for c in insp.get_columns(table.name)}
            declared = {
                *table.fields,
                *(i.column for i in table.identity),
                *(d.column for d in table.derives),
                *(c for r in table.references for c in r.columns),
            }
            assert declared <= set(columns), table.name
            pk = insp.get_pk_constraint(table.name)["constrained_columns"]
            assert tuple(pk) == table.primary_key, table.name
        fks = {
            (t, tuple(fk["constrained_columns"]), fk["referred_table"])
            for t in TABLES
            for fk in insp.get_foreign_keys(t)
        }
        assert fks == {
            ("orders", ("customer_id",), "customers"),
            ("order_items", ("order_id",), "orders"),
            ("invoices", ("customer_id",), "customers"),
            ("login_events", ("customer_id",), "customers"),
        }
        invoice_columns = {c["name"]: c for c in insp.get_columns("invoices")}
        assert invoice_columns["customer_id"]["nullable"]
        assert not invoice_columns["billing_name"]["nullable"]
        for name in ("orders", "invoices", "support_tickets", "login_events"):
            leading = {tuple(ix["column_names"])[:1] for ix in insp.get_indexes(name)}
            assert ("customer_id",) in leading, f"{name}.customer_id has no index"
    finally:
        engine.dispose()


def _subject_rows(url: str, data: DemoData) -> dict[str, int]:
    engine = make_engine(url)
    md = crm_metadata()
    c, o, i = (md.tables[n] for n in ("customers", "orders", "order_items"))
    try:
        with engine.connect() as conn:
            ids = conn.execute(
                select(c.c.id).where(func.lower(c.c.email) == "demo.subject@example.com")
            ).scalars()
            [cid] = list(ids)

            def count(table: str) -> int:
                t = md.tables[table]
                query = select(func.count()).select_from(t).where(t.c.customer_id == cid)
                return int(conn.execute(query).scalar_one())

            items = select(func.count()).select_from(i.join(o)).where(o.c.customer_id == cid)
            counts = {t: count(t) for t in ("orders", "invoices", "support_tickets")}
            counts["login_events"] = count("login_events")
            counts["order_items"] = int(conn.execute(items).scalar_one())
            counts["customers"] = 1
            return counts
    finally:
        engine.dispose()


def test_named_subjects_and_their_footprint(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    data = seed_crm(url, customers=SMALL, today=TODAY)
    assert data.subject.email == "Demo.Subject@example.com"  # mixed case on purpose
    assert data.second.email == "second.subject@example.com"
    assert data.subject.identity == {"email": "Demo.Subject@example.com"}
    assert _subject_rows(url, data) == dict(data.subject.rows)
    assert all(n > 0 for n in data.subject.rows.values())
    assert data.subject.total > data.second.total


def test_deterministic_and_idempotent(tmp_path: Path) -> None:
    first, second, other = (f"sqlite:///{tmp_path / n}" for n in ("a.db", "b.db", "c.db"))
    seed_crm(first, customers=SMALL, seed=3, today=TODAY)
    seed_crm(second, customers=SMALL, seed=3, today=TODAY)
    seed_crm(other, customers=SMALL, seed=4, today=TODAY)
    assert _dump(first) == _dump(second)
    assert _dump(first) != _dump(other)
    again = seed_crm(first, customers=SMALL, seed=3, today=TODAY)
    assert _dump(first) == _dump(second)
    assert again.counts == {n: len(r) for n, r in _dump(first).items()}


def test_only_fictional_contact_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    seed_crm(url, customers=SMALL, today=TODAY)
    rows = _dump(url)
    emails = [r[2] for r in rows["customers"]]
    phones = [r[4] for r in rows["customers"]]
    assert len(set(e.lower() for e in emails)) == SMALL
    assert all(e.lower().endswith("@example.com") for e in emails)
    assert all(p.startswith("+44 20 7946 0") and len(p) == 16 for p in phones)
    ips = [r[2] for r in rows["login_events"]]
    assert all(ip.startswith(("192.0.2.", "198.51.100.", "203.0.113.", "2001:db8::")) for ip in ips)


def test_old_login_events_for_the_retention_sweep(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    seed_crm(url, customers=SMALL, today=TODAY)
    occurred = [r[3] for r in _dump(url)["login_events"]]
    ages = [(TODAY - when.date()).days for when in occurred]
    assert any(age > 90 for age in ages) and any(age < 90 for age in ages)


def test_too_few_customers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        seed_crm(f"sqlite:///{tmp_path / 'crm.db'}", customers=1)


def test_passes_the_sql_connectors_schema_check(db_url: str) -> None:
    from audit.keystore import keyring_from_settings
    from connectors.sql.connector import SqlConnector
    from connectors.sql.schema import reflect_store

    data = seed_crm(db_url, customers=SMALL, today=TODAY)
    store = _crm_store().model_copy(update={"url": SecretStr(db_url)})
    engine = make_engine(db_url)
    try:
        schema = reflect_store(engine, store)
    finally:
        engine.dispose()
    assert set(schema.keys) == set(TABLES)
    connector = SqlConnector(store, load_config().policy, keys=keyring_from_settings())
    try:
        assert connector.index_warnings() == ()  # every lookup and traversal is indexed
        for subject in (data.subject, data.second):
            given = subject.email.lower()  # the demo subject is stored in mixed case
            findings = connector.locate({"email": frozenset({given})})
            assert findings.counts() == dict(subject.rows)
    finally:
        connector.close()
