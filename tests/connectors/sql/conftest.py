"""A small CRM-shaped test store shared by the SQL connector tests, on every backend.

``sql_world`` builds the schema, the inventory (``SqlStore``), the policy and data in the
``db_url`` database and returns a ``SqlWorld``: the engine, the config, the subject's
identities and the keys each table holds for them. The shapes cover what locating and
erasing must handle: multi-hop references (customers -> orders -> order_items with a
composite key -> shipments keyed by a UUID string -> shipment_events), a reference
declared only in config (support_tickets.customer_id), a self-reference (ticket
replies), a cycle (accounts <-> contacts), a table without a primary key (consents), a
self-reference on the subject table itself (customers.referred_by: a customer the subject
referred is someone else), invoices with a NOT NULL VARCHAR(40) billing name, a second
subject and a few hundred unrelated rows. Email addresses are stored in mixed case and
matched case-insensitively. Every address is at example.com.

``sql_world`` is a fresh store per test (tests may change it); ``shared_world`` is built
once per module and backend for tests that only read. ``SqlWorld.snapshot`` and
``snapshot_without`` compare "before minus the subject's rows" with "after";
``count_statements`` records the SQL an engine runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from config.schema import Policy
from connectors.base import Identities, Key
from connectors.sql.config import SqlStore
from core.engines import make_engine
from tests.conftest import _fresh_database

Rows = dict[str, list[tuple[Any, ...]]]

SUBJECT_EMAIL = "alice.example@example.com"  # stored as "Alice.Example@Example.COM"
OTHER_EMAIL = "bob.other@example.com"
UNRELATED = 40  # customers besides the two subjects, each with a few rows
T0 = datetime(2025, 1, 15, 9, 30, 0)


def shipment_code(order_id: int) -> str:
    """A deterministic UUID string key (shipments are keyed by a VARCHAR code)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://example.com/shipments/{order_id}"))


def build_metadata() -> sa.MetaData:
    """The test schema; indexes chosen so doctor has both covered and uncovered columns."""
    md = sa.MetaData()
    sa.Table(
        "customers",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_number", sa.String(64), nullable=False, unique=True),
        sa.Column("email", sa.String(120), nullable=False, index=True),
        sa.Column("full_name", sa.String(80), nullable=False),
        sa.Column("phone", sa.String(40)),
        sa.Column("contract_ended_at", sa.Date),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("referred_by", sa.Integer, sa.ForeignKey("customers.id")),
    )
    sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("shipping_address", sa.String(200)),
        sa.Column("ordered_at", sa.DateTime, nullable=False),
        sa.Column("total", sa.Numeric(10, 2), nullable=False),
        sa.Index("ix_orders_customer_id", "customer_id"),
    )
    sa.Table(
        "order_items",
        md,
        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("sku", sa.String(20), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
    )
    sa.Table(
        "shipments",
        md,
        sa.Column("code", sa.String(36), primary_key=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("carrier", sa.String(40), nullable=False),
        sa.Column("delivery_note", sa.String(200)),
        sa.Index("ix_shipments_order_id", "order_id"),
    )
    sa.Table(
        "shipment_events",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("shipment_code", sa.String(36), sa.ForeignKey("shipments.code"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("occurred_at", sa.DateTime, nullable=False),
        sa.Index("ix_shipment_events_code", "shipment_code"),
    )
    sa.Table(
        "support_tickets",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer),  # no FK: declared in the inventory only
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("support_tickets.id")),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("body", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Index("ix_support_tickets_parent_id", "parent_id"),
    )
    sa.Table(
        "accounts",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id")),
        sa.Column(
            "primary_contact_id",
            sa.Integer,
            sa.ForeignKey("contacts.id", use_alter=True, name="fk_accounts_primary_contact"),
        ),
        sa.Column("account_name", sa.String(80), nullable=False),
        sa.Index("ix_accounts_customer_id", "customer_id"),
        sa.Index("ix_accounts_primary_contact_id", "primary_contact_id"),
    )
    sa.Table(
        "contacts",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id")),
        sa.Column("contact_name", sa.String(80), nullable=False),
        sa.Column("contact_email", sa.String(120)),
        sa.Index("ix_contacts_account_id", "account_id"),
    )
    sa.Table(  # no primary key: keyed by the reference column it is matched on
        "consents",
        md,
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("given_at", sa.DateTime, nullable=False),
        sa.Index("ix_consents_customer_id", "customer_id"),
    )
    sa.Table(
        "invoices",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id")),
        sa.Column("billing_name", sa.String(40), nullable=False),
        sa.Column("billing_address", sa.String(200)),
        sa.Column("amount_cents", sa.Integer, nullable=False),
        sa.Column("issued_at", sa.Date, nullable=False),
        sa.Index("ix_invoices_customer_id", "customer_id"),
    )
    sa.Table(  # login_events.customer_id deliberately has no index (doctor advises one)
        "login_events",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("ip_address", sa.String(45), nullable=False),
        sa.Column("occurred_at", sa.DateTime, nullable=False),
    )
    return md


INVENTORY_TABLES: list[dict[str, Any]] = [
    {
        "name": "customers",
        "identity": [
            {"column": "email", "kind": "email", "case_insensitive": True},
            {"column": "customer_number", "kind": "customer_number"},
        ],
        "derives": [{"column": "id", "as": "customer_id"}],
        "fields": {
            "email": ["contact"],
            "full_name": ["contact"],
            "phone": ["contact"],
            "contract_ended_at": ["contract"],
        },
        "timestamps": {"created": "created_at"},
    },
    {
        "name": "orders",
        "fields": {
            "shipping_address": ["contact", "order_history"],
            "ordered_at": ["order_history"],
        },
        "timestamps": {"created": "ordered_at"},
    },
    {
        "name": "order_items",
        "primary_key": ["order_id", "line_no"],
        "fields": {"sku": ["order_history"], "quantity": ["order_history"]},
    },
    {"name": "shipments", "fields": {"delivery_note": ["contact"], "carrier": ["order_history"]}},
    {"name": "shipment_events", "fields": {"status": ["order_history"]}},
    {
        "name": "support_tickets",
        "references": [{"columns": ["customer_id"], "table": "customers", "to_columns": ["id"]}],
        "fields": {"subject": ["support"], "body": ["support"]},
        "timestamps": {"created": "created_at"},
    },
    {"name": "accounts", "fields": {"account_name": ["contact"]}},
    {"name": "contacts", "fields": {"contact_name": ["contact"], "contact_email": ["contact"]}},
    {"name": "consents", "fields": {"purpose": ["contract"], "given_at": ["contract"]}},
    {
        "name": "invoices",
        "fields": {"billing_name": ["billing"], "billing_address": ["billing"]},
        "timestamps": {"created": "issued_at"},
    },
    {
        "name": "login_events",
        "fields": {"ip_address": ["telemetry"], "occurred_at": ["telemetry"]},
        "timestamps": {"created": "occurred_at"},
    },
]

POLICY: dict[str, Any] = {
    "categories": [
        {"name": n}
        for n in ("contact", "order_history", "billing", "support", "telemetry", "contract")
    ],
    "requests": {
        "approval": {
            "required_for": ["erasure"],
            "approvers": ["privacy-officer"],
            "unverified_ui": True,
        },
        "erasure": {
            "default": {"action": "delete"},
            "categories": {
                "billing": {"action": "mask", "mask": "redact", "reason": "tax law: 10 years"}
            },
        },
    },
}


def make_store(url: str, tables: Sequence[Mapping[str, Any]] | None = None) -> SqlStore:
    """The inventory entry for the test store (``tables`` overrides the declarations)."""
    return SqlStore.model_validate(
        {
            "type": "sql",
            "name": "crm",
            "url": url,
            "region": "eu-central-1",
            "tables": list(INVENTORY_TABLES if tables is None else tables),
        }
    )


def _customer(cid: int, email: str, name: str, referred_by: int | None = None) -> dict[str, Any]:
    return {
        "id": cid,
        "customer_number": f"C-{cid:04d}",
        "email": email,
        "full_name": name,
        "phone": f"+49 30 {cid:07d}",
        "contract_ended_at": date(2024, 12, 31) if cid % 3 == 0 else None,
        "created_at": T0 + timedelta(days=cid),
        "referred_by": referred_by,
    }


def _order(oid: int, cid: int) -> dict[str, Any]:
    return {
        "id": oid,
        "customer_id": cid,
        "shipping_address": f"{oid} Example Street, Berlin",
        "ordered_at": T0 + timedelta(hours=oid),
        "total": Decimal("19.99") + oid,
    }


def _ticket(tid: int, cid: int | None, parent: int | None) -> dict[str, Any]:
    return {
        "id": tid,
        "customer_id": cid,
        "parent_id": parent,
        "subject": f"Ticket {tid}",
        "body": "Please help." if parent is None else "Reply.",
        "created_at": T0 + timedelta(minutes=tid),
    }


def _invoice(iid: int, cid: int | None, name: str) -> dict[str, Any]:
    return {
        "id": iid,
        "customer_id": cid,
        "billing_name": name,
        "billing_address": f"{iid} Example Street, Berlin",
        "amount_cents": 1999 + iid,
        "issued_at": date(2025, 2, 1) + timedelta(days=iid % 28),
    }


def _rows_for_subject(
    cid: int, email: str, name: str, base: int
) -> dict[str, list[dict[str, Any]]]:
    """One subject's rows; ``base`` offsets their ids (Alice 100s, Bob 200s)."""
    o1, o2 = base + 1, base + 2
    t1 = base + 1
    a1 = base + 1
    c1, c2 = base + 1, base + 2
    return {
        "customers": [_customer(cid, email, name)],
        "orders": [_order(o1, cid), _order(o2, cid)],
        "order_items": [
            {"order_id": o1, "line_no": 1, "sku": "SKU-1", "quantity": 1},
            {"order_id": o1, "line_no": 2, "sku": "SKU-2", "quantity": 3},
            {"order_id": o2, "line_no": 1, "sku": "SKU-1", "quantity": 2},
        ],
        "shipments": [
            {"code": shipment_code(o1), "order_id": o1, "carrier": "DHL", "delivery_note": "Door"}
        ],
        "shipment_events": [
            {
                "id": base + 1,
                "shipment_code": shipment_code(o1),
                "status": "sent",
                "occurred_at": T0,
            },
            {
                "id": base + 2,
                "shipment_code": shipment_code(o1),
                "status": "done",
                "occurred_at": T0,
            },
        ],
        # A ticket, a reply to it and a reply to the reply: the replies carry no customer_id
        # and are reached only through the self-reference.
        "support_tickets": [
            _ticket(t1, cid, None),
            _ticket(t1 + 1, None, t1),
            _ticket(t1 + 2, None, t1 + 1),
        ],
        "accounts": [
            {"id": a1, "customer_id": cid, "primary_contact_id": None, "account_name": name}
        ],
        "contacts": [
            {"id": c1, "account_id": a1, "contact_name": name, "contact_email": email.lower()},
            {"id": c2, "account_id": a1, "contact_name": "Assistant", "contact_email": None},
        ],
        "consents": [
            {"customer_id": cid, "purpose": "marketing", "given_at": T0},
            {"customer_id": cid, "purpose": "newsletter", "given_at": T0},
        ],
        "invoices": [_invoice(base + 1, cid, name), _invoice(base + 2, cid, name)],
        "login_events": [
            {"id": base + i, "customer_id": cid, "ip_address": f"192.0.2.{i}", "occurred_at": T0}
            for i in (1, 2, 3)
        ],
    }


def _unrelated_rows() -> dict[str, list[dict[str, Any]]]:
    """A few hundred rows of other customers; customer 3 was referred by the subject."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for n in range(UNRELATED):
        cid = 3 + n
        oid = 1000 + n
        referred = 1 if cid == 3 else None
        part = {
            "customers": [_customer(cid, f"Person{cid}@Example.com", f"Person {cid}", referred)],
            "orders": [_order(oid, cid)],
            "order_items": [{"order_id": oid, "line_no": 1, "sku": "SKU-9", "quantity": 1}],
            "support_tickets": [_ticket(1000 + n, cid, None)],
            "consents": [{"customer_id": cid, "purpose": "marketing", "given_at": T0}],
            "invoices": [_invoice(1000 + n, cid, f"Person {cid}")],
            "login_events": [
                {
                    "id": 1000 + 2 * n + i,
                    "customer_id": cid,
                    "ip_address": "198.51.100.7",
                    "occurred_at": T0,
                }
                for i in (0, 1)
            ],
        }
        for table, items in part.items():
            rows.setdefault(table, []).extend(items)
    # An invoice without a customer (a walk-in sale) belongs to nobody.
    rows["invoices"].append(_invoice(5000, None, "Walk-in"))
    return rows


INSERT_ORDER = (
    "customers",
    "orders",
    "order_items",
    "shipments",
    "shipment_events",
    "support_tickets",
    "accounts",
    "contacts",
    "consents",
    "invoices",
    "login_events",
)


def _expected(
    parts: Mapping[str, list[dict[str, Any]]], keys: Mapping[str, tuple[str, ...]]
) -> dict[str, set[Key]]:
    return {
        table: {tuple(row[c] for c in keys[table]) for row in rows} for table, rows in parts.items()
    }


KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("id",),
    "orders": ("id",),
    "order_items": ("order_id", "line_no"),
    "shipments": ("code",),
    "shipment_events": ("id",),
    "support_tickets": ("id",),
    "accounts": ("id",),
    "contacts": ("id",),
    "consents": ("customer_id",),
    "invoices": ("id",),
    "login_events": ("id",),
}


@dataclass
class SqlWorld:
    """The test store: engine, config, subjects and the keys each table holds for them."""

    url: str
    engine: Engine
    metadata: sa.MetaData
    store: SqlStore
    policy: Policy
    subject: Identities  # Alice, by email (the given spelling differs in case from the stored)
    subject_by_number: Identities
    other: Identities  # Bob, by email
    expected: dict[str, set[Key]]  # Alice's keys per table
    other_expected: dict[str, set[Key]]
    key_columns: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(KEY_COLUMNS))

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def snapshot(self) -> Rows:
        """Every row of every table, as JSON-comparable tuples, sorted."""
        return snapshot(self.engine, self.metadata)

    def snapshot_without(self, before: Rows, removed: Mapping[str, set[Key]]) -> Rows:
        """``before`` minus the rows whose key is in ``removed`` (per table)."""
        result: Rows = {}
        for table, rows in before.items():
            cols = [c.name for c in self.metadata.tables[table].columns]
            idx = [cols.index(c) for c in self.key_columns[table]]
            gone = {tuple(normalize(v) for v in k) for k in removed.get(table, set())}
            result[table] = [r for r in rows if tuple(r[i] for i in idx) not in gone]
        return result


def normalize(value: Any) -> Any:
    """A value as it compares across backends (dates ISO, decimals as text)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def snapshot(engine: Engine, metadata: sa.MetaData) -> Rows:
    """Every row of every table in ``metadata`` (small test data only), sorted."""
    result: Rows = {}
    with engine.connect() as conn:
        for name, table in metadata.tables.items():
            rows = conn.execute(sa.select(table)).all()
            result[name] = sorted((tuple(normalize(v) for v in row) for row in rows), key=repr)
    return result


@contextmanager
def count_statements(engine: Engine) -> Iterator[list[str]]:
    """Collect the SQL of every statement ``engine`` executes inside the block."""
    statements: list[str] = []

    def _count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", _count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", _count)


def build_world(url: str) -> SqlWorld:
    """Create the schema and data in the empty database at ``url``."""
    engine = make_engine(url)
    md = build_metadata()
    md.create_all(engine)
    alice = _rows_for_subject(1, "Alice.Example@Example.COM", "Alice Example", 100)
    bob = _rows_for_subject(2, "Bob.Other@Example.com", "Bob Other", 200)
    unrelated = _unrelated_rows()
    with engine.begin() as conn:
        for table in INSERT_ORDER:
            rows = alice.get(table, []) + bob.get(table, []) + unrelated.get(table, [])
            if rows:
                conn.execute(md.tables[table].insert(), rows)
        accounts = md.tables["accounts"]
        # Close the cycle: each subject's account names its first contact as primary.
        for account in (101, 201):
            conn.execute(
                accounts.update().where(accounts.c.id == account).values(primary_contact_id=account)
            )
    return SqlWorld(
        url=url,
        engine=engine,
        metadata=md,
        store=make_store(url),
        policy=Policy.model_validate(POLICY),
        subject={"email": frozenset({SUBJECT_EMAIL})},
        subject_by_number={"customer_number": frozenset({"C-0001"})},
        other={"email": frozenset({OTHER_EMAIL})},
        expected=_expected(alice, KEY_COLUMNS),
        other_expected=_expected(bob, KEY_COLUMNS),
    )


@pytest.fixture
def sql_world(db_url: str) -> Iterator[SqlWorld]:
    """The test store in a fresh database, once per backend (tests may change it)."""
    world = build_world(db_url)
    try:
        yield world
    finally:
        world.engine.dispose()


_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", marks=pytest.mark.service, id="postgresql"),
    pytest.param("mariadb", marks=pytest.mark.service, id="mariadb"),
]


@pytest.fixture(scope="module", params=_BACKENDS)
def shared_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SqlWorld]:
    """The test store built once per module and backend, for tests that only read it.

    Building the store costs about a second on a database server; read-only tests share
    one. A test that writes (erases, inserts, creates an index) must use ``sql_world``.
    """
    backend = str(request.param)
    if backend == "sqlite":
        databases: Iterator[str] = iter([f"sqlite:///{tmp_path_factory.mktemp('world')}/db.sqlite"])
    else:
        databases = _fresh_database(backend)  # created here, dropped when closed below
    url = next(databases)
    world = build_world(url)
    try:
        yield world
    finally:
        world.engine.dispose()
        if isinstance(databases, Generator):
            databases.close()
