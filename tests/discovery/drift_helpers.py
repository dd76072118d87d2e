"""Shared by the inventory-drift tests: a small shop schema, its inventory, planted values.

The schema is ours (not the demo's): customers (identity e-mail), orders (a foreign key
into customers), login_events (a declared reference only). Every value a test plants
contains ``planted`` in some case, so one search proves none leaked.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine

PLANTED = "planted"
"""Every value the tests store contains this, in some case."""

POLICY = """\
categories:
  - {name: contact, description: "Contact details"}
  - {name: telemetry, description: "Logins"}
  - {name: support, description: "Tickets"}
requests:
  deadline_days: 30
  approval: {required_for: []}
"""

TABLES = """\
      - name: customers
        primary_key: [id]
        identity: [{column: email, kind: email, case_insensitive: true}]
        derives: [{column: id, as: customer_id}]
        fields: {email: [contact], full_name: [contact]}
      - name: orders
        primary_key: [id]
        fields: {shipping_address: [contact]}
      - name: login_events
        primary_key: [id]
__REFERENCE__
        fields: {ip_address: [telemetry]}
"""
REFERENCE = "        references: [{columns: [customer_id], table: customers, to_columns: [id]}]"


def sql_store_yaml(url: str, *, reference: bool = True, ignore: str = "") -> str:
    """The ``shop`` SQL store's entry (``reference``: login_events reaches customers)."""
    tables = TABLES.replace("__REFERENCE__\n", REFERENCE + "\n" if reference else "")
    text = (
        "  - name: shop\n    type: sql\n"
        f'    url: "{url}"\n    region: eu-central-1\n    tables:\n{tables}'
    )
    return text + (f"    ignore:\n{ignore}" if ignore else "")


def write_config(folder: Path, stores: str) -> Path:
    """inventory.yaml with ``stores`` (YAML list items) and a minimal policy.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inventory.yaml").write_text("stores:\n" + stores)
    (folder / "policy.yaml").write_text(POLICY)
    return folder


def create_shop(engine: Engine, rows: int = 30) -> None:
    """The declared schema, with rows whose values are all planted."""
    md = sa.MetaData()
    customers = sa.Table(
        "customers",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(255)),
        sa.Column("full_name", sa.String(100)),
    )
    orders = sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id")),
        sa.Column("shipping_address", sa.String(200)),
    )
    md.create_all(engine)
    create_login_events(engine)
    with engine.begin() as conn:
        conn.execute(
            customers.insert(),
            [
                {"id": i, "email": f"planted{i}@example.com", "full_name": f"Planted Person{i}"}
                for i in range(1, rows + 1)
            ],
        )
        conn.execute(
            orders.insert(),
            [
                {"id": i, "customer_id": i, "shipping_address": f"{i} PLANTED Lane"}
                for i in range(1, rows + 1)
            ],
        )


def create_login_events(engine: Engine) -> None:
    md = sa.MetaData()
    sa.Table(
        "login_events",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer),
        sa.Column("ip_address", sa.String(45)),
    )
    md.create_all(engine)


def execute(engine: Engine, *statements: str) -> None:
    """Plain DDL/DML the three backends share (test-only; nothing from input)."""
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


def drift_the_schema(engine: Engine, rows: int = 30) -> None:
    """What a developer does without touching inventory.yaml: an e-mail column, a notes
    column, an undeclared table with a foreign key into customers; login_events dropped."""
    execute(
        engine,
        "ALTER TABLE orders ADD contact_email VARCHAR(255)",
        "ALTER TABLE orders ADD gift_note VARCHAR(100)",
        "UPDATE orders SET gift_note = 'PLANTED happy birthday'",
        "CREATE TABLE gift_cards (id INTEGER PRIMARY KEY, customer_id INTEGER, "
        "code VARCHAR(20), FOREIGN KEY (customer_id) REFERENCES customers (id))",
        "DROP TABLE login_events",
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE orders SET contact_email = :e WHERE id = :i"),
            [{"e": f"planted.buyer{i}@example.com", "i": i} for i in range(1, rows + 1)],
        )
        conn.execute(
            sa.text("INSERT INTO gift_cards (id, customer_id, code) VALUES (:i, :c, :code)"),
            [{"i": i, "c": i, "code": f"PLANTED-{i:04}"} for i in range(1, rows + 1)],
        )


def undo_the_drift(engine: Engine) -> None:
    """The schema as declared again."""
    execute(
        engine,
        "DROP TABLE gift_cards",
        "ALTER TABLE orders DROP COLUMN gift_note",
        "ALTER TABLE orders DROP COLUMN contact_email",
    )
    create_login_events(engine)


def leaked(text: str) -> bool:
    """Whether a planted value shows in ``text``."""
    return PLANTED in text.lower()
