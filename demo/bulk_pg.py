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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, MetaData, func, insert, text
from sqlalchemy.schema import AddConstraint

from demo.crm_schema import TABLES, add_foreign_keys, add_indexes, crm_metadata, sync_id_sequences

Progress = Callable[[str], None]

ORDERS_PER_CUSTOMER = 2
LINES_PER_ORDER = 2
LOGINS_PER_CUSTOMER = 2
RELATED_PER_CUSTOMER = ORDERS_PER_CUSTOMER * (1 + LINES_PER_ORDER) + 1 + 1 + LOGINS_PER_CUSTOMER
CHUNK_CUSTOMERS = 250_000

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


def _require_postgres(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        raise ValueError("the bulk CRM generator needs PostgreSQL (generate_series)")


def _finish(conn: Connection, md: MetaData, progress: Progress) -> None:
    # A larger sort budget for this session's index builds only.
    conn.execute(text("SET maintenance_work_mem = '512MB'"))
    for index in add_indexes(md, "postgresql"):
        progress(f"  index {index.name}")
        index.create(conn)
    for fk in add_foreign_keys(md):
        progress(f"  foreign key {fk.name}")
        conn.execute(AddConstraint(fk))
    sync_id_sequences(conn, md)


def build_crm(
    engine: Engine,
    customers: int,
    progress: Progress = lambda _message: None,
    chunk: int = CHUNK_CUSTOMERS,
) -> dict[str, int]:
    """Create and fill the CRM tables with ``customers`` customers; rows per table."""
    _require_postgres(engine)
    md = crm_metadata(foreign_keys=False)
    with engine.begin() as conn:
        md.drop_all(conn)
        md.create_all(conn)
    for name in TABLES:
        for lo in range(1, customers + 1, chunk):
            hi = min(customers, lo + chunk - 1)
            with engine.begin() as conn:
                conn.execute(text(_LOAD[name]), {"lo": lo, "hi": hi})
            progress(f"  {name}: customers {lo:,}-{hi:,} loaded")
    with engine.begin() as conn:
        _finish(conn, md, progress)
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
    return {name: customers * per[name] for name in TABLES}


def add_heavy_subject(engine: Engine, email: str, footprint: HeavyFootprint | None = None) -> int:
    """Add one customer with a large footprint (1,000 related rows by default); its id.

    One per database: the customer number is fixed.
    """
    _require_postgres(engine)
    shape = footprint or HeavyFootprint()
    customers = crm_metadata(foreign_keys=False).tables["customers"]
    counts = {
        "orders": shape.orders,
        "order_items": shape.lines_per_order,
        "invoices": shape.invoices,
        "support_tickets": shape.tickets,
        "login_events": shape.logins,
    }
    with engine.begin() as conn:
        row = {
            "customer_number": "H000000001",
            "email": email,
            "full_name": "Heavy Placeholder",
            "phone": "+44 20 7946 0999",
        }
        values = insert(customers).values({**row, "created_at": func.now()})
        cid = int(conn.execute(values.returning(customers.c.id)).scalar_one())
        for name, n in counts.items():  # orders before their lines
            conn.execute(text(_HEAVY[name]), {"cid": cid, "n": n})
        conn.execute(text("ANALYZE"))
    return cid
