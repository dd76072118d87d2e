"""The benchmark's server-side CRM generator: the demo schema, the declared footprints."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, inspect, select

from config.loader import load_config
from config.schema.inventory import SqlStore
from connectors.sql import SqlConnector
from core.engines import make_engine
from core.keys import keyring_from_settings
from demo.bulk_pg import (
    RELATED_PER_CUSTOMER,
    HeavyFootprint,
    add_heavy_subject,
    build_crm,
    customer_email,
)
from demo.crm_schema import TABLES, crm_metadata

CUSTOMERS = 300


def _connector(url: str) -> SqlConnector:
    config = load_config()
    store = config.store("crm")
    assert isinstance(store, SqlStore)
    store = store.model_copy(update={"url": SecretStr(url)})
    return SqlConnector(store, config.policy, keys=keyring_from_settings())


@pytest.mark.service
def test_build_matches_the_inventory_and_footprints(pg_url: str) -> None:
    engine = make_engine(pg_url)
    connector = _connector(pg_url)
    try:
        counts = build_crm(engine, CUSTOMERS, chunk=128)  # several chunks per table
        md = crm_metadata()
        with engine.connect() as conn:
            stored = {
                t: int(conn.execute(select(func.count()).select_from(md.tables[t])).scalar_one())
                for t in TABLES
            }
            emails = conn.execute(select(md.tables["customers"].c.email)).scalars().all()
        assert stored == counts
        assert sum(counts.values()) == CUSTOMERS * (1 + RELATED_PER_CUSTOMER)
        assert all(e.endswith("@example.com") for e in emails)
        assert {fk["name"] for t in TABLES for fk in inspect(engine).get_foreign_keys(t)} == {
            "fk_orders_customer_id",
            "fk_order_items_order_id",
            "fk_invoices_customer_id",
            "fk_login_events_customer_id",
        }

        assert connector.index_warnings() == ()
        one = connector.locate({"email": frozenset({customer_email(CUSTOMERS // 2)})})
        assert one.total == 1 + RELATED_PER_CUSTOMER
        assert set(one.counts()) == set(TABLES)

        footprint = HeavyFootprint(orders=5, lines_per_order=3, invoices=2, tickets=1, logins=7)
        cid = add_heavy_subject(engine, "heavy.subject@example.com", footprint)
        assert cid == CUSTOMERS + 1  # the id sequences were moved past the bulk ids
        heavy = connector.locate({"email": frozenset({"Heavy.Subject@example.com"})})
        assert heavy.total == 1 + footprint.related == 1 + 5 * 4 + 2 + 1 + 7
    finally:
        connector.close()
        engine.dispose()


def test_needs_postgresql(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    try:
        with pytest.raises(ValueError, match="PostgreSQL"):
            build_crm(engine, 10)
    finally:
        engine.dispose()
