"""reflect_store: the inventory checked against the reflected schema, keys and edges."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.sql.edges import Edge
from connectors.sql.graph import reachable, subject_tables, traversal_edges
from connectors.sql.schema import (
    coerce,
    key_clause,
    reflect_store,
    sql_errors,
    translate,
)
from core.engines import make_engine
from core.errors import ConfigError, TerminalError, TransientError
from tests.connectors.sql.conftest import INVENTORY_TABLES, SqlWorld, make_store

EXPECTED_EDGES = [
    Edge("customers", ("referred_by",), "customers", ("id",), True, "none"),
    Edge("orders", ("customer_id",), "customers", ("id",), True),
    Edge("order_items", ("order_id",), "orders", ("id",), True),
    Edge("shipments", ("order_id",), "orders", ("id",), True),
    Edge("shipment_events", ("shipment_code",), "shipments", ("code",), True),
    Edge("support_tickets", ("customer_id",), "customers", ("id",), False),
    Edge("support_tickets", ("parent_id",), "support_tickets", ("id",), True),
    Edge("accounts", ("customer_id",), "customers", ("id",), True),
    Edge("accounts", ("primary_contact_id",), "contacts", ("id",), True, "target"),
    Edge("contacts", ("account_id",), "accounts", ("id",), True),
    Edge("consents", ("customer_id",), "customers", ("id",), True),
    Edge("invoices", ("customer_id",), "customers", ("id",), True),
    Edge("login_events", ("customer_id",), "customers", ("id",), True),
]


def _tables() -> list[dict[str, Any]]:
    return copy.deepcopy(INVENTORY_TABLES)


def _table(tables: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(t for t in tables if t["name"] == name)


def test_reflects_keys_and_the_reference_graph(shared_world: SqlWorld) -> None:
    schema = reflect_store(shared_world.engine, shared_world.store)

    assert schema.store == "crm"
    assert schema.backend == shared_world.backend
    assert list(schema.tables) == [t["name"] for t in INVENTORY_TABLES]
    assert dict(schema.keys) == shared_world.key_columns
    # consents has no primary key: keyed by the one reference column it is matched on.
    assert schema.unkeyed == frozenset({"consents"})
    # Same edges, same order, on every backend; the declared-only reference is unenforced.
    assert list(schema.edges) == EXPECTED_EDGES
    assert schema.edges_into("contacts") == (EXPECTED_EDGES[8],)
    assert schema.edges_from("support_tickets") == (EXPECTED_EDGES[5], EXPECTED_EDGES[6])


def test_graph_enters_subject_tables_only_through_identity(shared_world: SqlWorld) -> None:
    schema = reflect_store(shared_world.engine, shared_world.store)

    assert subject_tables(shared_world.store) == frozenset({"customers"})
    followed = traversal_edges(schema.edges, shared_world.store)
    assert EXPECTED_EDGES[0] not in followed  # customers.referred_by: someone else
    assert len(followed) == len(EXPECTED_EDGES) - 1
    assert reachable(schema.edges, shared_world.store) == set(schema.tables)
    assert reachable(schema.edges, shared_world.store, kinds=["phone"]) == set()


def test_duplicate_declared_reference_collapses_into_the_enforced_edge(
    shared_world: SqlWorld,
) -> None:
    tables = _tables()
    _table(tables, "orders")["references"] = [
        {"columns": ["customer_id"], "table": "customers", "to_columns": ["id"]}
    ]
    schema = reflect_store(shared_world.engine, make_store(shared_world.url, tables))

    into_customers = [e for e in schema.edges if e.child == "orders"]
    assert into_customers == [EXPECTED_EDGES[1]]


def test_config_primary_key_wins_over_reflection(shared_world: SqlWorld) -> None:
    tables = _tables()
    _table(tables, "consents")["primary_key"] = ["customer_id", "purpose"]
    schema = reflect_store(shared_world.engine, make_store(shared_world.url, tables))

    assert schema.keys["consents"] == ("customer_id", "purpose")
    assert schema.unkeyed == frozenset()


def test_every_mismatch_is_reported_at_once_naming_store_table_and_column(
    shared_world: SqlWorld,
) -> None:
    tables = _tables()
    tables.append({"name": "no_such_table", "fields": {"x": ["contact"]}})
    customers = _table(tables, "customers")
    customers["identity"].append({"column": "mail", "kind": "email"})
    customers["derives"].append({"column": "uid", "as": "user_id"})
    customers["fields"]["fullname"] = ["contact"]
    customers["timestamps"] = {"created": "created"}
    customers["client_column"] = "tenant"
    _table(tables, "orders")["primary_key"] = ["order_id"]
    _table(tables, "support_tickets")["references"] = [
        {"columns": ["customer_ref"], "table": "customers", "to_columns": ["id"]},
        {"columns": ["customer_id"], "table": "customers", "to_columns": ["ident"]},
        {"columns": ["customer_id", "parent_id"], "table": "customers", "to_columns": ["id"]},
        {"columns": ["subject"], "table": "customers", "to_columns": ["id"]},
        {"columns": ["customer_id"], "table": "undeclared", "to_columns": ["id"]},
    ]

    with pytest.raises(ConfigError) as caught:
        reflect_store(shared_world.engine, make_store(shared_world.url, tables))

    problems = caught.value.problems
    assert sorted(problems) == sorted(
        [
            "store 'crm', table 'no_such_table': table not found in the database",
            "store 'crm', table 'customers': unknown column 'mail' in identity",
            "store 'crm', table 'customers': unknown column 'uid' in derives",
            "store 'crm', table 'customers': unknown column 'fullname' in fields",
            "store 'crm', table 'customers': unknown column 'created' in timestamps",
            "store 'crm', table 'customers': unknown column 'tenant' in client_column",
            "store 'crm', table 'orders': unknown column 'order_id' in primary_key",
            "store 'crm', table 'support_tickets': unknown column 'customer_ref' in references",
            "store 'crm', table 'support_tickets': reference column 'customer_id' points at "
            "unknown column 'ident' of table 'customers'",
            "store 'crm', table 'support_tickets': reference columns (customer_id, parent_id) "
            "and customers columns (id) differ in number",
            "store 'crm', table 'support_tickets': reference column 'subject' (string) does not "
            "match type of customers.id (integer)",
            "store 'crm', table 'support_tickets': reference to table 'undeclared' that is not "
            "declared",
        ]
    )
    assert all("\n" not in p for p in problems)


def test_table_without_key_and_nothing_to_match_is_refused(sql_world: SqlWorld) -> None:
    sa.Table(
        "notes", sql_world.metadata, sa.Column("note", sa.String(200)), sa.Column("n", sa.Integer)
    ).create(sql_world.engine)
    tables = [*_tables(), {"name": "notes", "fields": {"note": ["support"]}}]

    with pytest.raises(ConfigError) as caught:
        reflect_store(sql_world.engine, make_store(sql_world.url, tables))

    assert caught.value.problems == [
        "store 'crm', table 'notes': no primary key, and no identity column or reference to "
        "match its rows on; declare primary_key or a reference"
    ]


def test_table_without_key_matched_on_several_column_sets_is_refused(
    shared_world: SqlWorld,
) -> None:
    tables = _tables()
    _table(tables, "consents")["references"] = [
        {"columns": ["purpose"], "table": "shipments", "to_columns": ["code"], "follow": "holders"}
    ]
    with pytest.raises(ConfigError) as caught:
        reflect_store(shared_world.engine, make_store(shared_world.url, tables))

    assert caught.value.problems == [
        "store 'crm', table 'consents': no primary key, and matched on several column sets "
        "(customer_id; purpose); declare primary_key"
    ]


def test_unreachable_database_is_transient_and_hides_the_password() -> None:
    store = make_store("postgresql://lc:s3cret-pw@127.0.0.1:1/nowhere")
    engine = make_engine(store.url.get_secret_value(), connect_args={"connect_timeout": 2})
    try:
        with pytest.raises(TransientError) as caught:
            reflect_store(engine, store)
    finally:
        engine.dispose()
    assert "s3cret-pw" not in str(caught.value)
    message = str(caught.value)  # why and how to fix it, never the password
    assert message.startswith("store 'crm' is unreachable: connection refused")
    assert "reflecting the schema" in message and "check that the database is running" in message
    assert caught.value.fields["operation"] == "reflecting the schema"


def test_translated_errors_never_carry_statement_parameters() -> None:
    orig = Exception("Duplicate entry 'alice.example@example.com' for key 'email'")
    error = sa.exc.IntegrityError("INSERT ...", {"email": "alice.example@example.com"}, orig)

    translated = translate(error, "crm", "erasure", "customers")

    assert isinstance(translated, TerminalError)
    assert not isinstance(translated, TransientError)
    assert "example.com" not in str(translated)
    assert str(translated) == (
        "store 'crm', table 'customers': erasure failed (IntegrityError: Exception)"
    )
    locked = sa.exc.OperationalError("UPDATE ...", {"email": "a@example.com"}, Exception("lock"))
    with pytest.raises(TransientError) as caught, sql_errors("crm", "locate", "orders"):
        raise locked
    assert caught.value.__cause__ is locked
    assert "example.com" not in str(caught.value)


def test_identity_text_is_converted_to_the_column_type(shared_world: SqlWorld) -> None:
    schema = reflect_store(shared_world.engine, shared_world.store)
    customers = schema.tables["customers"]

    assert coerce(customers.c.id, "42") == 42
    assert coerce(customers.c.email, 42) == "42"
    with pytest.raises(ValueError, match="integer"):
        coerce(customers.c.id, "not-a-number")
    # Unconvertible keys are left out: they cannot match, and must not fail the statement.
    clause = key_clause(customers, ("id",), [("1",), ("x",)])
    with shared_world.engine.connect() as conn:
        ids = conn.execute(sa.select(customers.c.id).where(clause)).scalars().all()
    assert ids == [1]
