"""Incident impact counts on SQL stores, against a truth computed in Python from the seed.

One small shop per backend (SQLite, PostgreSQL, MariaDB), seeded once per module:
customers (a tenant column, e-mail matched without case, ``id`` derived as
``customer_id``) living at addresses (one shared by a household), their orders and order
items, login events carrying a tenant of their own, gift cards held by a buyer and a
recipient (two references into customers), web visits no identity reaches, and a loyalty
table of another store that knows customers only by ``customer_id``; a ``cross`` store where
login events are also held by every order of their customer (a declared reference to a
column that is not unique). The expected counts,
keys, clients and e-mail addresses are computed from the seeded rows alone, never by
asking the database. Every address is at example.com.
"""

from __future__ import annotations

import random
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from config.schema import Policy
from connectors.base import ExportItem, ImpactCount, ImpactCounting
from connectors.registry import supports
from connectors.sql.config import SqlStore
from connectors.sql.connector import SqlConnector
from connectors.sql.impact import read_only
from connectors.sql.impact_window import window_condition
from core.engines import make_engine
from core.errors import InvalidInput, LifecycleError
from core.keys import KeyRing
from incidents.scope import ScopePart
from tests.conftest import _fresh_database
from tests.connectors.sql.conftest import POLICY, count_statements

KEYS = KeyRing.from_master(b"k" * 32)
T0 = datetime(2025, 3, 1)
START, END = T0 + timedelta(days=10), T0 + timedelta(days=20)
AT_START, AT_END = 41, 42  # customers whose one order is exactly at the window's start / end
TENANTS = ("acme", "globex", None)


def build_metadata() -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "addresses",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("street", sa.String(120), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "customers",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_number", sa.String(20), nullable=False),
        sa.Column("email", sa.String(120), nullable=False),
        sa.Column("phone", sa.String(40)),
        sa.Column("tenant", sa.String(40)),
        sa.Column("address_id", sa.Integer, sa.ForeignKey("addresses.id")),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("shipping_address", sa.String(120)),
        sa.Column("gift_note", sa.String(120)),
        sa.Column("ordered_at", sa.DateTime, nullable=False),
        sa.Index("ix_orders_ordered_at", "ordered_at"),
    )
    sa.Table(
        "order_items",
        md,
        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("sku", sa.String(20), nullable=False),
        sa.Column("added_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "login_events",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("ip_address", sa.String(45), nullable=False),
        sa.Column("tenant", sa.String(40)),
        sa.Column("occurred_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "gift_cards",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("buyer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("recipient_id", sa.Integer, sa.ForeignKey("customers.id")),
        sa.Column("message", sa.String(120)),
        sa.Column("issued_at", sa.DateTime, nullable=False),
    )
    sa.Table(  # nothing points from it to a subject: no identity reaches it
        "web_visits",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ip_address", sa.String(45), nullable=False),
        sa.Column("site", sa.String(40)),
        sa.Column("visited_at", sa.DateTime, nullable=False),
    )
    sa.Table(  # another store's table: customers known only by their customer_id
        "loyalty_members",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_ref", sa.Integer, nullable=False),
        sa.Column("points", sa.Integer, nullable=False),
        sa.Column("joined_at", sa.DateTime, nullable=False),
    )
    return md


CUSTOMERS: dict[str, Any] = {
    "name": "customers",
    "identity": [
        {"column": "email", "kind": "email", "case_insensitive": True},
        {"column": "customer_number", "kind": "customer_number"},
    ],
    "derives": [{"column": "id", "as": "customer_id"}],
    "fields": {"email": ["contact"], "phone": ["contact"], "customer_number": ["account"]},
    "timestamps": {"created": "created_at"},
    "client_column": "tenant",
}
SHOP_TABLES: list[dict[str, Any]] = [
    CUSTOMERS,
    {
        "name": "addresses",
        "fields": {"street": ["contact"]},
        "timestamps": {"created": "created_at"},
    },
    {
        "name": "orders",
        "fields": {
            "shipping_address": ["contact", "order_history"],
            "gift_note": ["order_history"],
            "ordered_at": ["order_history"],
        },
        "timestamps": {"created": "ordered_at"},
    },
    {
        "name": "order_items",
        "fields": {"sku": ["order_history"]},
        "timestamps": {"created": "added_at"},
    },
    {
        "name": "login_events",
        "fields": {"ip_address": ["telemetry"]},
        "timestamps": {"created": "occurred_at"},
        "client_column": "tenant",
    },
    {
        "name": "gift_cards",
        "fields": {"message": ["contact"]},
        "timestamps": {"created": "issued_at"},
    },
    {"name": "web_visits", "fields": {"ip_address": ["telemetry"]}, "client_column": "site"},
]
LOYALTY_TABLES: list[dict[str, Any]] = [
    {
        "name": "loyalty_members",
        "identity": [{"column": "customer_ref", "kind": "customer_id"}],
        "fields": {"points": ["loyalty"]},
        "timestamps": {"created": "joined_at"},
    }
]


def _store(name: str, url: str, tables: Sequence[Mapping[str, Any]]) -> SqlStore:
    return SqlStore.model_validate(
        {"type": "sql", "name": name, "url": url, "region": "eu-central-1", "tables": tables}
    )


def _cross(tables: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The shop with login events also held by their customer's orders (many to many)."""
    by_orders = {
        "columns": ["customer_id"],
        "table": "orders",
        "to_columns": ["customer_id"],
        "follow": "holders",
    }
    return [
        {**t, "references": [by_orders]} if t["name"] == "login_events" else dict(t) for t in tables
    ]


def _without_clients(tables: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in t.items() if k != "client_column"} for t in tables]


def _by_email(tables: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The shop with customers known by e-mail only (no derived customer_id)."""
    return [{k: v for k, v in t.items() if k != "derives"} for t in tables]


Row = dict[str, Any]


def seed_rows() -> dict[str, list[Row]]:
    """The shop's rows (deterministic); the truth below is computed from these alone."""
    rng = random.Random(17)
    hour = timedelta(hours=1)
    rows: dict[str, list[Row]] = {t: [] for t in build_metadata().tables}
    rows["addresses"] = [
        {"id": a, "street": f"{a} Example Street", "created_at": T0 + timedelta(days=a * 1.5)}
        for a in range(1, 21)
    ]
    for cid in range(1, 45):
        address = 1 if cid == 2 else (cid if cid <= 20 else None)  # 1 and 2 share a home
        email = f"User{cid}@Example.com"
        if cid in (43, 44):  # one address in two spellings: one person by e-mail
            email = "Dup@example.com" if cid == 43 else "dUP@example.com"
        rows["customers"].append(
            {
                "id": cid,
                "customer_number": f"C-{cid:04d}",
                "email": email,
                "phone": None if cid % 4 == 0 else f"+4930{cid:07d}",
                "tenant": TENANTS[cid % 3],
                "address_id": address,
                "created_at": T0 + timedelta(hours=cid * 12),
            }
        )
    oid = 0
    for cid in range(1, 41):
        for _ in range(rng.randint(0, 4)):
            oid += 1
            rows["orders"].append(_order(oid, cid, T0 + hour * rng.randrange(30 * 24)))
    rows["orders"] += [_order(9001, AT_START, START), _order(9002, AT_END, END)]
    for order in rows["orders"]:
        for line in range(1, rng.randint(1, 3) + 1):
            rows["order_items"].append(
                {
                    "order_id": order["id"],
                    "line_no": line,
                    "sku": f"SKU-{line}",
                    "added_at": order["ordered_at"] + timedelta(minutes=line),
                }
            )
    for n in range(1, 151):
        cid = rng.randint(1, 40)
        rows["login_events"].append(
            {
                "id": n,
                "customer_id": cid,
                "ip_address": f"192.0.2.{n % 250}",
                "tenant": None if n % 7 == 0 else TENANTS[cid % 3] or "initech",
                "occurred_at": T0 + hour * rng.randrange(30 * 24),
            }
        )
    for n in range(1, 31):
        rows["gift_cards"].append(
            {
                "id": n,
                "buyer_id": rng.randint(1, 40),
                "recipient_id": None if n % 3 == 0 else rng.randint(1, 40),
                "message": "Happy birthday" if n % 2 else None,
                "issued_at": T0 + hour * rng.randrange(30 * 24),
            }
        )
    rows["web_visits"] = [
        {
            "id": n,
            "ip_address": "198.51.100.7",
            "site": "acme" if n % 2 else None,
            "visited_at": T0 + hour * rng.randrange(30 * 24),
        }
        for n in range(1, 41)
    ]
    rows["loyalty_members"] = [
        {
            "id": n,
            "customer_ref": rng.randint(1, 44),
            "points": n * 10,
            "joined_at": T0 + hour * rng.randrange(30 * 24),
        }
        for n in range(1, 26)
    ]
    return rows


def _order(oid: int, cid: int, at: datetime) -> Row:
    return {
        "id": oid,
        "customer_id": cid,
        "shipping_address": f"{oid} Example Road",
        "gift_note": "For you" if oid % 3 == 0 else None,
        "ordered_at": at,
    }


@dataclass
class Shop:
    """The seeded database, its stores, and the truth computed from the seed."""

    engine: Engine
    url: str
    rows: dict[str, list[Row]]
    connectors: dict[str, SqlConnector] = field(default_factory=dict)

    def connector(self, name: str = "crm") -> SqlConnector:
        return self.connectors[name]

    def customer(self, cid: int) -> Row:
        return next(c for c in self.rows["customers"] if c["id"] == cid)

    def tenants(self, cids: set[int]) -> dict[str, int]:
        """Distinct subjects per customer tenant (None: unassigned)."""
        counts: dict[str, int] = {}
        for cid in cids:
            tenant = self.customer(cid)["tenant"] or "unassigned"
            counts[tenant] = counts.get(tenant, 0) + 1
        return counts


def _in(at: datetime) -> bool:
    return START <= at < END


_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", marks=pytest.mark.service, id="postgresql"),
    pytest.param("mariadb", marks=pytest.mark.service, id="mariadb"),
]


@pytest.fixture(scope="module", params=_BACKENDS)
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    """The shop, built once per module and backend (the tests only read it)."""
    backend = str(request.param)
    if backend == "sqlite":
        databases: Iterator[str] = iter([f"sqlite:///{tmp_path_factory.mktemp('shop')}/db.sqlite"])
    else:
        databases = _fresh_database(backend)  # created here, dropped when closed below
    url = next(databases)
    engine = make_engine(url)
    md = build_metadata()
    rows = seed_rows()
    policy = Policy.model_validate(POLICY)
    world = Shop(engine, url, rows)
    try:
        md.create_all(engine)
        with engine.begin() as conn:
            for table in md.sorted_tables:
                conn.execute(table.insert(), rows[table.name])
        for name, tables in (
            ("crm", SHOP_TABLES),
            ("plain", _without_clients(SHOP_TABLES)),
            ("by-email", _by_email(SHOP_TABLES)),
            ("loyalty", LOYALTY_TABLES),
            ("cross", _cross(SHOP_TABLES)),
        ):
            store = _store(name, url, tables)
            world.connectors[name] = SqlConnector(store, policy, keys=KEYS, engine=engine)
        yield world
    finally:
        for connector in world.connectors.values():
            connector.close()
        engine.dispose()
        if isinstance(databases, Generator):
            databases.close()


def _part(
    table: str,
    *,
    store: str = "crm",
    window: tuple[datetime, datetime] | None = (START, END),
    column: str | None = None,
    columns: Sequence[str] = (),
) -> ScopePart:
    spec: dict[str, Any] = {"store": store, "table": table, "columns": list(columns)}
    if window is not None:
        spec["window"] = {"start": window[0], "end": window[1], "column": column}
    return ScopePart.model_validate(spec)


def _count(shop: Shop, part: ScopePart) -> tuple[ImpactCount, set[str]]:
    """The part's count and its affected keys, which must be as many as its subjects."""
    connector = shop.connector(part.store)
    count = connector.count_impact(part)
    keys = list(connector.affected_keys(part))
    assert len(keys) == len(set(keys)), "each subject once"
    assert len(keys) == count.subjects
    return count, set(keys)


# --- counts -----------------------------------------------------------------------------


def test_the_sql_connector_counts_impact(shop: Shop) -> None:
    assert supports(shop.connector(), ImpactCounting)


def test_table_scope_in_a_time_window_counts_records_subjects_and_tenants(shop: Shop) -> None:
    orders = [o for o in shop.rows["orders"] if _in(o["ordered_at"])]
    subjects = {o["customer_id"] for o in orders}

    count, keys = _count(shop, _part("orders"))

    assert count.records == len(orders)
    assert count.subjects == len(subjects)
    assert count.identity == "customer_id"
    assert keys == {str(c) for c in subjects}
    assert count.categories == ("contact", "order_history")
    assert count.region == "eu-central-1"
    assert dict(count.clients) == shop.tenants(subjects)  # customers.tenant, NULL unassigned
    # The window's boundaries: a row exactly at the start is in, exactly at the end is out.
    assert str(AT_START) in keys
    assert str(AT_END) not in keys
    assert AT_END not in subjects


def test_the_reference_into_the_subject_table_is_counted_in_one_statement(shop: Shop) -> None:
    part = _part("orders", store="plain")
    connector = shop.connector("plain")
    _ = connector.schema  # reflected before the statements are counted
    with count_statements(shop.engine) as statements:
        count = connector.count_impact(part)

    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1, selects
    assert "count(*)" in selects[0]
    assert "count(DISTINCT orders.customer_id)" in selects[0]
    assert "JOIN" not in selects[0].upper()
    assert count.clients == {}  # no client column declared
    if shop.engine.dialect.name == "postgresql":
        assert statements[0] == "SET TRANSACTION READ ONLY"
    elif shop.engine.dialect.name == "mariadb":
        assert statements[0] == "START TRANSACTION READ ONLY"


def test_column_scope_counts_only_rows_where_a_column_holds_a_value(shop: Shop) -> None:
    noted = [o for o in shop.rows["orders"] if o["gift_note"] is not None]
    subjects = {o["customer_id"] for o in noted}

    count, keys = _count(shop, _part("orders", window=None, columns=["gift_note"]))

    assert count.records == len(noted) < len(shop.rows["orders"])
    assert keys == {str(c) for c in subjects}
    assert count.categories == ("order_history",)  # gift_note's only


def test_column_scope_with_a_window_and_several_columns(shop: Shop) -> None:
    customers = [
        c for c in shop.rows["customers"] if _in(c["created_at"]) and c["phone"] is not None
    ]

    count, keys = _count(shop, _part("customers", columns=["phone"]))

    assert count.records == len(customers)
    assert keys == {str(c["id"]) for c in customers}
    # A customer created in the window without a phone is not counted.
    phoneless = [c for c in shop.rows["customers"] if _in(c["created_at"]) and not c["phone"]]
    assert phoneless and not {str(c["id"]) for c in phoneless} & keys


def test_the_subject_table_itself_counts_by_its_derived_identity(shop: Shop) -> None:
    customers = [c for c in shop.rows["customers"] if _in(c["created_at"])]

    count, keys = _count(shop, _part("customers"))

    assert (count.records, count.subjects) == (len(customers), len(customers))
    assert count.identity == "customer_id"
    assert keys == {str(c["id"]) for c in customers}
    assert count.categories == ("account", "contact")
    assert dict(count.clients) == shop.tenants({c["id"] for c in customers})


def test_a_subject_table_without_a_derived_identity_counts_by_its_casefolded_email(
    shop: Shop,
) -> None:
    count, keys = _count(shop, _part("customers", store="by-email", window=None))

    assert count.identity == "email"
    assert count.records == 44
    assert count.subjects == 43  # Dup@example.com and dUP@example.com are one person
    assert keys == {c["email"].lower() for c in shop.rows["customers"]}


def test_a_multi_hop_chain_joins_along_its_references(shop: Shop) -> None:
    orders = {o["id"]: o["customer_id"] for o in shop.rows["orders"]}
    items = [i for i in shop.rows["order_items"] if _in(i["added_at"])]
    subjects = {orders[i["order_id"]] for i in items}

    count, keys = _count(shop, _part("order_items"))

    assert count.records == len(items)
    assert count.identity == "customer_id"
    assert keys == {str(c) for c in subjects}
    assert dict(count.clients) == shop.tenants(subjects)  # the subject table's tenant


def test_the_part_tables_own_client_column_counts_subjects_per_client(shop: Shop) -> None:
    logins = [e for e in shop.rows["login_events"] if _in(e["occurred_at"])]
    per_client: dict[str, set[int]] = {}
    for event in logins:
        per_client.setdefault(event["tenant"] or "unassigned", set()).add(event["customer_id"])

    count, keys = _count(shop, _part("login_events"))

    assert count.records == len(logins)
    assert keys == {str(e["customer_id"]) for e in logins}
    assert dict(count.clients) == {t: len(c) for t, c in per_client.items()}
    assert "initech" in count.clients and "unassigned" in count.clients
    assert count.categories == ("telemetry",)


def test_two_references_into_the_subject_table_count_both_people(shop: Shop) -> None:
    cards = [g for g in shop.rows["gift_cards"] if _in(g["issued_at"])]
    subjects = {g["buyer_id"] for g in cards} | {
        g["recipient_id"] for g in cards if g["recipient_id"] is not None
    }

    count, keys = _count(shop, _part("gift_cards"))

    assert count.records == len(cards)
    assert keys == {str(c) for c in subjects}
    assert dict(count.clients) == shop.tenants(subjects)


def test_a_linked_table_counts_the_people_whose_rows_point_at_it(shop: Shop) -> None:
    addresses = {a["id"] for a in shop.rows["addresses"] if _in(a["created_at"])}
    residents = {c["id"] for c in shop.rows["customers"] if c["address_id"] in addresses}

    count, keys = _count(shop, _part("addresses"))

    assert count.records == len(addresses)
    assert keys == {str(c) for c in residents}
    assert count.identity == "customer_id"


def test_a_household_address_is_one_record_and_two_subjects(shop: Shop) -> None:
    # Address 1 only, home of customers 1 and 2.
    count, keys = _count(shop, _part("addresses", window=(T0, T0 + timedelta(days=2))))

    assert (count.records, count.subjects) == (1, 2)
    assert keys == {"1", "2"}


def test_a_table_no_identity_reaches_counts_records_only(shop: Shop) -> None:
    count, keys = _count(shop, _part("web_visits", window=None))

    assert count.records == len(shop.rows["web_visits"])
    assert (count.subjects, count.identity, keys) == (0, None, set())
    assert count.clients == {"acme": 0, "unassigned": 0}  # affected, no subject counted
    assert count.categories == ("telemetry",)


def test_a_table_known_by_another_stores_derived_identity_counts_by_that_column(
    shop: Shop,
) -> None:
    members = [m for m in shop.rows["loyalty_members"] if _in(m["joined_at"])]

    count, keys = _count(shop, _part("loyalty_members", store="loyalty"))

    assert count.records == len(members)
    assert count.identity == "customer_id"
    assert keys == {str(m["customer_ref"]) for m in members}
    assert count.categories == ("loyalty",)


def test_an_empty_window_counts_nothing(shop: Shop) -> None:
    before = (T0 - timedelta(days=9), T0 - timedelta(days=8))
    count, keys = _count(shop, _part("orders", window=before))

    assert (count.records, count.subjects, keys) == (0, 0, set())
    assert count.clients == {}


def test_a_window_column_other_than_the_created_timestamp(shop: Shop) -> None:
    part = _part("orders", column="ordered_at")
    assert shop.connector().count_impact(part) == shop.connector().count_impact(_part("orders"))


def test_a_window_column_that_holds_no_time_is_refused(shop: Shop) -> None:
    part = _part("orders", column="gift_note")  # declared (a field), but text
    with pytest.raises(InvalidInput, match=r"crm.orders: window column 'gift_note' is not a date"):
        shop.connector().count_impact(part)


def test_a_listing_abandoned_early_releases_its_connection(shop: Shop) -> None:
    part = _part("login_events", window=None)
    keys = shop.connector().affected_keys(part)
    first = next(keys)
    keys.close()  # a server-side cursor with rows left: closed, rolled back

    assert first in set(shop.connector().affected_keys(part))
    assert shop.connector().count_impact(part).records == len(shop.rows["login_events"])


# --- a window on a column up the holders chain -------------------------------------------


def _items_of(shop: Shop, orders: Sequence[Row]) -> list[Row]:
    ids = {o["id"] for o in orders}
    return [i for i in shop.rows["order_items"] if i["order_id"] in ids]


def test_a_window_on_the_parent_counts_the_children_of_the_parents_in_it(shop: Shop) -> None:
    # The order items of the orders of the window: items have no order date of their own.
    orders = [o for o in shop.rows["orders"] if _in(o["ordered_at"])]
    items = _items_of(shop, orders)
    subjects = {o["customer_id"] for o in orders if o["id"] in {i["order_id"] for i in items}}

    count, keys = _count(shop, _part("order_items", column="orders.ordered_at"))

    assert count.records == len(items)
    assert count.identity == "customer_id"
    assert keys == {str(c) for c in subjects}
    assert dict(count.clients) == shop.tenants(subjects)
    assert count.categories == ("order_history",)  # the part's own table's
    # An order exactly at the start is in, exactly at the end out, with all their items.
    boundary = {i["order_id"] for i in shop.rows["order_items"]} & {9001, 9002}
    assert boundary == {9001, 9002}  # both orders have items
    assert str(AT_START) in keys and str(AT_END) not in keys


def test_a_window_two_hops_up_counts_the_grandchildren_of_the_rows_in_it(shop: Shop) -> None:
    # Order items of the customers created in the window (order_items -> orders -> customers).
    created = {c["id"] for c in shop.rows["customers"] if _in(c["created_at"])}
    orders = [o for o in shop.rows["orders"] if o["customer_id"] in created]
    items = _items_of(shop, orders)
    subjects = {o["customer_id"] for o in orders}
    at_start = next(c["id"] for c in shop.rows["customers"] if c["created_at"] == START)
    at_end = next(c["id"] for c in shop.rows["customers"] if c["created_at"] == END)

    count, keys = _count(shop, _part("order_items", column="customers.created_at"))

    assert count.records == len(items) > 0
    assert keys == {str(c) for c in subjects}
    assert dict(count.clients) == shop.tenants(subjects)
    # The boundaries, on the grandparent: created exactly at the start in, at the end out.
    assert {o["customer_id"] for o in shop.rows["orders"]} >= {at_start, at_end}
    assert str(at_start) in keys and str(at_end) not in keys


def test_a_window_on_the_subject_table_over_one_reference(shop: Shop) -> None:
    created = {c["id"] for c in shop.rows["customers"] if _in(c["created_at"])}
    orders = [o for o in shop.rows["orders"] if o["customer_id"] in created]

    count, keys = _count(shop, _part("orders", column="customers.created_at"))

    assert count.records == len(orders)
    assert keys == {str(o["customer_id"]) for o in orders}
    # The part's own table, qualified: the same as unqualified.
    own = shop.connector().count_impact(_part("orders", column="orders.ordered_at"))
    assert own == shop.connector().count_impact(_part("orders"))


def test_records_are_the_parts_own_rows_whatever_the_references_multiplicity(
    shop: Shop,
) -> None:
    # In the cross store a login event is held by every order of its customer (a declared
    # reference to orders.customer_id, not unique): a join would count an event once per
    # order of the window; the records count each event once. Its subjects come over two
    # paths: the event's own customer_id (the window as EXISTS) and the orders' (joined).
    in_window = {o["customer_id"] for o in shop.rows["orders"] if _in(o["ordered_at"])}
    events = [e for e in shop.rows["login_events"] if e["customer_id"] in in_window]
    per_client: dict[str, set[int]] = {}
    for event in events:
        per_client.setdefault(event["tenant"] or "unassigned", set()).add(event["customer_id"])
    orders_each = {
        c: sum(o["customer_id"] == c for o in shop.rows["orders"] if _in(o["ordered_at"]))
        for c in in_window
    }
    assert any(orders_each[e["customer_id"]] > 1 for e in events)  # a join would multiply

    count, keys = _count(shop, _part("login_events", store="cross", column="orders.ordered_at"))

    assert count.records == len(events)
    assert keys == {str(e["customer_id"]) for e in events}
    assert dict(count.clients) == {t: len(c) for t, c in per_client.items()}


def test_a_chain_window_counts_records_by_exists_and_subjects_over_the_join(shop: Shop) -> None:
    part = _part("order_items", store="plain", column="orders.ordered_at")
    connector = shop.connector("plain")
    _ = connector.schema
    with count_statements(shop.engine) as statements:
        connector.count_impact(part)

    selects = [" ".join(s.split()) for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2, selects
    records, subjects = (s.replace("INNER JOIN", "JOIN") for s in selects)
    assert "count(*)" in records and "EXISTS (SELECT 1" in records
    assert "JOIN" not in records.upper()
    assert "count(DISTINCT orders.customer_id)" in subjects
    assert "FROM order_items JOIN orders ON order_items.order_id = orders.id" in subjects
    assert "orders.ordered_at >=" in subjects and "EXISTS" not in subjects


def test_a_chain_window_is_refused_off_the_chain_before_any_read(shop: Shop) -> None:
    connector = shop.connector()
    _ = connector.schema
    cases = {
        "order_items": (
            "login_events.occurred_at",
            "crm.order_items: window column 'login_events.occurred_at' names a table off the "
            "part's holders chain (the tables its rows belong to through references); allowed: "
            "order_items, orders, customers",
        ),
        "addresses": (  # linked, not held: no holders chain
            "customers.created_at",
            "crm.addresses: window column 'customers.created_at' names a table off the part's "
            "holders chain (the tables its rows belong to through references); allowed: "
            "addresses",
        ),
        "gift_cards": (
            "customers.created_at",
            "crm.gift_cards: window column 'customers.created_at': 'customers' is reached from "
            "'gift_cards' through several references (gift_cards.buyer_id -> customers; "
            "gift_cards.recipient_id -> customers), so whose time it is is ambiguous",
        ),
    }
    for table, (column, message) in cases.items():
        part = _part(table, column=column)
        with count_statements(shop.engine) as statements, pytest.raises(InvalidInput) as caught:
            connector.count_impact(part)
        assert str(caught.value) == message
        with pytest.raises(InvalidInput, match=r"off the part's|ambiguous"):
            connector.affected_keys(part)
        assert statements == []


def test_a_chain_window_column_that_holds_no_time_is_refused(shop: Shop) -> None:
    part = _part("order_items", column="orders.gift_note")
    with pytest.raises(InvalidInput, match=r"window column 'orders.gift_note' is not a date"):
        shop.connector().count_impact(part)


def test_the_holders_chain_of_a_table(shop: Shop) -> None:
    from connectors.sql.impact_reach import holder_routes
    from connectors.sql.impact_window import route_text

    connector = shop.connector()

    def chain(table: str) -> dict[str, list[str]]:
        routes = holder_routes(connector.schema, connector.store, table)
        return {t: [route_text(p) for p in paths] for t, paths in routes.items()}

    assert chain("order_items") == {
        "orders": ["order_items.order_id -> orders"],
        "customers": ["order_items.order_id -> orders.customer_id -> customers"],
    }
    assert chain("customers") == {} and chain("addresses") == {} and chain("web_visits") == {}


# --- the affected subjects' identities ----------------------------------------------------


def _emails(items: Sequence[ExportItem]) -> set[str]:
    return {str(item.data["email"]) for item in items}


def test_subject_identities_are_exactly_the_affected_subjects_emails(shop: Shop) -> None:
    part = _part("orders")
    keys = sorted(shop.connector().affected_keys(part))
    expected = {
        shop.customer(o["customer_id"])["email"]
        for o in shop.rows["orders"]
        if _in(o["ordered_at"])
    }

    items = list(shop.connector().subject_identities("customer_id", [*keys, "99999", "abc"]))

    assert _emails(items) == expected
    assert all(e.endswith(("@Example.com", "@example.COM")) for e in _emails(items))
    assert len(items) == len(keys)  # unknown and untyped values are skipped
    assert {item.data["customer_id"] for item in items} == set(keys)
    for item in items:
        assert (item.store, item.target) == ("crm", "customers")
        assert item.categories == ("account", "contact")
        cid = int(str(item.data["customer_id"]))
        assert item.data["customer_number"] == f"C-{cid:04d}"
    assert shop.customer(AT_END)["email"] not in _emails(items)


def test_subject_identities_in_chunks(shop: Shop) -> None:
    from connectors.sql.impact_identities import subject_identities

    connector = shop.connector()
    keys = [str(c) for c in range(1, 45)]
    with count_statements(shop.engine) as statements:
        items = list(
            subject_identities(
                shop.engine, connector.schema, connector.store, "customer_id", keys, chunk=10
            )
        )

    assert len(items) == 44
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 5


def test_subject_identities_by_a_casefolded_email(shop: Shop) -> None:
    keys = set(
        shop.connector("by-email").affected_keys(_part("customers", window=None, store="by-email"))
    )

    items = list(shop.connector("by-email").subject_identities("email", sorted(keys)))

    assert {item.data["email"] for item in items} == keys  # the key as it was counted
    assert {int(str(i.data["customer_number"])[2:]) for i in items} == set(range(1, 45))


def test_another_stores_keys_resolve_to_the_crm_customers(shop: Shop) -> None:
    keys = sorted(
        shop.connector("loyalty").affected_keys(_part("loyalty_members", store="loyalty"))
    )

    items = list(shop.connector().subject_identities("customer_id", keys))

    assert sorted(str(i.data["customer_id"]) for i in items) == keys
    assert list(shop.connector("loyalty").subject_identities("email", ["a@example.com"])) == []


# --- read-only, errors, the scope's checks ----------------------------------------------


def test_reads_run_in_a_read_only_transaction(shop: Shop) -> None:
    visits = shop.connector().schema.tables["web_visits"]
    insert = visits.insert().values(id=999, ip_address="192.0.2.1", visited_at=T0)

    with pytest.raises(LifecycleError) as caught, read_only(shop.engine, "crm", "test") as conn:
        conn.execute(insert)

    assert "192.0.2.1" not in str(caught.value)
    with shop.engine.connect() as conn:  # nothing was added
        assert conn.execute(sa.select(sa.func.count()).select_from(visits)).scalar_one() == 40


def test_pooled_connections_are_writable_after_a_read_only_turn(tmp_path: Any) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/pool.sqlite", pool_size=1, max_overflow=0)
    try:
        with read_only(engine, "s", "test") as conn:
            conn.exec_driver_sql("SELECT 1")
        with engine.begin() as conn:  # the same pooled connection
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    finally:
        engine.dispose()


def test_a_bad_part_is_refused_before_any_read(shop: Shop) -> None:
    part = _part("orders", columns=["total"])
    _ = shop.connector().schema
    with count_statements(shop.engine) as statements, pytest.raises(InvalidInput) as caught:
        shop.connector().count_impact(part)
    assert "crm.orders[total]: column 'total' is not one of" in str(caught.value)
    with pytest.raises(InvalidInput):
        shop.connector().affected_keys(part)
    assert statements == []


def test_database_errors_are_translated_without_values(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/gone.sqlite"
    engine = make_engine(url)
    build_metadata().create_all(engine)
    store = _store("crm", url, SHOP_TABLES)
    connector = SqlConnector(store, Policy.model_validate(POLICY), keys=KEYS, engine=engine)
    try:
        _ = connector.schema
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE order_items")
        with pytest.raises(LifecycleError) as caught:
            connector.count_impact(_part("order_items"))
        assert "store 'crm'" in str(caught.value)
        assert "2025" not in str(caught.value)
    finally:
        engine.dispose()


def test_window_on_a_date_column_counts_every_day_it_overlaps() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("d", sa.Date))
    start = datetime(2025, 3, 1, 10, tzinfo=UTC)
    window = _part("t", store="s", window=(start, datetime(2025, 3, 3, tzinfo=UTC))).window
    assert window is not None

    condition = window_condition("s.t", table.c.d, window)

    assert sorted(condition.compile().params.values()) == [date(2025, 3, 1), date(2025, 3, 2)]


def test_window_on_an_aware_timestamp_column_keeps_its_zone() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("at", sa.DateTime(timezone=True)))
    naive = sa.Table("n", sa.MetaData(), sa.Column("at", sa.DateTime))
    start = datetime(2025, 3, 1, 12, tzinfo=UTC) + timedelta(hours=1)
    window = _part("t", store="s", window=(start, start + timedelta(days=1))).window
    assert window is not None

    aware = sorted(window_condition("s.t", table.c.at, window).compile().params.values())
    stored_utc = sorted(window_condition("s.n", naive.c.at, window).compile().params.values())

    assert aware == [start, start + timedelta(days=1)]
    assert stored_utc == [datetime(2025, 3, 1, 13), datetime(2025, 3, 2, 13)]


def test_scope_problems_name_the_part_and_the_field() -> None:
    store = _store("crm", "sqlite://", SHOP_TABLES)

    def problems(table: str, **kw: Any) -> list[str]:
        return store.scope_problems(_part(table, **kw))

    assert problems("orders") == []
    assert problems("invoices") == ["crm.invoices: table 'invoices' is not declared in store 'crm'"]
    assert problems("orders", columns=["gift_note", "total"]) == [
        "crm.orders[gift_note,total]: column 'total' is not one of the table's declared "
        "fields or identity columns"
    ]
    assert problems("orders", column="shipped_at") == [
        "crm.orders: window column 'shipped_at' is not declared in the table's timestamps or fields"
    ]
    assert problems("web_visits") == [
        "crm.web_visits: window has no column and the table declares no timestamps.created; "
        "name the window's column"
    ]
    assert problems("web_visits", window=None) == []
    assert store.scope_problems(ScopePart(store="crm", bucket="files")) == [
        "crm:s3://files/: store 'crm' is a SQL store: name a table, not a bucket"
    ]
    assert store.scope_problems(_part("orders", store="other")) == [
        "other.orders: names store 'other', not 'crm'"
    ]
    # Identity columns are personal columns too; a timestamp need not be a field.
    assert problems("customers", columns=["email"], column="created_at") == []


def test_scope_problems_of_a_window_up_the_holders_chain() -> None:
    store = _store("crm", "sqlite://", SHOP_TABLES)
    chain = {
        "orders": ["order_items.order_id -> orders"],
        "customers": ["order_items.order_id -> orders.customer_id -> customers"],
    }

    def problems(table: str, column: str, holders: Any = None) -> list[str]:
        return store.scope_problems(_part(table, column=column), holders)

    assert problems("order_items", "orders.ordered_at", chain) == []
    assert problems("order_items", "customers.created_at", chain) == []
    assert problems("orders", "orders.ordered_at") == []  # its own table
    assert problems("order_items", "login_events.occurred_at", chain) == [
        "crm.order_items: window column 'login_events.occurred_at' names a table off the part's "
        "holders chain (the tables its rows belong to through references); allowed: "
        "order_items, orders, customers"
    ]
    # Without the chain (the configuration alone, as `incident scope` checks a scope), only
    # a subject table's is known: empty. The rest waits for the reflected references.
    assert problems("order_items", "login_events.occurred_at") == []
    assert problems("customers", "orders.ordered_at") == [
        "crm.customers: window column 'orders.ordered_at' names a table off the part's holders "
        "chain (the tables its rows belong to through references); allowed: customers"
    ]
    assert problems("order_items", "orders.shipped_at", chain) == [
        "crm.order_items: window column 'orders.shipped_at' is not declared in the timestamps "
        "or fields of table 'orders'"
    ]
    assert problems("order_items", "invoices.issued_at") == [
        "crm.order_items: window column 'invoices.issued_at': table 'invoices' is not declared "
        "in store 'crm'"
    ]
    assert problems("orders", "orders.shipped_at") == [
        "crm.orders: window column 'orders.shipped_at' is not declared in the table's "
        "timestamps or fields"
    ]


def test_a_window_column_is_a_column_or_table_dot_column() -> None:
    from pydantic import ValidationError

    window = _part("order_items", column="orders.ordered_at").window
    assert window is not None
    assert (window.column, window.column_table, window.column_name) == (
        "orders.ordered_at",
        "orders",
        "ordered_at",
    )
    for bad in ("a.b.c", "orders.", ".ordered_at", "orders.1st", "orders ordered_at"):
        with pytest.raises(ValidationError, match=r"must be a column or Table\.column"):
            _part("order_items", column=bad)
    with pytest.raises(ValidationError, match="a bucket part's window applies to object dates"):
        ScopePart.model_validate(
            {
                "store": "files",
                "bucket": "tickets",
                "window": {"start": START, "end": END, "column": "orders.ordered_at"},
            }
        )
