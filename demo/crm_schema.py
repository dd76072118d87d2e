"""The demo CRM schema (SQLAlchemy Core), as described by ``config/demo/inventory.yaml``.

One definition serves the demo seed and the request benchmark, so both exercise the
schema the inventory declares. Tables, foreign keys and indexes are built separately:
bulk loads create the tables bare, load, then add indexes and foreign keys (the
PostgreSQL "populating a database" advice), while the small demo seed creates keys with
the tables. ``support_tickets.customer_id`` deliberately has no foreign key: the
inventory declares that reference in config only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    select,
)

TABLES = ("customers", "orders", "order_items", "invoices", "support_tickets", "login_events")
"""Every CRM table, parents before children (insertion order)."""

# (child table, child column, parent table, parent column): the enforced references.
FOREIGN_KEYS = (
    ("orders", "customer_id", "customers", "id"),
    ("order_items", "order_id", "orders", "id"),
    ("invoices", "customer_id", "customers", "id"),
    ("login_events", "customer_id", "customers", "id"),
)

# Columns a subject's rows are found through (every FK, plus the config-only reference).
# order_items.order_id leads its composite primary key, which already serves as its index.
TRAVERSAL_INDEXES = (
    ("orders", "customer_id"),
    ("invoices", "customer_id"),
    ("support_tickets", "customer_id"),
    ("login_events", "customer_id"),
)

# Retention clocks the demo policy sweeps by (login events older than 90 days).
RETENTION_INDEXES = (("login_events", "occurred_at"),)

EXPRESSION_INDEX_DIALECTS = frozenset({"sqlite", "postgresql"})


def _when(name: str, nullable: bool = False) -> Column[datetime]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def crm_metadata(*, foreign_keys: bool = True) -> MetaData:
    """A fresh ``MetaData`` with the six CRM tables (no secondary indexes yet).

    Fresh on every call because indexes and foreign keys are attached to the tables
    later (``add_indexes``, ``add_foreign_keys``), per database being built.
    """
    md = MetaData()
    Table(
        "customers",
        md,
        Column("id", Integer, primary_key=True),
        Column("customer_number", String(20), nullable=False, unique=True),
        Column("email", String(254), nullable=False),
        Column("full_name", String(200), nullable=False),
        Column("phone", String(40)),
        _when("created_at"),
        _when("contract_ended_at", nullable=True),
    )
    Table(
        "orders",
        md,
        Column("id", Integer, primary_key=True),
        Column("customer_id", Integer, nullable=False),
        Column("shipping_address", String(300)),
        _when("ordered_at"),
    )
    Table(
        "order_items",
        md,
        Column("order_id", Integer, nullable=False, autoincrement=False),
        Column("line_no", Integer, nullable=False, autoincrement=False),
        Column("sku", String(32), nullable=False),
        Column("quantity", Integer, nullable=False),
        PrimaryKeyConstraint("order_id", "line_no"),
    )
    Table(
        "invoices",
        md,
        Column("id", Integer, primary_key=True),
        # Nullable: an erased customer's invoices stay (tax law) without the link.
        Column("customer_id", Integer, nullable=True),
        Column("billing_name", String(200), nullable=False),
        Column("billing_address", String(300)),
        Column("amount_cents", Integer, nullable=False),
        _when("issued_at"),
    )
    Table(
        "support_tickets",
        md,
        Column("id", Integer, primary_key=True),
        Column("customer_id", Integer, nullable=False),  # no FK: declared in config only
        Column("subject", String(200), nullable=False),
        Column("body", Text),
        _when("created_at"),
    )
    Table(
        "login_events",
        md,
        Column("id", Integer, primary_key=True),
        Column("customer_id", Integer, nullable=False),
        Column("ip_address", String(45)),
        _when("occurred_at"),
    )
    if foreign_keys:
        add_foreign_keys(md)
    return md


def add_foreign_keys(md: MetaData) -> list[ForeignKeyConstraint]:
    """Attach the CRM's foreign keys to ``md``'s tables; returns them (for ``AddConstraint``)."""
    constraints = []
    for child, column, parent, parent_column in FOREIGN_KEYS:
        fk = ForeignKeyConstraint(
            [column], [f"{parent}.{parent_column}"], name=f"fk_{child}_{column}"
        )
        md.tables[child].append_constraint(fk)
        constraints.append(fk)
    return constraints


def add_indexes(md: MetaData, dialect: str) -> list[Index]:
    """Attach the secondary indexes for a ``dialect`` database; returns them to create.

    The e-mail lookup is case-insensitive, so backends with expression indexes get one
    on ``lower(email)``; MySQL/MariaDB compare with a case-insensitive collation and
    use a plain index.
    """
    customers = md.tables["customers"]
    indexes = [
        Index(f"ix_{table}_{column}", md.tables[table].c[column])
        for table, column in (*TRAVERSAL_INDEXES, *RETENTION_INDEXES)
    ]
    if dialect in EXPRESSION_INDEX_DIALECTS:
        indexes.append(Index("ix_customers_email_lower", func.lower(customers.c.email)))
    else:
        indexes.append(Index("ix_customers_email", customers.c.email))
    return indexes


def sync_id_sequences(conn: Connection, md: MetaData) -> None:
    """On PostgreSQL, move each serial ``id`` sequence past the explicitly inserted ids.

    Rows are loaded with explicit ids (deterministic, and children can name their
    parents); without this, the next application insert would collide. SQLite and
    MySQL derive the next id from the table itself.
    """
    if conn.dialect.name != "postgresql":
        return
    for table in md.tables.values():
        if "id" not in table.c or not table.c.id.primary_key:
            continue
        highest = select(func.coalesce(func.max(table.c.id), 0) + 1).scalar_subquery()
        sequence = func.pg_get_serial_sequence(table.name, "id")
        conn.execute(select(func.setval(sequence, highest, False)))
