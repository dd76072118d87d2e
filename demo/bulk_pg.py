"""Build a large demo CRM on PostgreSQL, entirely server-side, for benchmarks.

Rows come from ``INSERT ... SELECT ... FROM generate_series(...)``: no row passes through
Python, so a million customers and ten million related rows load in minutes. The
statements are fixed text; only integer bounds are bound parameters. Following
PostgreSQL's advice for populating a database, the tables are created with primary keys
only, loaded, then given their secondary indexes and foreign keys, then analyzed.

Every customer ``g`` has the same footprint (``RELATED_PER_CUSTOMER`` rows): 2 orders
with 2 lines each, 1 invoice, 1 support ticket and 2 login events (one of them older than
the 90-day telemetry retention for a third of the customers). Its e-mail is
``customer.<g>@example.com``.

With ``households=True`` the CRM also gets an ``addresses`` table that rows point at
(``customers.home_address_id`` and ``orders.shipping_address_id``, both nullable foreign
keys with an index each): in every block of four customers the first two share one
address (a household) and the other two have one each, so a third of the addresses are
shared by two customers. Every order ships to its customer's home address.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    text,
)
from sqlalchemy.schema import AddConstraint

from config.schema.inventory import Table as TableDecl
from connectors.sql.config import SqlStore
from demo.crm_schema import TABLES, add_foreign_keys, add_indexes, crm_metadata, sync_id_sequences

Progress = Callable[[str], None]

ORDERS_PER_CUSTOMER = 2
LINES_PER_ORDER = 2
LOGINS_PER_CUSTOMER = 2
RELATED_PER_CUSTOMER = ORDERS_PER_CUSTOMER * (1 + LINES_PER_ORDER) + 1 + 1 + LOGINS_PER_CUSTOMER
CHUNK_CUSTOMERS = 250_000

HOUSEHOLD_TABLES = ("addresses", *TABLES)
"""The CRM tables with households, parents before children (insertion order)."""

# (child table, child column): the references into addresses, each a nullable FK with an index.
ADDRESS_REFERENCES = (("customers", "home_address_id"), ("orders", "shipping_address_id"))

# The address of customer g: blocks of four customers share three addresses, the first two
# customers of a block living at the same one.
_ADDRESS_OF = "(3 * ((g - 1) / 4) + greatest((g - 1) % 4, 1))"

# One statement per table over the customer range [:lo, :hi]; ids derive from g so that
# chunks are independent and children know their parents' ids.
_LOAD = {
    "customers": """
        INSERT INTO customers
            (id, customer_number, email, full_name, phone, created_at, contract_ended_at)
        SELECT g, 'C' || lpad(g::text, 9, '0'), 'customer.' || g || '@example.com',
               'Customer ' || g || ' Placeholder',
               '+44 20 7946 0' || lpad((g % 1000)::text, 3, '0'),
               now() - make_interval(days => 400 + g % 2000),
               CASE WHEN g % 10 = 0 THEN now() - make_interval(days => 30 + g % 2000) END
        FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS g
    """,
    "orders": """
        INSERT INTO orders (id, customer_id, shipping_address, ordered_at)
        SELECT (g - 1) * 2 + k, g, (1 + g % 199) || ' Sample Street, Exampleton EX' || (1 + g % 9),
               now() - make_interval(days => (g * 7 + k * 13) % 380, secs => g % 86400)
        FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS g
        CROSS JOIN generate_series(1, 2) AS k
    """,
    "order_items": """
        INSERT INTO order_items (order_id, line_no, sku, quantity)
        SELECT (g - 1) * 2 + k, l, 'SKU-' || lpad(((g * 31 + k * 7 + l) % 100000)::text, 5, '0'),
               1 + (g + k + l) % 5
        FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS g
        CROSS JOIN generate_series(1, 2) AS k
        CROSS JOIN generate_series(1, 2) AS l
    """,
    "invoices": """
        INSERT INTO invoices
            (id, customer_id, billing_name, billing_address, amount_cents, issued_at)
        SELECT g, g, 'Customer ' || g || ' Placeholder',
               (1 + g % 199) || ' Sample Street, Exampleton EX' || (1 + g % 9),
               500 + ((g % 1000) * 7919) % 250000, now() - make_interval(days => (g * 7) % 380)
        FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS g
    """,
    "support_tickets": """
        INSERT INTO support_tickets (id, customer_id, subject, body, created_at)
        SELECT g, g, 'Question about my invoice',
               'Hello, please check my last invoice. Regards, Customer ' || g || ' Placeholder',
               now() - make_interval(days => (g * 11) % 1000)
        FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS g
    """,
    "login_events": """
        INSERT INTO login_events (id, customer_id, ip_address, occurred_at)
        SELECT (g - 1) * 2 + k, g, '198.51.100.' || (1 + (g + k) % 254),
               now() - make_interval(days => (g * 3 + k * 50) % 200, secs => g % 86400)
        FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS g
        CROSS JOIN generate_series(1, 2) AS k
    """,
}

# Households: the statements that differ from ``_LOAD`` (same rows, plus address ids).
_HOUSEHOLD_LOAD = {
    "addresses": f"""
        INSERT INTO addresses (id, line1, postcode)
        SELECT {_ADDRESS_OF}, (1 + g % 199) || ' Sample Street, Exampleton',
               'EX' || (1 + g % 9) || ' ' || (g % 10) || 'AB'
        FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS g
        WHERE (g - 1) % 4 <> 1
    """,
    "customers": f"""
        INSERT INTO customers
            (id, customer_number, email, full_name, phone, created_at, contract_ended_at,
             home_address_id)
        SELECT g, 'C' || lpad(g::text, 9, '0'), 'customer.' || g || '@example.com',
               'Customer ' || g || ' Placeholder',
               '+44 20 7946 0' || lpad((g % 1000)::text, 3, '0'),
               now() - make_interval(days => 400 + g % 2000),
               CASE WHEN g % 10 = 0 THEN now() - make_interval(days => 30 + g % 2000) END,
               {_ADDRESS_OF}
        FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS g
    """,
    "orders": f"""
        INSERT INTO orders (id, customer_id, shipping_address, ordered_at, shipping_address_id)
        SELECT (g - 1) * 2 + k, g, (1 + g % 199) || ' Sample Street, Exampleton EX' || (1 + g % 9),
               now() - make_interval(days => (g * 7 + k * 13) % 380, secs => g % 86400),
               {_ADDRESS_OF}
        FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS g
        CROSS JOIN generate_series(1, 2) AS k
    """,
}

# The extra rows of one subject with a large footprint, using the id sequences.
_HEAVY = {
    "orders": """
        INSERT INTO orders (customer_id, shipping_address, ordered_at)
        SELECT :cid, 'Heavy House, Sample Street, Exampleton EX1',
               now() - make_interval(days => k % 380)
        FROM generate_series(1, CAST(:n AS integer)) AS k
    """,
    "order_items": """
        INSERT INTO order_items (order_id, line_no, sku, quantity)
        SELECT o.id, l, 'SKU-' || lpad(((o.id + l) % 100000)::text, 5, '0'), 1
        FROM orders AS o CROSS JOIN generate_series(1, CAST(:n AS integer)) AS l
        WHERE o.customer_id = :cid
    """,
    "invoices": """
        INSERT INTO invoices (customer_id, billing_name, billing_address, amount_cents, issued_at)
        SELECT :cid, 'Heavy Placeholder', 'Heavy House, Sample Street, Exampleton EX1',
               1000 + k, now() - make_interval(days => k % 380)
        FROM generate_series(1, CAST(:n AS integer)) AS k
    """,
    "support_tickets": """
        INSERT INTO support_tickets (customer_id, subject, body, created_at)
        SELECT :cid, 'Delivery is late', 'Hello, where is my order? Regards, Heavy Placeholder',
               now() - make_interval(days => k % 1000)
        FROM generate_series(1, CAST(:n AS integer)) AS k
    """,
    "login_events": """
        INSERT INTO login_events (customer_id, ip_address, occurred_at)
        SELECT :cid, '203.0.113.' || (1 + k % 254), now() - make_interval(days => k % 200)
        FROM generate_series(1, CAST(:n AS integer)) AS k
    """,
}


_HEAVY_HOUSEHOLD_ORDERS = """
    INSERT INTO orders (customer_id, shipping_address, ordered_at, shipping_address_id)
    SELECT :cid, 'Heavy House, Sample Street, Exampleton EX1',
           now() - make_interval(days => k % 380), :aid
    FROM generate_series(1, CAST(:n AS integer)) AS k
"""


@dataclass(frozen=True)
class HeavyFootprint:
    """How many rows of each kind the heavy subject gets (1,000 related rows by default)."""

    orders: int = 150
    lines_per_order: int = 2
    invoices: int = 100
    tickets: int = 50
    logins: int = 400

    @property
    def related(self) -> int:
        orders = self.orders * (1 + self.lines_per_order)
        return orders + self.invoices + self.tickets + self.logins


def customer_email(customer_id: int) -> str:
    """The e-mail of bulk-generated customer ``customer_id``."""
    return f"customer.{customer_id}@example.com"


def address_of(customer_id: int) -> int:
    """The home address id of bulk-generated customer ``customer_id`` (with households)."""
    block, position = divmod(customer_id - 1, 4)
    return 3 * block + max(position, 1)


def household_partner(customer_id: int) -> int | None:
    """The customer sharing ``customer_id``'s address (the first two of every four), if any."""
    position = (customer_id - 1) % 4
    if position == 0:
        return customer_id + 1
    return customer_id - 1 if position == 1 else None


def address_count(customers: int) -> tuple[int, int]:
    """(addresses, shared addresses) of a CRM of ``customers`` customers with households."""
    shared = (customers + 2) // 4  # customers in the second place of a block
    return customers - shared, shared


def household_metadata(*, foreign_keys: bool = True) -> MetaData:
    """``crm_metadata`` plus ``addresses`` and the two nullable references into it."""
    md = crm_metadata(foreign_keys=foreign_keys)
    Table(
        "addresses",
        md,
        Column("id", Integer, primary_key=True),
        Column("line1", String(200), nullable=False),
        Column("postcode", String(12), nullable=False),
    )
    for table, column in ADDRESS_REFERENCES:
        md.tables[table].append_column(Column(column, Integer, nullable=True))
    if foreign_keys:
        _address_keys(md)
    return md


def _address_keys(md: MetaData) -> list[ForeignKeyConstraint]:
    constraints = []
    for table, column in ADDRESS_REFERENCES:
        fk = ForeignKeyConstraint([column], ["addresses.id"], name=f"fk_{table}_{column}")
        md.tables[table].append_constraint(fk)
        constraints.append(fk)
    return constraints


def household_inventory(store: SqlStore) -> SqlStore:
    """The demo ``crm`` store declaring ``addresses`` too (personal fields: contact).

    Its references are the reflected foreign keys, with the default directions: both are
    held by tables that point at a non-subject table, so an address is *linked* to the
    customer and orders pointing at it (``follow: target``), never owned.
    """
    addresses = TableDecl(
        name="addresses",
        description="Postal addresses; a household shares one",
        primary_key=("id",),
        fields={"line1": ("contact",), "postcode": ("contact",)},
    )
    return store.model_copy(update={"tables": (*store.tables, addresses)})


def _require_postgres(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        raise ValueError("the bulk CRM generator needs PostgreSQL (generate_series)")


def _finish(conn: Connection, md: MetaData, progress: Progress, households: bool) -> None:
    # A larger sort budget for this session's index builds only.
    conn.execute(text("SET maintenance_work_mem = '512MB'"))
    indexes = add_indexes(md, "postgresql")
    fks = add_foreign_keys(md)
    if households:
        # Every FK column indexed: the shared-row check counts holders by these columns.
        indexes += [
            Index(f"ix_{table}_{column}", md.tables[table].c[column])
            for table, column in ADDRESS_REFERENCES
        ]
        fks += _address_keys(md)
    for index in indexes:
        progress(f"  index {index.name}")
        index.create(conn)
    for fk in fks:
        progress(f"  foreign key {fk.name}")
        conn.execute(AddConstraint(fk))
    sync_id_sequences(conn, md)


def build_crm(
    engine: Engine,
    customers: int,
    progress: Progress = lambda _message: None,
    chunk: int = CHUNK_CUSTOMERS,
    *,
    households: bool = False,
) -> dict[str, int]:
    """Create and fill the CRM tables with ``customers`` customers; rows per table.

    ``households``: with the shared ``addresses`` table (see the module doc).
    """
    _require_postgres(engine)
    md = household_metadata(foreign_keys=False) if households else crm_metadata(foreign_keys=False)
    load = {**_LOAD, **_HOUSEHOLD_LOAD} if households else _LOAD
    with engine.begin() as conn:
        md.drop_all(conn)
        md.create_all(conn)
    for name in HOUSEHOLD_TABLES if households else TABLES:
        for lo in range(1, customers + 1, chunk):
            hi = min(customers, lo + chunk - 1)
            with engine.begin() as conn:
                conn.execute(text(load[name]), {"lo": lo, "hi": hi})
            progress(f"  {name}: customers {lo:,}-{hi:,} loaded")
    with engine.begin() as conn:
        _finish(conn, md, progress, households)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        progress("  ANALYZE")
        conn.execute(text("ANALYZE"))
    per = {
        "customers": 1,
        "orders": ORDERS_PER_CUSTOMER,
        "order_items": ORDERS_PER_CUSTOMER * LINES_PER_ORDER,
        "invoices": 1,
        "support_tickets": 1,
        "login_events": LOGINS_PER_CUSTOMER,
    }
    counts = {name: customers * per[name] for name in TABLES}
    if households:
        counts = {"addresses": address_count(customers)[0], **counts}
    return counts


def add_heavy_subject(
    engine: Engine,
    email: str,
    footprint: HeavyFootprint | None = None,
    *,
    households: bool = False,
) -> int:
    """Add one customer with a large footprint (1,000 related rows by default); its id.

    One per database: the customer number is fixed. ``households``: the customer gets an
    address of its own (not shared), which all its orders ship to.
    """
    _require_postgres(engine)
    shape = footprint or HeavyFootprint()
    md = household_metadata(foreign_keys=False) if households else crm_metadata(foreign_keys=False)
    customers = md.tables["customers"]
    counts = {
        "orders": shape.orders,
        "order_items": shape.lines_per_order,
        "invoices": shape.invoices,
        "support_tickets": shape.tickets,
        "login_events": shape.logins,
    }
    with engine.begin() as conn:
        row: dict[str, str | int] = {
            "customer_number": "H000000001",
            "email": email,
            "full_name": "Heavy Placeholder",
            "phone": "+44 20 7946 0999",
        }
        params: dict[str, int] = {}
        if households:
            addresses = md.tables["addresses"]
            address = insert(addresses).values(line1="Heavy House, Sample Street", postcode="EX1")
            params["aid"] = int(conn.execute(address.returning(addresses.c.id)).scalar_one())
            row["home_address_id"] = params["aid"]
        values = insert(customers).values({**row, "created_at": func.now()})
        cid = int(conn.execute(values.returning(customers.c.id)).scalar_one())
        for name, n in counts.items():  # orders before their lines
            if households and name == "orders":
                conn.execute(text(_HEAVY_HOUSEHOLD_ORDERS), {"cid": cid, "n": n, **params})
            else:
                conn.execute(text(_HEAVY[name]), {"cid": cid, "n": n})
        conn.execute(text("ANALYZE"))
    return cid
