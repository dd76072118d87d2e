"""The benchmark's server-side CRM generator: the demo schema, the declared footprints."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, inspect, select

from audit.keystore import keyring_from_settings
from config.loader import load_config
from connectors.base import SHARED_REASON, Action
from connectors.sql.config import SqlStore
from connectors.sql.connector import SqlConnector
from core.engines import make_engine
from demo.bulk_pg import (
    HOUSEHOLD_TABLES,
    RELATED_PER_CUSTOMER,
    HeavyFootprint,
    add_heavy_subject,
    address_count,
    address_of,
    build_crm,
    customer_email,
    household_inventory,
    household_metadata,
    household_partner,
)
from demo.crm_schema import TABLES, crm_metadata

CUSTOMERS = 300


def _connector(url: str, *, households: bool = False) -> SqlConnector:
    config = load_config()
    store = config.store("crm")
    assert isinstance(store, SqlStore)
    if households:
        store = household_inventory(store)
    store = store.model_copy(update={"url": SecretStr(url)})
    return SqlConnector(store, config.policy, keys=keyring_from_settings())


def test_household_layout() -> None:
    assert [address_of(g) for g in range(1, 9)] == [1, 1, 2, 3, 4, 4, 5, 6]
    assert [household_partner(g) for g in range(1, 9)] == [2, 1, None, None, 6, 5, None, None]
    assert address_count(8) == (6, 2)
    assert address_count(6) == (4, 2)  # customer 6 completes the second household
    assert address_count(5) == (4, 1)


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


@pytest.mark.service
def test_households_share_addresses_and_erasure_keeps_shared_ones(pg_url: str) -> None:
    engine = make_engine(pg_url)
    connector = _connector(pg_url, households=True)
    today = date.today().isoformat()
    try:
        counts = build_crm(engine, CUSTOMERS, chunk=128, households=True)
        md = household_metadata()
        addresses = md.tables["addresses"]
        with engine.connect() as conn:
            stored = {
                t: int(conn.execute(select(func.count()).select_from(md.tables[t])).scalar_one())
                for t in HOUSEHOLD_TABLES
            }
            shared = conn.execute(
                select(func.count()).select_from(
                    select(md.tables["customers"].c.home_address_id)
                    .group_by(md.tables["customers"].c.home_address_id)
                    .having(func.count() == 2)
                    .subquery()
                )
            ).scalar_one()
        assert stored == counts
        assert counts["addresses"] == address_count(CUSTOMERS)[0] == 225
        assert shared == address_count(CUSTOMERS)[1] == 75  # a third of the addresses
        assert {
            fk["name"] for t in HOUSEHOLD_TABLES for fk in inspect(engine).get_foreign_keys(t)
        } >= {
            "fk_customers_home_address_id",
            "fk_orders_shipping_address_id",
        }
        assert connector.index_warnings() == ()  # every reference column is indexed

        member, alone = 5, 7  # 5 lives with 6; 7 alone
        for g, kept in ((member, True), (alone, False)):
            found = connector.locate({"email": frozenset({customer_email(g)})})
            by_table = {t.target: t for t in found.targets}
            assert by_table["addresses"].linked == ((address_of(g),),)
            plan = connector.plan_erasure(found, today)
            steps = {(s.target, s.action): s for s in plan.steps}
            if kept:
                assert steps[("addresses", Action.KEEP)].reason == SHARED_REASON
            else:
                assert steps[("addresses", Action.DELETE)].keys == ((address_of(g),),)
            connector.execute(plan, lambda _batch: None)
            with engine.connect() as conn:
                present = conn.execute(
                    select(func.count()).where(addresses.c.id == address_of(g))
                ).scalar_one()
            assert present == (1 if kept else 0)
        partner = md.tables["customers"]
        with engine.connect() as conn:
            home = conn.execute(
                select(partner.c.home_address_id).where(partner.c.id == household_partner(member))
            ).scalar_one()
        assert home == address_of(member)

        cid = add_heavy_subject(
            engine, "heavy.subject@example.com", HeavyFootprint(orders=3), households=True
        )
        heavy = connector.locate({"email": frozenset({"heavy.subject@example.com"})})
        by_table = {t.target: t for t in heavy.targets}
        assert len(by_table["addresses"].linked) == 1
        assert cid == CUSTOMERS + 1
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
