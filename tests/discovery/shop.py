"""A small shop schema the product never saw, with planted personal data.

customers (e-mail, phone, full name, IBAN, customer number) <- orders (card number)
<- order_items (nothing personal); web_visits holds IP addresses no identity reaches;
products holds nothing personal and nothing references it from a subject. Values are
synthetic: example.com addresses, valid-checksum test IBANs and card numbers, TEST-NET
IP addresses, E.164 Berlin numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from stdnum import iban, luhn

CUSTOMERS = 40
ORDERS_PER_CUSTOMER = 2
ITEMS_PER_ORDER = 2
VISITS = 60
_FIRST = ("Anna", "Bruno", "Carla", "Dieter", "Emma", "Farid", "Greta", "Hugo")
_LAST = ("Berg", "Lindqvist", "Moreau", "Novak", "Okafor")

metadata = sa.MetaData()
customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("email", sa.String(120), nullable=False),
    sa.Column("phone", sa.String(32)),
    sa.Column("full_name", sa.String(100)),
    sa.Column("iban", sa.String(40)),
    sa.Column("customer_number", sa.String(20)),
    sa.Column("created_at", sa.DateTime),
)
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("card_number", sa.String(25)),
    sa.Column("note", sa.String(100)),
    sa.Column("ordered_at", sa.DateTime),
)
order_items = sa.Table(
    "order_items",
    metadata,
    sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), primary_key=True),
    sa.Column("line_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sku", sa.String(20)),
    sa.Column("quantity", sa.Integer),
)
web_visits = sa.Table(
    "web_visits",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ip_address", sa.String(45)),
    sa.Column("path", sa.String(100)),
    sa.Column("visited_at", sa.DateTime),
)
products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sku", sa.String(20)),
    sa.Column("title", sa.String(100)),
    sa.Column("price_cents", sa.Integer),
)


def email(i: int) -> str:
    return f"shopper{i}@example.com"


def phone(i: int) -> str:
    return f"+4930123{i:05d}"


def iban_of(i: int) -> str:
    bban = f"37040044{i:010d}"
    return f"DE{iban.calc_check_digits('DE00' + bban)}{bban}"


def card(i: int) -> str:
    digits = f"411111111111{i:03d}"
    return digits + luhn.calc_check_digit(digits)


def ip(i: int) -> str:
    return f"192.0.2.{i}" if i % 2 else f"2001:db8::{i:x}"


def person(i: int) -> str:
    return f"{_FIRST[i % len(_FIRST)]} {_LAST[i % len(_LAST)]}"


@dataclass(frozen=True)
class Planted:
    """Every planted personal value, to search outputs for."""

    values: frozenset[str]


def seed(engine: sa.Engine) -> Planted:
    """Create the schema and fill it; the planted values."""
    metadata.create_all(engine)
    at = datetime(2026, 1, 1, 12, 0)
    cust = [
        {
            "id": i,
            "email": email(i),
            "phone": phone(i),
            "full_name": person(i),
            "iban": iban_of(i),
            "customer_number": f"C{i:06d}",
            "created_at": at,
        }
        for i in range(1, CUSTOMERS + 1)
    ]
    ords = [
        {
            "id": i * 10 + k,
            "customer_id": i,
            "card_number": card(i * 10 + k),
            "note": "gift wrap" if k else "standard",
            "ordered_at": at,
        }
        for i in range(1, CUSTOMERS + 1)
        for k in range(ORDERS_PER_CUSTOMER)
    ]
    items = [
        {"order_id": o["id"], "line_no": n, "sku": f"SKU-{n}", "quantity": n}
        for o in ords
        for n in range(1, ITEMS_PER_ORDER + 1)
    ]
    visits = [
        {"id": i, "ip_address": ip(i), "path": "/home", "visited_at": at}
        for i in range(1, VISITS + 1)
    ]
    prods = [{"id": n, "sku": f"SKU-{n}", "title": "Mug", "price_cents": 900} for n in (1, 2)]
    with engine.begin() as conn:
        for table, rows in (
            (customers, cust),
            (orders, ords),
            (order_items, items),
            (web_visits, visits),
            (products, prods),
        ):
            conn.execute(table.insert(), rows)
    planted = {str(r[k]) for r in cust for k in ("email", "phone", "full_name", "iban")}
    planted |= {str(r["customer_number"]) for r in cust}
    planted |= {str(o["card_number"]) for o in ords} | {str(v["ip_address"]) for v in visits}
    return Planted(frozenset(planted))
