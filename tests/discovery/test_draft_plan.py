"""Planning and rendering without a database: references whose way the defaults cannot
decide, identity-like columns of owned tables, URLs with passwords, odd names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config.loader import load_config
from core.errors import ConfigError
from discovery.catalog import Catalog, ColumnInfo, ForeignKeyInfo, TableInfo
from discovery.detectors import Detection
from discovery.draft import plan_draft
from discovery.pipeline import draft_url, store_name
from discovery.render import StoreHeader, render, scalar
from tests.discovery.helpers import confirm_todos, write_config

EMAIL = Detection("contact", "email", 1.0, 10, "100% of 10 sampled values are e-mail addresses")
CARD = Detection("financial", "card_number", 1.0, 10, "100% of 10 sampled values are card ...")
HEADER = StoreHeader("shop", "sqlite:///shop.db", None, "eu-central-1", True, "sqlite", 100)


def _table(name: str, columns: str, fks: tuple[ForeignKeyInfo, ...] = ()) -> TableInfo:
    cols = tuple(ColumnInfo(c, "VARCHAR(40)", True) for c in columns.split())
    return TableInfo(name, cols, ("id",), fks, None)


def _fk(column: str, table: str) -> ForeignKeyInfo:
    return ForeignKeyInfo((column,), table, ("id",))


# customers <- orders, customers <- cards, and payments -> orders and -> cards: equally near.
CATALOG = Catalog(
    {
        "customers": _table("customers", "id email"),
        "orders": _table(
            "orders", "id customer_id contact_email", (_fk("customer_id", "customers"),)
        ),
        "cards": _table("cards", "id customer_id pan", (_fk("customer_id", "customers"),)),
        "payments": _table(
            "payments", "id order_id card_id", (_fk("order_id", "orders"), _fk("card_id", "cards"))
        ),
    }
)
FINDINGS = {
    "customers": {"email": EMAIL},
    "orders": {"contact_email": EMAIL},
    "cards": {"pan": CARD},
}


def _load(tmp_path: Path, text: str) -> None:
    load_config(write_config(tmp_path, text))


def test_equally_near_references_get_a_chosen_way_and_a_todo(tmp_path: Path) -> None:
    plan = plan_draft(CATALOG, FINDINGS)
    assert plan.problems == ()
    payments = next(t for t in plan.tables if t.info.name == "payments")
    assert [(r.columns, r.follow, r.chosen) for r in payments.references] == [
        (("order_id",), "holders", True),  # the first reflected one holds
        (("card_id",), "target", True),
    ]
    text = render(plan, HEADER)
    assert "TODO: these references are equally near a subject" in text
    _load(tmp_path / "a", text)


def test_an_owned_tables_email_is_offered_commented_out(tmp_path: Path) -> None:
    plan = plan_draft(CATALOG, FINDINGS)
    orders = next(t for t in plan.tables if t.info.name == "orders")
    assert orders.identity == {} and set(orders.held_back) == {"contact_email"}
    assert orders.reached == "reference"
    text = render(plan, HEADER)
    assert "        # identity:\n        #   - {column: contact_email, kind: email" in text
    _load(tmp_path / "as-is", text)
    # The reviewer uncomments it: still valid YAML and a valid inventory (orders becomes a
    # table entered through its own identities).
    uncommented = text.replace("        # identity:", "        identity:").replace(
        "        #   - {column: contact_email", "          - {column: contact_email"
    )
    _load(tmp_path / "uncommented", confirm_todos(uncommented))
    assert [t.info.name for t in plan.tables] == ["customers", "cards", "orders", "payments"]


def test_a_password_never_reaches_the_draft() -> None:
    text, note = draft_url("postgresql://app:s3cr%40t@db.example.com:5432/crm?sslkey=k", "crm")
    assert "s3cr" not in text and "sslkey" not in text
    assert text == "postgresql://app:${LIFECYCLE_CRM_PASSWORD}@db.example.com:5432/crm"
    assert note is not None and "LIFECYCLE_CRM_PASSWORD" in note
    assert draft_url("sqlite:///var/crm.db", "crm") == ("sqlite:///var/crm.db", None)
    assert store_name("sqlite:///var/Shop Data.db") == "shop_data"
    assert store_name("postgresql://h/9x") == "main"


def test_scalars_that_yaml_would_misread_are_quoted() -> None:
    assert scalar("email") == "email"
    assert yaml.safe_load(f"k: {scalar('on')}") == {"k": "on"}
    assert yaml.safe_load(f"k: {scalar('null')}") == {"k": "null"}


def test_a_table_with_an_unusable_name_is_left_out_with_the_reason() -> None:
    catalog = Catalog({"order lines": _table("order lines", "id email")})
    plan = plan_draft(catalog, {"order lines": {"email": EMAIL}})
    assert plan.tables == ()
    assert "not a plain SQL identifier" in plan.left_out["order lines"]


def test_the_policy_must_define_the_proposed_categories(tmp_path: Path) -> None:
    text = render(plan_draft(CATALOG, FINDINGS), HEADER).replace("[financial]", "[payments]")
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert any("payments" in p for p in caught.value.problems)


PHONE = Detection("contact", "phone", 1.0, 10, "100% of 10 sampled values are phone numbers")
# A rental shop (the shape of the Sakila sample): customers and staff have e-mails and
# point at addresses, which carry a phone; stores point at addresses too and hold stock;
# a rental names its customer, its clerk and the copy rented.
RENTALS = Catalog(
    {
        "address": _table("address", "id phone"),
        "store": _table("store", "id address_id", (_fk("address_id", "address"),)),
        "stock": _table("stock", "id store_id", (_fk("store_id", "store"),)),
        "customer": _table(
            "customer",
            "id email address_id store_id",
            (_fk("address_id", "address"), _fk("store_id", "store")),
        ),
        "staff": _table("staff", "id email address_id", (_fk("address_id", "address"),)),
        "rental": _table(
            "rental",
            "id customer_id staff_id stock_id",
            (_fk("customer_id", "customer"), _fk("staff_id", "staff"), _fk("stock_id", "stock")),
        ),
    }
)


def test_a_shared_table_with_a_phone_is_not_taken_for_the_subject(tmp_path: Path) -> None:
    """E-mail tables are the subjects: the address (many rows point at it) is linked data,
    not the owner of the customers; stores and their stock, which point at declared rows,
    are declared with ``follow: none`` so an erasure neither deletes them nor fails on them;
    a row naming two subjects gets a TODO."""
    findings = {
        "address": {"phone": PHONE},
        "customer": {"email": EMAIL},
        "staff": {"email": EMAIL},
    }
    plan = plan_draft(RENTALS, findings)
    by_name = {p.info.name: p for p in plan.tables}
    assert {n for n, p in by_name.items() if p.identity} == {"customer", "staff"}
    assert not by_name["address"].identity and "phone" in by_name["address"].fields
    assert by_name["store"].pointer and by_name["stock"].pointer
    assert {(r.table, r.follow) for r in by_name["store"].references} == {("address", "none")}
    assert {(r.table, r.follow) for r in by_name["stock"].references} == {("store", "none")}
    customer_refs = {r.table: r.follow for r in by_name["customer"].references}
    assert customer_refs["store"] == "none" and customer_refs["address"] == "target"
    assert plan.left_out == {}
    text = render(plan, HEADER)
    assert "its rows belong to every one of customer, staff (holders)" in text
    _load(tmp_path, confirm_todos(text))
