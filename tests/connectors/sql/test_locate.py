"""locate: a subject's rows found from identities through every reference, and nothing else."""

from __future__ import annotations

import copy

import pytest

from connectors.base import Connector, Findings, Identities, Key
from connectors.registry import connector_for
from connectors.sql.connector import SqlConnector
from connectors.sql.locate import locate
from connectors.sql.schema import StoreSchema, reflect_store
from core.errors import ConfigError
from core.keys import KeyRing
from tests.connectors.sql.conftest import (
    INVENTORY_TABLES,
    SUBJECT_EMAIL,
    T0,
    SqlWorld,
    count_statements,
    make_store,
)

KEYS = KeyRing.from_master(b"k" * 32)


def _found(findings: Findings) -> dict[str, set[Key]]:
    return {t.target: set(t.keys) for t in findings.targets}


def _locate(world: SqlWorld, identities: Identities, batch_size: int = 1000) -> Findings:
    schema = reflect_store(world.engine, world.store)
    return locate(world.engine, schema, world.store, identities, batch_size)


def test_finds_exactly_the_subjects_rows_in_every_table(shared_world: SqlWorld) -> None:
    findings = _locate(shared_world, shared_world.subject)

    assert findings.store == "crm"
    # Multi-hop (order_items, shipments, shipment_events), composite keys, the declared-only
    # reference and the replies reached by self-reference, the accounts<->contacts cycle,
    # and consents keyed by customer_id (no primary key).
    assert _found(findings) == shared_world.expected
    assert findings.counts()["support_tickets"] == 3
    assert _found(findings)["order_items"] == {(101, 1), (101, 2), (102, 1)}
    assert findings.total == sum(len(k) for k in shared_world.expected.values())


def test_never_includes_other_subjects_or_people_the_subject_referred(
    shared_world: SqlWorld,
) -> None:
    alice = _found(_locate(shared_world, shared_world.subject))
    bob = _found(_locate(shared_world, shared_world.other))

    assert bob == shared_world.other_expected
    for table, keys in alice.items():
        assert not keys & bob.get(table, set()), table
    # Customer 3 was referred by Alice (customers.referred_by): a different person.
    assert alice["customers"] == {(1,)}


def test_records_how_each_table_was_reached_and_its_categories(shared_world: SqlWorld) -> None:
    targets = {t.target: t for t in _locate(shared_world, shared_world.subject).targets}

    assert targets["customers"].via == "identity:email"
    assert (
        targets["support_tickets"].via == "support_tickets.customer_id, support_tickets.parent_id"
    )
    assert targets["order_items"].via == "order_items.order_id"
    assert targets["shipment_events"].via == "shipment_events.shipment_code"
    assert targets["customers"].categories == ("contact", "contract")
    assert targets["orders"].categories == ("contact", "order_history")
    assert targets["invoices"].categories == ("billing",)


@pytest.mark.parametrize(
    "email", [SUBJECT_EMAIL, "ALICE.EXAMPLE@EXAMPLE.COM", "Alice.Example@Example.COM"]
)
def test_email_matches_case_insensitively(shared_world: SqlWorld, email: str) -> None:
    findings = _locate(shared_world, {"email": frozenset({email})})

    assert _found(findings) == shared_world.expected


def test_non_ascii_email_matches_as_stored_and_across_ascii_case(sql_world: SqlWorld) -> None:
    # Folding is the database's on both sides: SQLite folds ASCII only, so folding the
    # value in Python would miss even the exact spelling.
    customers = sql_world.metadata.tables["customers"]
    row = {
        "id": 900,
        "customer_number": "C-0900",
        "email": "Zoë.Ärger@example.com",
        "full_name": "Zoë Ärger",
        "created_at": T0,
    }
    with sql_world.engine.begin() as conn:
        conn.execute(customers.insert(), [row])

    for spelling in ("Zoë.Ärger@example.com", "ZOë.ÄRGER@EXAMPLE.COM"):
        findings = _locate(sql_world, {"email": frozenset({spelling})})
        assert _found(findings) == {"customers": {(900,)}}, spelling


def test_identity_by_customer_number_is_case_sensitive(shared_world: SqlWorld) -> None:
    assert _found(_locate(shared_world, shared_world.subject_by_number)) == shared_world.expected
    assert _locate(shared_world, {"customer_number": frozenset({"c-0001"})}).targets == ()


def test_several_identities_union_without_duplicates(shared_world: SqlWorld) -> None:
    both = {**shared_world.subject, **shared_world.subject_by_number}
    findings = _locate(shared_world, both)

    assert _found(findings) == shared_world.expected
    customers = next(t for t in findings.targets if t.target == "customers")
    assert customers.keys == ((1,),)
    assert customers.via == "identity:email, identity:customer_number"


def test_derives_identities_for_later_stores(shared_world: SqlWorld) -> None:
    assert _locate(shared_world, shared_world.subject).derived == {"customer_id": frozenset({"1"})}
    assert _locate(shared_world, shared_world.other).derived == {"customer_id": frozenset({"2"})}


def test_derived_identity_text_matches_integer_columns(shared_world: SqlWorld) -> None:
    # A second store over the same database, searched by the derived customer_id: text
    # compared with an INTEGER column (PostgreSQL refuses integer = varchar), and a
    # value the column cannot hold simply matches nothing.
    tables = [
        {
            "name": "login_events",
            "identity": [{"column": "customer_id", "kind": "customer_id"}],
            "fields": {"ip_address": ["telemetry"]},
        },
        {
            "name": "consents",
            "identity": [{"column": "customer_id", "kind": "customer_id"}],
            "fields": {"purpose": ["contract"]},
        },
    ]
    store = make_store(shared_world.url, tables)
    schema = reflect_store(shared_world.engine, store)
    identities = {"customer_id": frozenset({"1", "not-a-number", " 1 "}), "email": frozenset()}

    findings = locate(shared_world.engine, schema, store, identities)

    assert _found(findings) == {
        "login_events": shared_world.expected["login_events"],
        "consents": {(1,)},
    }
    assert schema.keys["consents"] == ("customer_id",)  # no PK: keyed by its identity column


def test_unknown_subject_and_unused_identity_kinds_find_nothing(shared_world: SqlWorld) -> None:
    nobody = _locate(shared_world, {"email": frozenset({"nobody@example.com"})})
    unused = _locate(shared_world, {"phone": frozenset({"+49 30 0000001"})})
    empty = _locate(shared_world, {})

    for findings in (nobody, unused, empty):
        assert findings.targets == ()
        assert findings.derived == {}
        assert findings.total == 0


def test_batching_gives_the_same_findings(shared_world: SqlWorld) -> None:
    whole = _locate(shared_world, shared_world.subject)
    batched = _locate(shared_world, shared_world.subject, batch_size=2)
    single = _locate(shared_world, shared_world.subject, batch_size=1)

    assert batched == whole
    assert single == whole


def _grow_subject(world: SqlWorld, extra: int) -> None:
    """Give the subject ``extra`` more orders (each with an item) and login events."""
    md = world.metadata
    with world.engine.begin() as conn:
        conn.execute(
            md.tables["orders"].insert(),
            [
                {
                    "id": 10_000 + i,
                    "customer_id": 1,
                    "shipping_address": "1 Example Street",
                    "ordered_at": T0,
                    "total": 1,
                }
                for i in range(extra)
            ],
        )
        conn.execute(
            md.tables["order_items"].insert(),
            [
                {"order_id": 10_000 + i, "line_no": 1, "sku": "SKU-1", "quantity": 1}
                for i in range(extra)
            ],
        )
        conn.execute(
            md.tables["login_events"].insert(),
            [
                {
                    "id": 10_000 + i,
                    "customer_id": 1,
                    "ip_address": "192.0.2.1",
                    "occurred_at": T0,
                }
                for i in range(extra)
            ],
        )


def _count(world: SqlWorld, schema: StoreSchema, batch_size: int) -> tuple[int, Findings]:
    with count_statements(world.engine) as statements:
        findings = locate(world.engine, schema, world.store, world.subject, batch_size)
    return len(statements), findings


def test_statements_grow_with_batches_not_rows(sql_world: SqlWorld) -> None:
    schema = reflect_store(sql_world.engine, sql_world.store)
    small, _ = _count(sql_world, schema, 1000)

    _grow_subject(sql_world, 250)
    large, findings = _count(sql_world, schema, 1000)
    assert findings.counts()["orders"] == 252
    assert findings.counts()["order_items"] == 253
    # The subject now has ~500 more rows, yet the same statements run (one per table or
    # edge per batch, per level).
    assert large == small
    assert small <= 2 * len(schema.edges) + len(schema.tables)

    # With batches of 100, only the tables holding the new rows need more statements:
    # orders' 252 keys are 3 batches for each edge into orders.
    batched, same = _count(sql_world, schema, 100)
    assert same == findings
    assert small < batched <= small + 2 * 2 * len(schema.edges_into("orders")) + 4


def test_connector_locates_with_index_warnings_computed_once(shared_world: SqlWorld) -> None:
    connector = SqlConnector(
        shared_world.store, shared_world.policy, keys=KEYS, engine=shared_world.engine
    )
    first = connector.locate(shared_world.subject)
    with count_statements(shared_world.engine) as statements:
        second = connector.locate(shared_world.subject)

    assert _found(first) == shared_world.expected
    assert second == first
    # Reflection and the index check ran once: the second locate only selects rows.
    selects = [s for s in statements if s.strip().upper() != "BEGIN"]  # SQLite's own BEGIN
    assert all(s.lstrip().upper().startswith("SELECT") for s in selects)
    assert not any("pg_indexes" in s or "sqlite_master" in s for s in statements)
    warned = " ".join(first.warnings)
    assert "table 'support_tickets'" in warned
    assert "(customer_id)" in warned
    for warning in first.warnings:
        assert "example.com" not in warning.lower()
    connector.close()
    assert shared_world.engine.pool is not None  # an injected engine is left to its owner


def test_registry_builds_the_sql_connector(shared_world: SqlWorld) -> None:
    connector: Connector = connector_for(shared_world.store, shared_world.policy, KEYS)
    try:
        assert isinstance(connector, SqlConnector)  # flows branch on capabilities instead
        assert connector.name == "crm"
        assert connector.capabilities.kind == "sql"
        assert connector.capabilities.derives_identities
        assert _found(connector.locate(shared_world.subject)) == shared_world.expected
    finally:
        connector.close()


def test_connector_reports_schema_mismatch_as_config_error(shared_world: SqlWorld) -> None:
    tables = copy.deepcopy(INVENTORY_TABLES)
    tables[0]["fields"]["nickname"] = ["contact"]
    connector = SqlConnector(
        make_store(shared_world.url, tables),
        shared_world.policy,
        keys=KEYS,
        engine=shared_world.engine,
    )
    with pytest.raises(ConfigError) as caught:
        connector.locate(shared_world.subject)
    assert caught.value.problems == [
        "store 'crm', table 'customers': unknown column 'nickname' in fields"
    ]


def test_case_insensitive_email_uses_lower_only_where_the_collation_needs_it(
    shared_world: SqlWorld,
) -> None:
    schema = reflect_store(shared_world.engine, shared_world.store)
    with count_statements(shared_world.engine) as statements:
        locate(shared_world.engine, schema, shared_world.store, shared_world.subject)

    seed = next(s for s in statements if "email" in s and "customers" in s)
    if schema.is_mysql:
        # The _ci collation already ignores case: the column is compared as it is, so its
        # index is used; lower() in the binary collation only keeps accents apart.
        assert "customers.email in (" in seed.lower()
        assert "lower(customers.email) collate utf8mb4_bin" in seed.lower()
    else:
        assert "lower(customers.email)" in seed.lower()


def test_connector_round_trip_erases_exactly_the_subject(sql_world: SqlWorld) -> None:
    # Through the connector: locate, plan, execute (with secure erasure), verify, rectify.
    connector = SqlConnector(sql_world.store, sql_world.policy, keys=KEYS)
    try:
        bob = connector.locate(sql_world.other)
        assert connector.rectify(bob, {"orders.shipping_address": "2 Example Road"})
        findings = connector.locate(sql_world.subject)
        before = sql_world.snapshot()
        plan = connector.plan_erasure(findings, "2026-01-01")
        batches: list[str] = []
        results = connector.execute(plan, lambda batch: batches.append(batch.target))
        verification = connector.verify(sql_world.subject, plan)
    finally:
        connector.close()

    assert verification.clean
    assert verification.masked == {"invoices": 2}
    assert batches == [r.target for r in results]
    after = sql_world.snapshot()
    gone = {t: k for t, k in sql_world.expected.items() if t not in ("invoices", "customers")}
    expected = sql_world.snapshot_without(before, gone)
    for table in ("orders", "order_items", "support_tickets", "consents", "login_events"):
        assert after[table] == expected[table], table
    assert len(after["invoices"]) == len(before["invoices"])  # masked, kept for tax law
    assert len(after["customers"]) == len(before["customers"]) - 1
    addresses = {r[2] for r in after["orders"] if r[1] == 2}
    assert addresses == {"2 Example Road"}  # Bob's rectified orders are untouched
