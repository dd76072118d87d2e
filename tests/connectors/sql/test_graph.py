"""resolve_follow: which way each reference is followed, and the follow: values refused.

Pure: edges and an inventory in, no database. The trap schema's end-to-end behaviour is in
test_relationships.py; here each default rule and each refusal is pinned on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors.sql.config import SqlStore
from connectors.sql.edges import Edge
from connectors.sql.graph import reach_notes, reachable, resolve_follow


def store(tables: Sequence[Any]) -> SqlStore:
    return SqlStore.model_validate(
        {
            "type": "sql",
            "name": "shop",
            "url": "sqlite://",
            "region": "eu-central-1",
            "tables": tables,
        }
    )


def fk(child: str, column: str, parent: str) -> Edge:
    return Edge(child, (column,), parent, ("id",), True)


PEOPLE = {"identity": [{"column": "email", "kind": "email"}], "fields": {"email": ["contact"]}}


def ways(tables: Sequence[Any], edges: Sequence[Edge]) -> dict[str, str]:
    resolved, problems = resolve_follow(store(tables), edges)
    assert problems == []
    return {f"{e.child}.{e.columns[0]}": e.follow for e in resolved}


def test_defaults_follow_the_nearest_owner_and_link_the_rest() -> None:
    tables = [
        {"name": "customers", **PEOPLE},
        {"name": "agents", **PEOPLE},
        {"name": "addresses", "fields": {"street": ["contact"]}},
        {"name": "cards", "fields": {"number": ["payment"]}},
        {"name": "orders"},
        {"name": "lines"},
        {"name": "products"},
        {"name": "tickets"},
    ]
    edges = [
        fk("customers", "address_id", "addresses"),
        fk("customers", "agent_id", "agents"),
        fk("customers", "referred_by", "customers"),
        fk("cards", "customer_id", "customers"),
        fk("cards", "billing_address_id", "addresses"),
        fk("orders", "customer_id", "customers"),
        fk("orders", "card_id", "cards"),
        fk("lines", "order_id", "orders"),
        fk("lines", "sku", "products"),
        fk("tickets", "order_id", "orders"),
        fk("tickets", "parent_id", "tickets"),
    ]
    assert ways(tables, edges) == {
        "customers.address_id": "target",  # held by a subject table: the subject's address
        "customers.agent_id": "none",  # another person
        "customers.referred_by": "none",
        "cards.customer_id": "holders",  # points at a subject table
        "cards.billing_address_id": "target",
        "orders.customer_id": "holders",
        "orders.card_id": "target",  # orders is owned through customer_id, one hop nearer
        "lines.order_id": "holders",  # the nearest owned table
        "lines.sku": "target",  # products are owned by nobody
        "tickets.order_id": "holders",
        "tickets.parent_id": "holders",  # a reply to the subject's ticket
    }


def test_equally_near_references_are_refused_until_one_is_declared() -> None:
    tables: list[dict[str, Any]] = [
        {"name": "customers", **PEOPLE},
        {"name": "orders"},
        {"name": "cards"},
        {"name": "payments", "fields": {"amount": ["payment"]}},
    ]
    edges = [
        fk("orders", "customer_id", "customers"),
        fk("cards", "customer_id", "customers"),
        fk("payments", "order_id", "orders"),
        fk("payments", "card_id", "cards"),
    ]
    resolved, problems = resolve_follow(store(tables), edges)
    assert len(problems) == 1
    assert problems[0].startswith(
        "store 'shop', table 'payments': references order_id -> orders, card_id -> cards are "
        "equally near an owned table"
    )
    # Neither is followed while ambiguous: nothing is guessed.
    assert {e.columns[0]: e.follow for e in resolved if e.child == "payments"} == {
        "order_id": "none",
        "card_id": "none",
    }

    tables[3]["references"] = [
        {"columns": ["card_id"], "table": "cards", "to_columns": ["id"], "follow": "target"}
    ]
    assert ways(tables, edges)["payments.order_id"] == "holders"
    assert ways(tables, edges)["payments.card_id"] == "target"


def test_follow_values_that_cannot_work_are_refused() -> None:
    def ref(column: str, table: str, follow: str) -> dict[str, Any]:
        return {"columns": [column], "table": table, "to_columns": ["id"], "follow": follow}

    tables = [
        {"name": "customers", **PEOPLE},
        {"name": "agents", **PEOPLE, "references": [ref("address_id", "addresses", "holders")]},
        {"name": "addresses", "fields": {"street": ["contact"]}},
        {
            "name": "orders",
            "references": [
                ref("agent_id", "agents", "target"),
                ref("shipping_address_id", "addresses", "holders"),
            ],
        },
    ]
    edges = [
        fk("customers", "address_id", "addresses"),
        fk("agents", "address_id", "addresses"),
        fk("orders", "customer_id", "customers"),
        fk("orders", "agent_id", "agents"),
        fk("orders", "shipping_address_id", "addresses"),
    ]
    _, problems = resolve_follow(store(tables), edges)
    assert len(problems) == 3
    assert any(
        "orders', reference agent_id -> agents: follow: target into 'agents'" in p for p in problems
    )
    assert any(
        "agents', reference address_id -> addresses: follow: holders on a table with identities"
        in p
        for p in problems
    )
    assert any(
        "orders', reference shipping_address_id -> addresses: follow: holders, but "
        "'addresses' rows are only ever linked" in p
        for p in problems
    )


def test_unreachable_declared_tables_are_named() -> None:
    tables = [
        {"name": "customers", **PEOPLE},
        {"name": "orders", "fields": {"note": ["order_history"]}},
        {"name": "audit_log", "fields": {"ip": ["telemetry"]}},
    ]
    edges = [fk("orders", "customer_id", "customers")]
    resolved, _ = resolve_follow(store(tables), edges)
    assert reachable(resolved, store(tables)) == {"customers", "orders"}
    notes = reach_notes(resolved, store(tables))
    assert len(notes) == 1
    assert notes[0].startswith("store 'shop', table 'audit_log': no identity reaches it")
