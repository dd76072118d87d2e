"""A shop schema the product was never designed for, with the traps real schemas have.

Tables (all keys explicit, no autoincrement): ``agents`` and ``customers`` are subject
tables (an ``email`` identity each); ``addresses`` are shared by a household; ``cards``
belong to a customer and have a billing address; ``products`` is a catalogue keyed by a
string SKU; ``orders`` point at a customer, a card (possibly someone else's) and two
addresses; ``order_lines`` have a composite key; ``payments`` reference an order *and* a
card (ambiguous without ``follow: target`` on the card); ``invoices`` are kept for tax law
and hold a ``billing_email``; ``tax_records`` hang off invoices and hold no personal data;
``consents`` have no primary key and no foreign key (the reference is declared in the
inventory only); ``loyalty_points`` holds an enforced foreign key into ``customers`` but is
not declared in the inventory at all.

The subjects (ids are small and fixed, see the constants):

- Alice (stored as ``Alice@Example.com``): home H1 (shared with Bob), agent G1, card CA
  (billing H2), orders O1 (paid with Bob's card CB) and O2 (card CA), both shipped to H1
  and billed to H2, two lines each, a payment each, invoice I1 (for O1) with a tax
  record, a consent.
- Bob: home H1, agent G1, card CB (billing H1), order O3 (H1, card CB), a consent.
- Carol: shares nothing: home H3, card CC, order O4 (one line is the only use of P4).
- Dave: home H4, order O5 (no card), and a ``loyalty_points`` row (undeclared holder).

Around them, 20 unrelated customers with their own addresses (ids 1-4 collide with the
subjects' customer ids), cards, orders (one shipped to H1: a neighbour's parcel sent to
the household), lines, payments, invoices, tax records, consents and loyalty points;
one is called ``Alice Example`` too, one has the e-mail ``Malice@Example.com``.

``TrapWorld.reset`` empties every table and inserts the rows again, so a database built
once per backend serves every test. ``expected_db`` is the seed data as a snapshot is
read back; ``ExpectedDb`` edits it by hand into the state a test expects. Every address
is at example.com.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from config.schema import Policy
from connectors.sql.config import SqlStore
from core.engines import make_engine

Row = dict[str, Any]
Tables = dict[str, list[Row]]

STORE = "shop"
T0 = datetime(2025, 3, 3, 10, 0, 0)

# Agents, addresses, customers (the subjects), cards, orders, payments, invoices, ...
G1, G2 = 1, 2
H1, H2, H3, H4 = 11, 12, 13, 14
ALICE, BOB, CAROL, DAVE = 1, 2, 3, 4
CA, CB, CC = 21, 22, 23
O1, O2, O3, O4, O5 = 31, 32, 33, 34, 35
PAY1, PAY2, PAY3, PAY4, PAY5 = 41, 42, 43, 44, 45
I1 = 51
TAX1 = 61
LOYALTY_DAVE = 71
P1, P2, P3, P4 = "SKU-A1", "SKU-A2", "SKU-B7", "SKU-C9"

ALICE_EMAIL = "alice@example.com"  # stored as "Alice@Example.com"
BOB_EMAIL = "bob@example.com"
CAROL_EMAIL = "carol@example.com"
DAVE_EMAIL = "dave@example.com"

UNRELATED = 20
NEIGHBOUR = 4  # the unrelated customer whose order 404 is shipped to H1

KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "agents": ("id",),
    "addresses": ("id",),
    "customers": ("id",),
    "cards": ("id",),
    "products": ("sku",),
    "orders": ("id",),
    "order_lines": ("order_id", "line_no"),
    "payments": ("id",),
    "invoices": ("id",),
    "tax_records": ("id",),
    "consents": ("customer_id", "purpose"),  # no primary key: what identifies a row here
    "loyalty_points": ("id",),
}

NAMING = {
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
}
LOYALTY_FK = "fk_loyalty_points_customer_id"


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=False)


def _fk(name: str, target: str, *, nullable: bool) -> sa.Column[int]:
    return sa.Column(name, sa.Integer, sa.ForeignKey(target), nullable=nullable, index=True)


def build_metadata() -> sa.MetaData:
    """The schema; every foreign key column is indexed, identity columns are UNIQUE."""
    md = sa.MetaData(naming_convention=NAMING)
    sa.Table(
        "agents",
        md,
        _id(),
        sa.Column("email", sa.String(120), nullable=False, unique=True),
        sa.Column("full_name", sa.String(80), nullable=False),
    )
    sa.Table(
        "addresses",
        md,
        _id(),
        sa.Column("street", sa.String(120), nullable=False),
        sa.Column("city", sa.String(80), nullable=False),
        sa.Column("postcode", sa.String(16), nullable=True),
    )
    sa.Table(
        "customers",
        md,
        _id(),
        sa.Column("email", sa.String(120), nullable=False, unique=True),
        sa.Column("full_name", sa.String(80), nullable=False),
        sa.Column("phone", sa.String(40), nullable=True),
        _fk("home_address_id", "addresses.id", nullable=True),
        _fk("agent_id", "agents.id", nullable=True),
    )
    sa.Table(
        "cards",
        md,
        _id(),
        _fk("customer_id", "customers.id", nullable=False),
        sa.Column("card_number", sa.String(19), nullable=False),
        _fk("billing_address_id", "addresses.id", nullable=True),
    )
    sa.Table(
        "products",
        md,
        sa.Column("sku", sa.String(20), primary_key=True),
        sa.Column("title", sa.String(80), nullable=False),
        sa.Column("price", sa.Numeric(10, 2), nullable=False),
    )
    sa.Table(
        "orders",
        md,
        _id(),
        _fk("customer_id", "customers.id", nullable=False),
        _fk("card_id", "cards.id", nullable=True),
        _fk("shipping_address_id", "addresses.id", nullable=True),
        _fk("billing_address_id", "addresses.id", nullable=True),
        sa.Column("ordered_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "order_lines",
        md,
        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), primary_key=True, index=True),
        sa.Column("line_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("sku", sa.String(20), sa.ForeignKey("products.sku"), nullable=False, index=True),
        sa.Column("quantity", sa.Integer, nullable=False),
    )
    sa.Table(
        "payments",
        md,
        _id(),
        _fk("order_id", "orders.id", nullable=False),
        _fk("card_id", "cards.id", nullable=True),
        sa.Column("amount", sa.Numeric(10, 2), nullable=False),
    )
    sa.Table(
        "invoices",
        md,
        _id(),
        _fk("customer_id", "customers.id", nullable=False),
        _fk("order_id", "orders.id", nullable=True),
        sa.Column("billing_name", sa.String(80), nullable=False),
        sa.Column("billing_email", sa.String(120), nullable=True),
        sa.Column("total", sa.Numeric(10, 2), nullable=False),
    )
    sa.Table(
        "tax_records",
        md,
        _id(),
        _fk("invoice_id", "invoices.id", nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("amount", sa.Numeric(10, 2), nullable=False),
    )
    sa.Table(  # no primary key, no foreign key: the reference is declared in the inventory
        "consents",
        md,
        sa.Column("customer_id", sa.Integer, nullable=False, index=True),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("given_at", sa.DateTime, nullable=False),
    )
    sa.Table(  # not in the inventory: an enforced reference the product cannot see
        "loyalty_points",
        md,
        _id(),
        _fk("customer_id", "customers.id", nullable=False),
        sa.Column("points", sa.Integer, nullable=False),
    )
    return md


_EMAIL_IDENTITY = [{"column": "email", "kind": "email", "case_insensitive": True}]
PAYMENTS_CARD_TARGET = {
    "columns": ["card_id"],
    "table": "cards",
    "to_columns": ["id"],
    "follow": "target",
}


def inventory_tables(*, annotate_payments: bool = True) -> list[dict[str, Any]]:
    """The inventory's tables; without ``annotate_payments`` payments is ambiguous."""
    return [
        {
            "name": "agents",
            "identity": _EMAIL_IDENTITY,
            "fields": {"email": ["contact"], "full_name": ["contact"]},
        },
        {
            "name": "customers",
            "identity": _EMAIL_IDENTITY,
            "fields": {"email": ["contact"], "full_name": ["contact"], "phone": ["contact"]},
        },
        {
            "name": "addresses",
            "fields": {"street": ["contact"], "city": ["contact"], "postcode": ["contact"]},
        },
        {"name": "cards", "fields": {"card_number": ["payment"]}},
        {"name": "products"},
        {"name": "orders", "fields": {"ordered_at": ["order_history"]}},
        {"name": "order_lines", "fields": {"quantity": ["order_history"]}},
        {
            "name": "payments",
            "references": [PAYMENTS_CARD_TARGET] if annotate_payments else [],
            "fields": {"amount": ["payment"]},
        },
        {"name": "invoices", "fields": {"billing_name": ["billing"], "billing_email": ["contact"]}},
        {"name": "tax_records"},
        {
            "name": "consents",
            "references": [
                {"columns": ["customer_id"], "table": "customers", "to_columns": ["id"]}
            ],
            "fields": {"purpose": ["consent"]},
        },
    ]


TAX_LAW = "invoices kept 10 years (tax law)"
POLICY: dict[str, Any] = {
    "categories": [
        {"name": n} for n in ("contact", "payment", "order_history", "consent", "billing")
    ],
    "requests": {
        "approval": {"required_for": []},
        "erasure": {
            "default": {"action": "delete"},
            "categories": {
                "contact": {"action": "delete"},
                "payment": {"action": "delete"},
                "order_history": {"action": "delete"},
                "consent": {"action": "delete"},
                "billing": {"action": "keep", "reason": TAX_LAW},
            },
        },
    },
}


def make_store(url: str, *, annotate_payments: bool = True) -> SqlStore:
    """The ``shop`` store of the inventory."""
    return SqlStore.model_validate(
        {
            "type": "sql",
            "name": STORE,
            "url": url,
            "region": "eu-central-1",
            "tables": inventory_tables(annotate_payments=annotate_payments),
        }
    )


# --- data -----------------------------------------------------------------------------


def _address(aid: int, street: str, city: str, postcode: str | None) -> Row:
    return {"id": aid, "street": street, "city": city, "postcode": postcode}


def _customer(
    cid: int, email: str, name: str, phone: str | None, home: int | None, *, agent: int | None
) -> Row:
    return {
        "id": cid,
        "email": email,
        "full_name": name,
        "phone": phone,
        "home_address_id": home,
        "agent_id": agent,
    }


def _order(oid: int, cid: int, card: int | None, ship: int | None, bill: int | None) -> Row:
    return {
        "id": oid,
        "customer_id": cid,
        "card_id": card,
        "shipping_address_id": ship,
        "billing_address_id": bill,
        "ordered_at": T0 + timedelta(days=oid),
    }


def _line(oid: int, line_no: int, sku: str, quantity: int) -> Row:
    return {"order_id": oid, "line_no": line_no, "sku": sku, "quantity": quantity}


def _payment(pid: int, oid: int, card: int | None, amount: str) -> Row:
    return {"id": pid, "order_id": oid, "card_id": card, "amount": Decimal(amount)}


def _consent(cid: int, purpose: str, days: int) -> Row:
    return {"customer_id": cid, "purpose": purpose, "given_at": T0 - timedelta(days=days)}


def _subject_rows() -> Tables:
    """The four subjects' rows (and the agents and catalogue), literally."""
    return {
        "agents": [
            {"id": G1, "email": "agent.one@example.com", "full_name": "Agent One"},
            {"id": G2, "email": "agent.two@example.com", "full_name": "Agent Two"},
        ],
        "addresses": [
            _address(H1, "1 Household Lane", "Springfield", "11111"),
            _address(H2, "2 Billing Road", "Springfield", None),
            _address(H3, "3 Carol Court", "Shelbyville", "33333"),
            _address(H4, "4 Dave Drive", "Ogdenville", "44444"),
        ],
        "customers": [
            _customer(ALICE, "Alice@Example.com", "Alice Example", "+15550100001", H1, agent=G1),
            _customer(BOB, BOB_EMAIL, "Bob Example", "+15550100002", H1, agent=G1),
            _customer(CAROL, CAROL_EMAIL, "Carol Example", "+15550100003", H3, agent=None),
            _customer(DAVE, DAVE_EMAIL, "Dave Example", None, H4, agent=None),
        ],
        "cards": [
            {
                "id": CA,
                "customer_id": ALICE,
                "card_number": "4000000000000021",
                "billing_address_id": H2,
            },
            {
                "id": CB,
                "customer_id": BOB,
                "card_number": "4000000000000022",
                "billing_address_id": H1,
            },
            {
                "id": CC,
                "customer_id": CAROL,
                "card_number": "4000000000000023",
                "billing_address_id": H3,
            },
        ],
        "products": [
            {"sku": P1, "title": "Kettle", "price": Decimal("24.90")},
            {"sku": P2, "title": "Teapot", "price": Decimal("18.50")},
            {"sku": P3, "title": "Mug", "price": Decimal("6.00")},
            {"sku": P4, "title": "Tea cosy", "price": Decimal("12.25")},
        ],
        "orders": [
            _order(O1, ALICE, CB, H1, H2),  # Alice's order paid with Bob's card
            _order(O2, ALICE, CA, H1, H2),
            _order(O3, BOB, CB, H1, H1),
            _order(O4, CAROL, CC, H3, H3),
            _order(O5, DAVE, None, H4, None),
        ],
        "order_lines": [
            _line(O1, 1, P1, 1),
            _line(O1, 2, P2, 1),
            _line(O2, 1, P1, 2),
            _line(O2, 2, P2, 3),
            _line(O3, 1, P1, 1),
            _line(O3, 2, P3, 4),
            _line(O4, 1, P2, 1),
            _line(O4, 2, P4, 1),  # the only line anywhere with P4
            _line(O5, 1, P1, 1),
        ],
        "payments": [
            _payment(PAY1, O1, CB, "43.40"),
            _payment(PAY2, O2, CA, "105.30"),
            _payment(PAY3, O3, CB, "48.90"),
            _payment(PAY4, O4, CC, "30.75"),
            _payment(PAY5, O5, None, "24.90"),
        ],
        "invoices": [
            {
                "id": I1,
                "customer_id": ALICE,
                "order_id": O1,
                "billing_name": "Alice Example",
                "billing_email": ALICE_EMAIL,
                "total": Decimal("43.40"),
            }
        ],
        "tax_records": [
            {"id": TAX1, "invoice_id": I1, "period": "2025-03", "amount": Decimal("6.93")}
        ],
        "consents": [
            _consent(ALICE, "marketing", 10),
            _consent(BOB, "marketing", 20),
            _consent(CAROL, "newsletter", 30),
        ],
        "loyalty_points": [{"id": LOYALTY_DAVE, "customer_id": DAVE, "points": 120}],
    }


def _unrelated_email(n: int) -> str:
    return "Malice@Example.com" if n == 0 else f"Customer{101 + n}@Example.com"


def _unrelated_rows() -> Tables:
    """20 customers with rows in every table; none of them may ever change."""
    rows: Tables = {}
    for n in range(UNRELATED):
        cid, card, oid = 101 + n, 301 + n, 401 + n
        home = n + 1 if n < 4 else 201 + n  # 1-4: the same numbers as the subjects' ids
        email = _unrelated_email(n)
        name = "Alice Example" if n == 1 else f"Customer {cid}"  # a namesake is not Alice
        part: Tables = {
            "addresses": [
                _address(home, f"{home} Other Street", "Capital City", f"{10000 + home}")
            ],
            "customers": [
                _customer(cid, email, name, f"+1555020{cid:04d}", home, agent=(G1, G2, None)[n % 3])
            ],
            "cards": [
                {
                    "id": card,
                    "customer_id": cid,
                    "card_number": f"5100000000000{card:03d}",
                    "billing_address_id": home,
                }
            ],
            "orders": [_order(oid, cid, card, H1 if n == NEIGHBOUR else home, home)],
            "order_lines": [_line(oid, 1, (P1, P2)[n % 2], 1 + n % 3)]
            + ([_line(oid, 2, P3, 2)] if n % 3 == 0 else []),
            "payments": [_payment(501 + n, oid, card, f"{10 + n}.05")],
            "consents": [_consent(cid, "marketing", n)]
            + ([_consent(cid, "newsletter", n)] if n % 5 == 0 else []),
        }
        if n % 2 == 0:
            part["invoices"] = [
                {
                    "id": 601 + n,
                    "customer_id": cid,
                    "order_id": oid,
                    "billing_name": name,
                    "billing_email": None if n % 4 == 2 else email.lower(),
                    "total": Decimal(f"{10 + n}.05"),
                }
            ]
            part["tax_records"] = [
                {
                    "id": 701 + n,
                    "invoice_id": 601 + n,
                    "period": "2025-02",
                    "amount": Decimal("1.60"),
                }
            ]
        if n < 5:
            part["loyalty_points"] = [{"id": 801 + n, "customer_id": cid, "points": 10 * n}]
        for table, items in part.items():
            rows.setdefault(table, []).extend(items)
    return rows


def seed_rows() -> Tables:
    """Every row the world starts with (fresh dicts on every call)."""
    rows = _subject_rows()
    for table, items in _unrelated_rows().items():
        rows[table] = rows.get(table, []) + items
    return rows


# --- snapshots and expectations -------------------------------------------------------


def normalize(value: Any) -> Any:
    """A value as it compares across backends and as an export renders it."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def key_of(table: str, row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A row's identifying values (the primary key; consents: customer and purpose)."""
    return tuple(row[c] for c in KEY_COLUMNS[table])


def _sorted(table: str, rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: key_of(table, r))


def expected_db() -> Tables:
    """The seed data as ``TrapWorld.snapshot`` reads it back."""
    return {
        table: _sorted(table, [{k: normalize(v) for k, v in row.items()} for row in rows])
        for table, rows in seed_rows().items()
    }


def _as_key(key: Any) -> tuple[Any, ...]:
    return key if isinstance(key, tuple) else (key,)


def rows_of(table: str, *keys: Any) -> list[Row]:
    """The seed rows of ``table`` with ``keys`` (a value, or a tuple for composite keys)."""
    wanted = {_as_key(k) for k in keys}
    found = [r for r in expected_db()[table] if key_of(table, r) in wanted]
    assert len(found) == len(wanted), f"{table}: no seed row for some of {sorted(wanted)}"
    return found


class ExpectedDb:
    """The seed snapshot, edited by hand into the state a test expects."""

    def __init__(self) -> None:
        self.tables = expected_db()

    def drop(self, table: str, *keys: Any) -> ExpectedDb:
        """Rows that must be gone."""
        wanted = {_as_key(k) for k in keys}
        before = len(self.tables[table])
        self.tables[table] = [r for r in self.tables[table] if key_of(table, r) not in wanted]
        assert before - len(self.tables[table]) == len(wanted), f"{table}: unknown key"
        return self

    def change(self, table: str, key: Any, **values: Any) -> ExpectedDb:
        """One row whose columns must now hold ``values``."""
        rows = [r for r in self.tables[table] if key_of(table, r) == _as_key(key)]
        assert len(rows) == 1, f"{table}: no row {key}"
        unknown = set(values) - set(rows[0])
        assert not unknown, f"{table}: no columns {sorted(unknown)}"
        rows[0].update({k: normalize(v) for k, v in values.items()})
        return self

    def add(self, table: str, row: Row) -> ExpectedDb:
        """A row that must be there (inserted by the test)."""
        self.tables[table] = _sorted(
            table, [*self.tables[table], {k: normalize(v) for k, v in row.items()}]
        )
        return self


HEX64 = re.compile(r"[0-9a-f]{64}")
TOKEN = "<64-hex token>"


def take_token(snapshot: Tables, table: str, key: Any, column: str) -> str:
    """The 64-hex mask token in one cell; the cell is replaced by ``TOKEN`` for comparison.

    The token's value depends on the product's key; the test checks its shape only.
    """
    rows = [r for r in snapshot[table] if key_of(table, r) == _as_key(key)]
    assert len(rows) == 1, f"{table}: row {key} is gone"
    value = rows[0][column]
    assert isinstance(value, str), f"{table}.{column} of {key} is {value!r}"
    assert HEX64.fullmatch(value), f"{table}.{column} of {key} is not a 64-hex token"
    rows[0][column] = TOKEN
    return value


@dataclass
class TrapWorld:
    """The shop store on one backend: engine, metadata, inventory entry and policy."""

    url: str
    engine: Engine
    metadata: sa.MetaData
    store: SqlStore
    policy: Policy

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def reset(self) -> None:
        """Every table emptied and filled with the seed rows again, in one transaction."""
        rows = seed_rows()
        with self.engine.begin() as conn:
            for table in reversed(self.metadata.sorted_tables):
                conn.execute(table.delete())
            for table in self.metadata.sorted_tables:
                if rows.get(table.name):
                    conn.execute(table.insert(), rows[table.name])

    def insert(self, table: str, row: Row) -> None:
        """Add one row (a change made behind the product's back)."""
        with self.engine.begin() as conn:
            conn.execute(self.metadata.tables[table].insert(), [row])

    def snapshot(self) -> Tables:
        """Every row of every table (loyalty_points too), normalized, sorted by key."""
        result: Tables = {}
        with self.engine.connect() as conn:
            for name, table in self.metadata.tables.items():
                rows = conn.execute(sa.select(table)).mappings().all()
                result[name] = _sorted(
                    name, [{k: normalize(v) for k, v in row.items()} for row in rows]
                )
        return result


def build_world(url: str) -> TrapWorld:
    """Create the schema in the empty database at ``url`` and fill it."""
    engine = make_engine(url)
    metadata = build_metadata()
    metadata.create_all(engine)
    world = TrapWorld(
        url=url,
        engine=engine,
        metadata=metadata,
        store=make_store(url),
        policy=Policy.model_validate(POLICY),
    )
    world.reset()
    return world
