"""Erasure planning is pure: these tests build schemas in memory and touch no database."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from config.schema import ErasurePolicy, LegalHold
from connectors.base import Action, Findings, Key, MaskSpec, StorePlan, TargetFinding
from connectors.sql.config import SqlStore
from connectors.sql.edges import Edge
from connectors.sql.planning import PlanRefused, plan_erasure
from connectors.sql.schema import StoreSchema
from core.pseudonym import Pseudonymizer
from tests.connectors.sql.conftest import (
    INVENTORY_TABLES,
    KEY_COLUMNS,
    POLICY,
    build_metadata,
    make_store,
    shipment_code,
)

TODAY = date(2026, 3, 1)
ALICE = Pseudonymizer(b"p" * 32).of_value("email", "alice.example@example.com")
BOB = Pseudonymizer(b"p" * 32).of_value("email", "bob.other@example.com")

# Alice's keys in the shared test schema (see tests/connectors/sql/conftest.py).
ALICE_KEYS: dict[str, list[Key]] = {
    "customers": [(1,)],
    "orders": [(101,), (102,)],
    "order_items": [(101, 1), (101, 2), (102, 1)],
    "shipments": [(shipment_code(101),)],
    "shipment_events": [(101,), (102,)],
    "support_tickets": [(101,), (102,), (103,)],
    "accounts": [(101,)],
    "contacts": [(101,), (102,)],
    "consents": [(1,)],
    "invoices": [(101,), (102,)],
    "login_events": [(101,), (102,), (103,)],
}


def schema_for(
    metadata: sa.MetaData, store: SqlStore, keys: Mapping[str, tuple[str, ...]]
) -> StoreSchema:
    """What reflect_store would give: enforced FKs plus the inventory's declared references."""
    edges: list[Edge] = []
    for name, table in metadata.tables.items():
        for fk in table.foreign_key_constraints:
            to_cols = tuple(el.column.name for el in fk.elements)
            edges.append(Edge(name, tuple(fk.column_keys), fk.referred_table.name, to_cols, True))
    for decl in store.tables:
        for ref in decl.references:
            edges.append(Edge(decl.name, ref.columns, ref.table, ref.to_columns, False))
    return StoreSchema(
        store=store.name,
        backend="sqlite",
        tables=dict(metadata.tables),
        keys=dict(keys),
        edges=tuple(edges),
    )


def erasure(categories: Mapping[str, Any] | None = None) -> ErasurePolicy:
    base: dict[str, Any] = dict(POLICY["requests"]["erasure"])
    if categories is not None:
        base = {"default": base["default"], "categories": categories}
    return ErasurePolicy.model_validate(base)


def findings(keys: Mapping[str, Sequence[Key]], store: str = "crm") -> Findings:
    return Findings(
        store=store,
        targets=tuple(TargetFinding(t, tuple(k)) for t, k in keys.items()),
    )


def hold(**fields: Any) -> LegalHold:
    data: dict[str, Any] = {"id": "H-1", "reason": "tax audit", "starts": date(2026, 1, 1)}
    data.update(fields)
    return LegalHold.model_validate(data)


def world_plan(
    *,
    policy: ErasurePolicy | None = None,
    holds: Sequence[LegalHold] = (),
    keys: Mapping[str, Sequence[Key]] = ALICE_KEYS,
    subject: Any = ALICE,
    tables: Sequence[Mapping[str, Any]] | None = None,
    metadata: sa.MetaData | None = None,
) -> StorePlan:
    store = make_store("sqlite://", tables)
    schema = schema_for(metadata or build_metadata(), store, KEY_COLUMNS)
    return plan_erasure(schema, store, findings(keys), policy or erasure(), holds, TODAY, subject)


def steps_by(plan: StorePlan, target: str) -> list[tuple[Action, tuple[Key, ...]]]:
    return [(s.action, s.keys) for s in plan.steps if s.target == target]


def only(plan: StorePlan, target: str, action: Action) -> Any:
    matching = [s for s in plan.steps if s.target == target and s.action == action]
    assert len(matching) == 1, matching
    return matching[0]


def assert_children_first(plan: StorePlan, edges: Sequence[Edge]) -> None:
    """Every step of a child precedes the DELETE of a parent it references."""
    position = {
        (s.target, s.action): i for i, s in enumerate(plan.steps) if s.action != Action.UNLINK
    }
    for edge in edges:
        parent = position.get((edge.parent, Action.DELETE))
        if edge.child == edge.parent or parent is None:
            continue
        for action in (Action.DELETE, Action.MASK):
            child = position.get((edge.child, action))
            if child is not None:
                assert child < parent, (edge, plan.summary())


# --- the shared test schema under its default policy ---------------------------------------


def test_default_policy_deletes_everything_but_masks_invoices() -> None:
    plan = world_plan()
    for table, keys in ALICE_KEYS.items():
        expected = Action.MASK if table == "invoices" else Action.DELETE
        assert only(plan, table, expected).keys == tuple(keys)
    invoices = only(plan, "invoices", Action.MASK)
    assert set(invoices.masks) == {
        MaskSpec("billing_address", "redact"),
        MaskSpec("billing_name", "redact"),
        MaskSpec("customer_id", "null"),  # the kept invoice is unlinked from the erased customer
    }
    assert invoices.reason == "tax law: 10 years"
    assert plan.warnings == ()


def test_unlink_steps_come_first_and_clear_self_references_and_cycles() -> None:
    plan = world_plan()
    unlinks = [s for s in plan.steps if s.action == Action.UNLINK]
    assert plan.steps[: len(unlinks)] == tuple(unlinks)
    by_column = {(s.target, s.masks): s.keys for s in unlinks}
    # customers.referred_by: a customer the subject referred is someone else's row.
    assert by_column[("customers", (MaskSpec("referred_by", "null"),))] == ((1,),)
    # support_tickets.parent_id: replies reference the tickets deleted with them.
    assert by_column[("support_tickets", (MaskSpec("parent_id", "null"),))] == (
        (101,),
        (102,),
        (103,),
    )
    # accounts <-> contacts: one edge of the cycle is cleared, the other orders the deletes.
    assert by_column[("contacts", (MaskSpec("account_id", "null"),))] == ((101,),)
    assert len(unlinks) == 3
    for step in unlinks:
        assert step.reason is not None and step.reason.startswith("clear ")


def test_children_are_planned_before_parents() -> None:
    store = make_store("sqlite://")
    schema = schema_for(build_metadata(), store, KEY_COLUMNS)
    plan = world_plan()
    cut = Edge("contacts", ("account_id",), "accounts", ("id",), True)
    assert_children_first(plan, [e for e in schema.edges if e != cut])
    targets = [s.target for s in plan.steps if s.action != Action.UNLINK]
    assert targets.index("accounts") < targets.index("contacts")
    assert targets[-1] == "customers"


def test_a_target_without_keys_gives_no_step() -> None:
    keys: dict[str, list[Key]] = {**ALICE_KEYS, "login_events": [], "invoices": []}
    plan = world_plan(keys=keys)
    assert steps_by(plan, "login_events") == []
    assert steps_by(plan, "invoices") == []
    assert world_plan(keys={}).steps == ()


# --- policy: category precedence and mask kinds ---------------------------------------------


def test_keep_beats_mask_beats_delete() -> None:
    policy = erasure(
        {
            "contact": {"action": "mask", "mask": "pseudonym", "reason": "fraud prevention"},
            "order_history": {"action": "keep", "reason": "warranty claims"},
        }
    )
    plan = world_plan(policy=policy, keys={"orders": [(101,)], "customers": [(1,)]})
    # orders: contact (mask) + order_history (keep) -> keep.
    assert only(plan, "orders", Action.KEEP).reason == "warranty claims"
    # customers: contact (mask) + contract (default delete) -> mask.
    customers = only(plan, "customers", Action.MASK)
    assert customers.reason == "fraud prevention"
    assert set(customers.masks) == {
        MaskSpec("email", "hash"),  # an identity column: a token no lookup can match
        MaskSpec("full_name", "pseudonym"),
        MaskSpec("phone", "pseudonym"),
        MaskSpec("contract_ended_at", "null"),  # delete-rule field, nullable -> null
        MaskSpec("customer_number", "hash"),  # undeclared identity column, UNIQUE NOT NULL
    }


def test_delete_rule_fields_of_a_masked_table_get_null_or_redact() -> None:
    policy = erasure({"contract": {"action": "mask", "mask": "null", "reason": "contract law"}})
    plan = world_plan(policy=policy, keys={"customers": [(1,)]})
    masks = set(only(plan, "customers", Action.MASK).masks)
    assert masks == {
        MaskSpec("contract_ended_at", "null"),  # its category's own kind
        MaskSpec("email", "hash"),  # identity, NOT NULL: a per-row token, never a marker
        MaskSpec("full_name", "redact"),  # NOT NULL
        MaskSpec("phone", "null"),  # nullable
        MaskSpec("customer_number", "hash"),  # identity: distinct per value, keeps UNIQUE
    }


def test_undeclared_identity_columns_are_masked_or_the_plan_refused() -> None:
    """A kept row must not keep what identifies the person, declared as a field or not."""
    policy = erasure({"contract": {"action": "mask", "mask": "null", "reason": "contract law"}})
    narrow = build_metadata()
    customers = narrow.tables["customers"]
    customers.c.customer_number.type = sa.String(20)  # too narrow for a hash or pseudonym
    with pytest.raises(PlanRefused) as refused:
        world_plan(policy=policy, keys={"customers": [(1,)]}, metadata=narrow)
    assert refused.value.problems == [
        "crm.customers.customer_number: mask 'hash' needs 64 characters, column allows 20"
    ]
    customers.c.customer_number.unique = False  # no UNIQUE: a fixed marker is safe
    for constraint in list(customers.constraints):
        if isinstance(constraint, sa.UniqueConstraint):
            customers.constraints.discard(constraint)
    masks = set(
        only(
            world_plan(policy=policy, keys={"customers": [(1,)]}, metadata=narrow),
            "customers",
            Action.MASK,
        ).masks
    )
    assert MaskSpec("customer_number", "redact") in masks


def test_a_row_without_personal_fields_is_kept_unless_it_must_go_with_its_parent() -> None:
    tables = [dict(t) for t in INVENTORY_TABLES]
    for t in tables:
        if t["name"] == "shipment_events":
            t["fields"] = {}
    # Not by default: found alone (its shipment not erased), a row saying nothing is kept.
    alone = only(
        world_plan(keys={"shipment_events": [(101,)]}, tables=tables),
        "shipment_events",
        Action.KEEP,
    )
    assert alone.reason == "no personal fields"
    # With its shipment deleted, its NOT NULL enforced reference makes it go too.
    keys: dict[str, list[Key]] = {
        "shipments": [(shipment_code(101),)],
        "shipment_events": [(101,)],
    }
    plan = world_plan(keys=keys, tables=tables)
    assert (
        only(plan, "shipment_events", Action.DELETE).reason
        == "goes with its deleted shipments rows"
    )
    assert only(plan, "shipments", Action.DELETE)
    # A default rule does not change that: the default is for categories, not for rows
    # that hold none.
    keep = ErasurePolicy.model_validate({"default": {"action": "keep", "reason": "archive"}})
    kept = world_plan(policy=keep, keys={"shipment_events": [(101,)]}, tables=tables)
    assert only(kept, "shipment_events", Action.KEEP).reason == "no personal fields"


def test_one_kept_field_does_not_stop_masking_the_others() -> None:
    policy = erasure(
        {
            "billing": {"action": "keep", "reason": "invoices kept 10 years (tax law)"},
            "contact": {"action": "delete"},
        }
    )
    tables = [dict(t) for t in INVENTORY_TABLES]
    for t in tables:
        if t["name"] == "invoices":
            t["fields"] = {"billing_name": ["billing"], "billing_address": ["contact"]}
    plan = world_plan(policy=policy, keys={"invoices": [(101,)]}, tables=tables)
    step = only(plan, "invoices", Action.MASK)
    # billing_name is kept (tax record); the contact field still goes, as NULL.
    assert step.masks == (MaskSpec("billing_address", "null"),)
    assert step.reason == "invoices kept 10 years (tax law)"


# --- refused masks --------------------------------------------------------------------------


def _narrow_world() -> tuple[sa.MetaData, list[dict[str, Any]]]:
    md = sa.MetaData()
    sa.Table(
        "cards",
        md,
        sa.Column("card_ref", sa.String(40), primary_key=True),
        sa.Column("holder", sa.String(5), nullable=False),
        sa.Column("pin_hint", sa.Integer, nullable=False),
        sa.Column("holder_email", sa.String(120), nullable=False),
        sa.Column("alias", sa.String(30)),
    )
    tables = [
        {
            "name": "cards",
            "identity": [{"column": "holder_email", "kind": "email"}],
            "fields": {
                "card_ref": ["billing"],
                "holder": ["billing"],
                "pin_hint": ["billing"],
                "holder_email": ["contact"],
                "alias": ["alias"],
            },
        }
    ]
    return md, tables


def test_unsafe_masks_refuse_the_plan_listing_every_problem() -> None:
    md, tables = _narrow_world()
    policy = erasure(
        {
            "billing": {"action": "mask", "mask": "redact", "reason": "tax"},
            "contact": {"action": "mask", "mask": "null", "reason": "tax"},
            "alias": {"action": "mask", "mask": "hash", "reason": "tax"},
        }
    )
    store = make_store("sqlite://", tables)
    schema = schema_for(md, store, {"cards": ("card_ref",)})
    secret = "alice.example@example.com"
    with pytest.raises(PlanRefused) as caught:
        plan_erasure(schema, store, findings({"cards": [(secret,)]}), policy, (), TODAY, ALICE)
    assert caught.value.problems == [
        "crm.cards.alias: mask 'hash' needs 64 characters, column allows 30",
        "crm.cards.card_ref: mask 'redact' targets a key column",
        "crm.cards.holder: mask 'redact' needs 10 characters, column allows 5",
        "crm.cards.pin_hint: mask 'redact' needs a string column, column is INTEGER",
    ]
    message = str(caught.value)
    assert "4 problems" in message and "crm.cards.holder:" in message
    assert secret not in message and "alice" not in message.lower()


def test_a_held_table_is_not_refused_for_masks_it_will_not_write() -> None:
    md, tables = _narrow_world()
    policy = erasure({"billing": {"action": "mask", "mask": "redact", "reason": "tax"}})
    store = make_store("sqlite://", tables)
    schema = schema_for(md, store, {"cards": ("card_ref",)})
    held = hold(scope={"store": "crm", "table": "cards"})
    plan = plan_erasure(schema, store, findings({"cards": [("x",)]}), policy, [held], TODAY, None)
    assert [s.action for s in plan.steps] == [Action.DEFER]


def test_a_non_null_mask_on_an_enforced_foreign_key_is_refused() -> None:
    tables = [dict(t) for t in INVENTORY_TABLES]
    for t in tables:
        if t["name"] == "shipment_events":
            t["fields"] = {"shipment_code": ["billing"]}
    policy = erasure({"billing": {"action": "mask", "mask": "hash", "reason": "tax"}})
    with pytest.raises(PlanRefused) as caught:
        world_plan(policy=policy, keys={"shipment_events": [(101,)]}, tables=tables)
    assert caught.value.problems == [
        "crm.shipment_events.shipment_code: mask 'hash' on an enforced foreign key; "
        "only 'null' keeps references valid"
    ]


# --- legal holds ----------------------------------------------------------------------------


def test_hold_on_store_and_table_defers_that_table_until_its_end() -> None:
    held = hold(scope={"store": "crm", "table": "invoices"}, ends=date(2026, 12, 31))
    plan = world_plan(holds=[held])
    step = only(plan, "invoices", Action.DEFER)
    assert step.reason == "legal hold H-1: tax audit"
    assert step.until == "2026-12-31"
    assert step.masks == ()
    # A deferred invoice is untouched, so even its nullable FK keeps referencing the
    # customer: the customer row cannot go and is masked instead.
    assert only(plan, "customers", Action.MASK).reason == "referenced by retained invoices"
    assert steps_by(plan, "customers") == [(Action.MASK, ((1,),))]


def test_hold_by_subject_defers_every_table_of_that_subject_only() -> None:
    held = hold(scope={"subject": str(ALICE)})
    plan = world_plan(holds=[held])
    assert {s.action for s in plan.steps} == {Action.DEFER}
    assert {s.until for s in plan.steps} == {None}
    other = world_plan(holds=[held], subject=BOB)
    assert Action.DEFER not in {s.action for s in other.steps}
    anonymous = world_plan(holds=[held], subject=None)
    assert Action.DEFER not in {s.action for s in anonymous.steps}


def test_expired_future_and_object_store_holds_do_not_apply() -> None:
    holds = [
        hold(id="OLD", scope={"store": "crm"}, starts=date(2025, 1, 1), ends=date(2025, 9, 30)),
        hold(id="LATER", scope={"store": "crm"}, starts=date(2026, 6, 1)),
        hold(id="S3", scope={"store": "crm", "bucket": "demo-legal-archive"}),
        hold(id="ELSEWHERE", scope={"store": "billing-db"}),
    ]
    assert world_plan(holds=holds) == world_plan()


def test_the_longest_hold_decides() -> None:
    holds = [
        hold(id="A", scope={"store": "crm"}, ends=date(2026, 6, 30)),
        hold(id="B", scope={"store": "crm", "table": "orders"}, reason="litigation"),
    ]
    plan = world_plan(holds=holds)
    orders = [s for s in plan.steps if s.target == "orders"]
    assert [(s.action, s.reason, s.until) for s in orders] == [
        (Action.DEFER, "legal hold B: litigation", None)
    ]
    assert only(plan, "login_events", Action.DEFER).until == "2026-06-30"


# --- referential safety ---------------------------------------------------------------------


def test_retained_child_with_not_null_reference_downgrades_the_parent_to_mask() -> None:
    policy = erasure({"telemetry": {"action": "keep", "reason": "security logs 90 days"}})
    plan = world_plan(policy=policy)
    assert only(plan, "login_events", Action.KEEP).keys == tuple(ALICE_KEYS["login_events"])
    customers = only(plan, "customers", Action.MASK)
    assert customers.keys == ((1,),)
    assert customers.reason == "referenced by retained login_events"
    assert set(customers.masks) == {
        MaskSpec("contract_ended_at", "null"),
        MaskSpec("email", "hash"),
        MaskSpec("full_name", "redact"),
        MaskSpec("phone", "null"),
        MaskSpec("customer_number", "hash"),
    }
    assert steps_by(plan, "customers") == [(Action.MASK, ((1,),))]  # no delete, no unlink


def test_downgrade_is_per_key_when_the_reference_is_part_of_the_child_key() -> None:
    held = hold(scope={"store": "crm", "table": "order_items"})
    keys: dict[str, list[Key]] = {**ALICE_KEYS, "orders": [(101,), (102,), (103,)]}
    plan = world_plan(holds=[held], keys=keys)
    # Items of orders 101 and 102 stay; order 103 has none and goes. Orders cannot be
    # masked (ordered_at is a NOT NULL timestamp), so they are deferred.
    orders = steps_by(plan, "orders")
    assert orders == [(Action.DELETE, ((103,),)), (Action.DEFER, ((101,), (102,)))]
    assert only(plan, "orders", Action.DEFER).reason == "referenced by retained order_items"
    # The deferred orders reference the customer (NOT NULL): it is masked, not deleted.
    assert only(plan, "customers", Action.MASK).reason == "referenced by retained orders"
    # Children of the deferred orders can still go: only referenced parents are kept.
    assert only(plan, "shipments", Action.DELETE)


def test_masked_child_with_not_null_reference_keeps_its_parent() -> None:
    md = build_metadata()
    md.tables["invoices"].c["customer_id"].nullable = False
    plan = world_plan(metadata=md)
    invoices = only(plan, "invoices", Action.MASK)
    assert MaskSpec("customer_id", "null") not in invoices.masks
    assert only(plan, "customers", Action.MASK).reason == "referenced by retained invoices"


def test_declared_references_do_not_block_deletion() -> None:
    # support_tickets -> customers is declared only: a kept ticket does not keep the customer.
    policy = erasure({"support": {"action": "keep", "reason": "open complaint"}})
    plan = world_plan(policy=policy)
    assert only(plan, "support_tickets", Action.KEEP)
    assert only(plan, "customers", Action.DELETE)


# --- cycles and determinism -----------------------------------------------------------------


def test_a_not_null_cycle_is_reported_in_the_warnings() -> None:
    md = build_metadata()
    md.tables["contacts"].c["account_id"].nullable = False
    md.tables["accounts"].c["primary_contact_id"].nullable = False
    plan = world_plan(metadata=md, keys={"accounts": [(101,)], "contacts": [(101,)]})
    assert [s.action for s in plan.steps] == [Action.DELETE, Action.DELETE]
    assert len(plan.warnings) == 1
    assert plan.warnings[0].endswith("the deletion fails if it does")


def test_same_findings_give_the_same_plan_and_digest() -> None:
    first = world_plan()
    rng = random.Random(7)
    for _ in range(5):
        items = list(ALICE_KEYS.items())
        rng.shuffle(items)
        shuffled: dict[str, list[Key]] = {}
        for table, keys in items:
            shuffled[table] = rng.sample(keys, len(keys)) + keys[:1]  # reordered, duplicated
        again = world_plan(keys=shuffled)
        assert again == first
        assert again.digest() == first.digest()
    assert StorePlan.from_json(first.to_json()) == first


def test_findings_of_another_store_are_refused() -> None:
    store = make_store("sqlite://")
    schema = schema_for(build_metadata(), store, KEY_COLUMNS)
    with pytest.raises(Exception, match="different stores"):
        plan_erasure(schema, store, findings({}, store="files"), erasure(), (), TODAY, None)
