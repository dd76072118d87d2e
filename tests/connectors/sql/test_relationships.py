"""Owned, linked and shared rows (README, "References") on a schema the product never saw.

The shop in ``trap_world`` shares a household address between Alice and Bob, has Alice's
order paid with Bob's card, keeps invoices for tax law, has a keyless table, a catalogue
and an undeclared table holding a foreign key. Every expectation below is derived by hand
from the README's rules and written out row by row; the whole database is compared after
every erasure, so a row touched by mistake anywhere fails the test. Runs through
``SqlConnector`` on SQLite, PostgreSQL and MariaDB (one database per backend, refilled
before each test).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pprint import pformat
from typing import Any

import pytest

from connectors.base import (
    Action,
    BatchResult,
    Identities,
    Key,
    StorePlan,
    Verification,
    keys_digest,
)
from connectors.sql.config import SqlStore
from connectors.sql.connector import SqlConnector
from core.errors import ConfigError, TerminalError
from core.keys import KeyRing
from tests.conftest import _fresh_database
from tests.connectors.sql.trap_world import (
    ALICE,
    ALICE_EMAIL,
    BOB,
    BOB_EMAIL,
    CA,
    CAROL,
    CAROL_EMAIL,
    CB,
    CC,
    DAVE,
    DAVE_EMAIL,
    G1,
    H1,
    H2,
    H3,
    H4,
    I1,
    LOYALTY_DAVE,
    LOYALTY_FK,
    O1,
    O2,
    O3,
    O4,
    O5,
    PAY1,
    PAY2,
    PAY3,
    PAY4,
    PAY5,
    STORE,
    TAX1,
    TOKEN,
    ExpectedDb,
    Tables,
    TrapWorld,
    build_world,
    expected_db,
    key_of,
    make_store,
    rows_of,
    take_token,
)

KEYS = KeyRing.from_master(b"k" * 32)
TODAY = "2026-03-01"
REDACTED = "[redacted]"
OUTSIDE = "referenced by rows outside this request"
ANOTHER_PERSON = "belongs to another person"

_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", marks=pytest.mark.service, id="postgresql"),
    pytest.param("mariadb", marks=pytest.mark.service, id="mariadb"),
]


@pytest.fixture(scope="module", params=_BACKENDS)
def _shop_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrapWorld]:
    """The shop's schema, built once per backend for this module."""
    backend = str(request.param)
    if backend == "sqlite":
        world = build_world(f"sqlite:///{tmp_path_factory.mktemp('shop')}/shop.sqlite")
        try:
            yield world
        finally:
            world.engine.dispose()
        return
    databases = _fresh_database(backend)  # created here, dropped when closed below
    try:
        world = build_world(next(databases))
        try:
            yield world
        finally:
            world.engine.dispose()
    finally:
        assert isinstance(databases, Generator)
        databases.close()


@pytest.fixture
def shop(_shop_db: TrapWorld) -> TrapWorld:
    """The shop with exactly its seed rows (tests change it)."""
    _shop_db.reset()
    return _shop_db


def by_email(email: str) -> Identities:
    return {"email": frozenset({email})}


@contextmanager
def connected(world: TrapWorld, store: SqlStore | None = None) -> Iterator[SqlConnector]:
    connector = SqlConnector(store or world.store, world.policy, keys=KEYS, engine=world.engine)
    try:
        yield connector
    finally:
        connector.close()


def export(world: TrapWorld, identities: Identities) -> Tables:
    """What an access request exports, per table, rows sorted by key."""
    with connected(world) as connector:
        items = list(connector.export(connector.locate(identities)))
    assert {item.store for item in items} <= {STORE}
    exported: Tables = {}
    for item in items:
        exported.setdefault(item.target, []).append(dict(item.data))
    return {t: sorted(rows, key=lambda r: key_of(t, r)) for t, rows in exported.items()}


@dataclass
class Erasure:
    plan: StorePlan
    results: list[BatchResult]
    reported: list[BatchResult]  # what on_batch (the ledger) was told
    verification: Verification


def erase(
    world: TrapWorld, identities: Identities, before_execute: Callable[[], None] | None = None
) -> Erasure:
    """Locate, plan, (wait: ``before_execute``), execute and verify, through the connector."""
    with connected(world) as connector:
        plan = connector.plan_erasure(connector.locate(identities), TODAY)
        if before_execute is not None:
            before_execute()
        reported: list[BatchResult] = []
        results = connector.execute(plan, reported.append)
        verification = connector.verify(identities, plan)
    return Erasure(plan, results, reported, verification)


def affected(results: list[BatchResult], action: Action) -> dict[str, int]:
    """Rows ``action`` changed per table (tables with none left out)."""
    totals: dict[str, int] = {}
    for result in results:
        if result.action == action:
            totals[result.target] = totals.get(result.target, 0) + result.affected
    return {t: n for t, n in sorted(totals.items()) if n}


def step_keys(plan: StorePlan, target: str, action: Action, reason: str = "") -> set[Key]:
    """Keys of ``plan``'s ``action`` steps on ``target`` whose reason mentions ``reason``."""
    return {
        tuple(k)
        for s in plan.steps
        if s.target == target and s.action == action and reason in (s.reason or "")
        for k in s.keys
    }


def assert_db(actual: Tables, expected: Tables) -> None:
    """The whole database equals ``expected``; a failure lists the differing rows per table."""
    differences = {
        table: {
            "unexpected": [r for r in actual.get(table, []) if r not in rows],
            "missing": [r for r in rows if r not in actual.get(table, [])],
        }
        for table, rows in expected.items()
        if actual.get(table) != rows
    }
    assert set(actual) == set(expected)
    assert not differences, pformat(differences, width=100)


def assert_clean(erasure: Erasure) -> None:
    assert erasure.reported == erasure.results
    assert erasure.verification.clean, erasure.verification.remaining


# --- access --------------------------------------------------------------------------


def access_expectation(subject: str) -> Tables:
    """Owned rows and linked rows (products apart), by hand from the README's rules.

    Owned: the customers row (identity), then through ``holders`` references: cards,
    orders, consents (declared reference) and invoices (customer_id), order_lines and
    payments (order_id), tax_records (invoice_id). Linked, one hop through ``target``
    references from owned rows: addresses (home, billing, shipping) and cards the orders
    and payments point at. Withheld: a linked card whose customer_id is someone else
    (Alice's O1 and its payment point at Bob's CB). Never: agents (a subject table: the
    customers.agent_id reference is ``none``), loyalty_points (not in the inventory), and
    nothing reached from a linked row (H1's other residents, the neighbour's order
    shipped to H1, Alice's O1 from Bob's card CB).
    """
    expected: dict[str, Tables] = {
        ALICE_EMAIL: {
            "customers": rows_of("customers", ALICE),
            "addresses": rows_of("addresses", H1, H2),
            "cards": rows_of("cards", CA),  # not CB: Bob's
            "orders": rows_of("orders", O1, O2),
            "order_lines": rows_of("order_lines", (O1, 1), (O1, 2), (O2, 1), (O2, 2)),
            "payments": rows_of("payments", PAY1, PAY2),
            "invoices": rows_of("invoices", I1),
            "tax_records": rows_of("tax_records", TAX1),
            "consents": rows_of("consents", (ALICE, "marketing")),
        },
        BOB_EMAIL: {  # CB is Bob's own; O1 and PAY1 point at it but are Alice's
            "customers": rows_of("customers", BOB),
            "addresses": rows_of("addresses", H1),
            "cards": rows_of("cards", CB),
            "orders": rows_of("orders", O3),
            "order_lines": rows_of("order_lines", (O3, 1), (O3, 2)),
            "payments": rows_of("payments", PAY3),
            "consents": rows_of("consents", (BOB, "marketing")),
        },
        CAROL_EMAIL: {
            "customers": rows_of("customers", CAROL),
            "addresses": rows_of("addresses", H3),
            "cards": rows_of("cards", CC),
            "orders": rows_of("orders", O4),
            "order_lines": rows_of("order_lines", (O4, 1), (O4, 2)),
            "payments": rows_of("payments", PAY4),
            "consents": rows_of("consents", (CAROL, "newsletter")),
        },
        DAVE_EMAIL: {  # his loyalty_points row is in no declared table
            "customers": rows_of("customers", DAVE),
            "addresses": rows_of("addresses", H4),
            "orders": rows_of("orders", O5),
            "order_lines": rows_of("order_lines", (O5, 1)),
            "payments": rows_of("payments", PAY5),
        },
    }
    return expected[subject]


@pytest.mark.parametrize("email", [ALICE_EMAIL, BOB_EMAIL, CAROL_EMAIL, DAVE_EMAIL])
def test_access_exports_owned_and_linked_rows_and_nothing_of_anyone_else(
    shop: TrapWorld, email: str
) -> None:
    exported = export(shop, by_email(email))

    assert exported == access_expectation(email)


def test_access_leaves_out_the_catalogue_rows_the_subjects_lines_point_at(
    shop: TrapWorld,
) -> None:
    # README, "References": a table without personal fields (the product catalogue) is
    # never linked: its rows say nothing about the subject, so the package has none of them
    # although every subject's order lines point at products.
    exported = {
        email: export(shop, by_email(email)).get("products")
        for email in (ALICE_EMAIL, BOB_EMAIL, CAROL_EMAIL, DAVE_EMAIL)
    }
    assert exported == dict.fromkeys((ALICE_EMAIL, BOB_EMAIL, CAROL_EMAIL, DAVE_EMAIL))


def test_access_spells_the_email_any_way_and_finds_no_near_misses(shop: TrapWorld) -> None:
    # Stored "Alice@Example.com"; an unrelated "Malice@Example.com" and a namesake exist.
    assert export(shop, by_email("ALICE@example.COM")) == export(shop, by_email(ALICE_EMAIL))
    assert export(shop, by_email("lice@example.com")) == {}


# --- erasure -------------------------------------------------------------------------


def test_erasing_alice_keeps_the_household_address_bobs_card_and_the_invoice(
    shop: TrapWorld,
) -> None:
    erasure = erase(shop, by_email(ALICE_EMAIL))

    after = shop.snapshot()
    take_token(after, "customers", ALICE, "email")  # UNIQUE, NOT NULL identity: a token
    expected = (
        ExpectedDb()
        # Masked, not deleted: the kept invoice I1 references it (customer_id NOT NULL).
        # Her link to the household address goes; the agent is another person's row.
        .change(
            "customers",
            ALICE,
            email=TOKEN,
            full_name=REDACTED,
            phone=None,
            home_address_id=None,
            agent_id=G1,
        )
        .drop("cards", CA)
        .drop("orders", O1, O2)
        .drop("order_lines", (O1, 1), (O1, 2), (O2, 1), (O2, 2))
        .drop("payments", PAY1, PAY2)
        # billing_name is kept (tax law); billing_email is contact: masked with NULL;
        # order_id no longer points at the deleted O1.
        .change("invoices", I1, billing_email=None, order_id=None)
        .drop("consents", (ALICE, "marketing"))
        # H2 is linked to Alice alone; H1 is Bob's home too (and the neighbour's parcel's).
        .drop("addresses", H2)
    )
    assert_db(after, expected.tables)  # tax record, H1, CB, products, agents: unchanged

    assert step_keys(erasure.plan, "addresses", Action.KEEP, OUTSIDE) == {(H1,)}
    assert step_keys(erasure.plan, "cards", Action.KEEP, ANOTHER_PERSON) == {(CB,)}
    assert affected(erasure.reported, Action.DELETE) == {
        "addresses": 1,
        "cards": 1,
        "consents": 1,
        "order_lines": 4,
        "orders": 2,
        "payments": 2,
    }
    assert affected(erasure.reported, Action.MASK) == {"customers": 1, "invoices": 1}
    assert_clean(erasure)


def test_erasing_bob_keeps_his_card_that_alices_order_was_paid_with(shop: TrapWorld) -> None:
    erasure = erase(shop, by_email(BOB_EMAIL))

    after = shop.snapshot()
    take_token(after, "customers", BOB, "email")
    expected = (
        ExpectedDb()
        # CB stays (Alice's O1 and its payment reference it), and CB references Bob's
        # row (customer_id NOT NULL): so his row is masked instead of deleted. As for
        # Alice, the masked row keeps no link to the household address: Alice and Bob
        # stand alike towards H1 (shared, kept), so the outcome cannot depend on whether
        # some other address of theirs (Alice's H2) happened to be deleted.
        .change(
            "customers",
            BOB,
            email=TOKEN,
            full_name=REDACTED,
            phone=None,
            home_address_id=None,
            agent_id=G1,
        )
        .drop("orders", O3)
        .drop("order_lines", (O3, 1), (O3, 2))
        .drop("payments", PAY3)
        .drop("consents", (BOB, "marketing"))
    )
    assert_db(after, expected.tables)  # CB and H1 unchanged

    assert step_keys(erasure.plan, "cards", Action.KEEP, OUTSIDE) == {(CB,)}
    assert step_keys(erasure.plan, "addresses", Action.KEEP, OUTSIDE) == {(H1,)}
    assert affected(erasure.reported, Action.DELETE) == {
        "consents": 1,
        "order_lines": 2,
        "orders": 1,
        "payments": 1,
    }
    assert affected(erasure.reported, Action.MASK) == {"customers": 1}
    assert_clean(erasure)


def carol_erased() -> ExpectedDb:
    """Carol shares nothing: every row of hers and H3 and CC go; P4 (hers alone) stays."""
    return (
        ExpectedDb()
        .drop("customers", CAROL)
        .drop("cards", CC)
        .drop("orders", O4)
        .drop("order_lines", (O4, 1), (O4, 2))
        .drop("payments", PAY4)
        .drop("consents", (CAROL, "newsletter"))
        .drop("addresses", H3)
    )


def test_erasing_carol_removes_all_of_hers_and_nothing_else(shop: TrapWorld) -> None:
    erasure = erase(shop, by_email(CAROL_EMAIL))

    assert_db(shop.snapshot(), carol_erased().tables)
    assert affected(erasure.reported, Action.DELETE) == {
        "addresses": 1,
        "cards": 1,
        "consents": 1,
        "customers": 1,
        "order_lines": 2,
        "orders": 1,
        "payments": 1,
    }
    assert affected(erasure.reported, Action.MASK) == {}
    assert_clean(erasure)


def test_rectifying_an_address_rewrites_hers_alone_never_the_household_one(
    shop: TrapWorld,
) -> None:
    # Alice's own billing address H2 takes the correction; H1 is Bob's home too, so one
    # person's correction must not rewrite it (reported as kept, like an erasure keeps it).
    with connected(shop) as connector:
        results = connector.rectify(
            connector.locate(by_email(ALICE_EMAIL)), {"addresses.city": "Potsdam"}
        )

    assert_db(shop.snapshot(), ExpectedDb().change("addresses", H2, city="Potsdam").tables)
    assert affected(results, Action.RECTIFY) == {"addresses": 1}
    assert affected(results, Action.KEEP) == {"addresses": 1}


def test_masks_cannot_be_found_again_and_erasing_again_changes_nothing(shop: TrapWorld) -> None:
    erase(shop, by_email(ALICE_EMAIL))
    erased = shop.snapshot()
    token = take_token(shop.snapshot(), "customers", ALICE, "email")

    # The e-mail identity is case-insensitive: the upper-case token is the same lookup.
    with connected(shop) as connector:
        for value in (token, token.upper(), REDACTED, ALICE_EMAIL):
            findings = connector.locate(by_email(value))
            assert findings.targets == (), value
            assert list(connector.export(findings)) == [], value

    for identities in (by_email(ALICE_EMAIL), by_email(token)):
        again = erase(shop, identities)
        assert_db(shop.snapshot(), erased)
        for action in (Action.DELETE, Action.MASK, Action.UNLINK):
            assert affected(again.reported, action) == {}
        assert_clean(again)


def test_an_undeclared_table_referencing_the_subject_stops_the_erasure(shop: TrapWorld) -> None:
    before = shop.snapshot()
    reported: list[BatchResult] = []

    with connected(shop) as connector:
        findings = connector.locate(by_email(DAVE_EMAIL))
        with pytest.raises(TerminalError) as caught:
            plan = connector.plan_erasure(findings, TODAY)
            connector.execute(plan, reported.append)

    error = caught.value
    text = f"{error.message} {error.fields!r}"
    assert "customers" in error.message
    assert "loyalty_points" in error.message
    if shop.backend != "sqlite":  # SQLite reports no constraint name
        assert LOYALTY_FK in error.message
    for personal in ("dave", "example.com", "@"):
        assert personal not in text.lower()
    assert not re.search(rf"\b({DAVE}|{LOYALTY_DAVE}|{O5}|{PAY5}|{H4})\b", text)
    assert reported == []
    assert_db(shop.snapshot(), before)


def test_a_reference_added_while_the_plan_waited_keeps_the_shared_row(shop: TrapWorld) -> None:
    newcomer: dict[str, Any] = {
        "id": 150,
        "email": "newcomer@example.com",
        "full_name": "New Neighbour",
        "phone": None,
        "home_address_id": H3,
        "agent_id": None,
    }

    erasure = erase(shop, by_email(CAROL_EMAIL), lambda: shop.insert("customers", newcomer))

    # When planned, H3 was Carol's alone and planned for deletion.
    assert (H3,) in step_keys(erasure.plan, "addresses", Action.DELETE)
    # Inside the erasure's transaction the newcomer's reference is seen: H3 is kept.
    expected = carol_erased().add("addresses", rows_of("addresses", H3)[0])
    assert_db(shop.snapshot(), expected.add("customers", newcomer).tables)
    kept = [r for r in erasure.reported if r.target == "addresses" and r.action == Action.KEEP]
    assert [(r.affected, r.keys_digest) for r in kept] == [(1, keys_digest([(H3,)]))]
    assert "addresses" not in affected(erasure.reported, Action.DELETE)
    assert_clean(erasure)


def test_payments_without_follow_is_ambiguous_and_refused_before_anything_runs(
    shop: TrapWorld,
) -> None:
    before = shop.snapshot()
    store = make_store(shop.url, annotate_payments=False)

    with connected(shop, store) as connector, pytest.raises(ConfigError) as caught:
        connector.locate(by_email(CAROL_EMAIL))

    problems = caught.value.problems
    text = "\n".join([caught.value.message, *problems])
    for name in ("payments", "order_id", "card_id", "follow"):
        assert name in text
    # Only payments is ambiguous: orders, cards and invoices have one reference to a
    # subject table; order_lines and tax_records one to an owned table.
    assert problems
    assert all("payments" in p for p in problems), problems
    assert_db(shop.snapshot(), before)


def test_the_seed_is_what_the_expectations_start_from(shop: TrapWorld) -> None:
    # The builder itself: every table as written in trap_world, on every backend.
    assert_db(shop.snapshot(), expected_db())
    assert len(expected_db()["customers"]) == 24
