"""``locate_many``: per subject exactly what ``locate`` finds, in set-based statements.

On SQLite, PostgreSQL and MariaDB, over four schemas: the demo CRM (``demo.seed_sql``),
the shop of ``trap_world`` (a household's shared address, an order paid with another
person's card, two subject tables, a keyless table), the CRM-shaped test store of
``conftest`` (self-references, a cycle, derived identities, multi-hop references) and a
table of identities that differ only in case or accents. Every batch mixes subjects
with no rows, duplicates, spellings differing in case, several identities at once and
identities derived by a first pass. Findings are compared field by field with a loop of
``locate``. Statements are counted with SQLAlchemy's ``before_cursor_execute`` event.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy import Engine

from config.loader import load_config
from config.schema import Policy
from config.settings import PROJECT_ROOT
from connectors.base import BatchLocating, Findings, Identities, merge_identities
from connectors.registry import supports
from connectors.sql.config import SqlStore
from connectors.sql.connector import SqlConnector
from connectors.sql.locate import locate
from connectors.sql.locate_many import locate_many
from connectors.sql.schema import StoreSchema
from core.engines import make_engine
from core.keys import KeyRing
from demo.seed_sql import seed_crm
from tests.connectors.sql import trap_world
from tests.connectors.sql.conftest import SqlWorld, count_statements

KEYS = KeyRing.from_master(b"k" * 32)
NOBODY = "nobody@example.com"


def by_email(*emails: str) -> Identities:
    return {"email": frozenset(emails)}


def assert_same(connector: SqlConnector, subjects: Sequence[Identities]) -> list[Findings]:
    """``locate_many`` against a loop of ``locate``, field by field; the batch's findings."""
    many = connector.locate_many(subjects)
    assert len(many) == len(subjects)
    for i, (got, identities) in enumerate(zip(many, subjects, strict=True)):
        want = connector.locate(identities)
        assert got.store == want.store, i
        assert got.targets == want.targets, i
        assert got.derived == want.derived, i
        assert got.warnings == want.warnings, i
        assert got == want, i
    return many


def with_derived(subjects: Sequence[Identities], found: Sequence[Findings]) -> list[Identities]:
    """A second pass: each subject's identities plus what the first one derived."""
    return [merge_identities(s, f.derived) for s, f in zip(subjects, found, strict=True)]


# -- the demo CRM ------------------------------------------------------------------------

DEMO_CUSTOMERS = 250


@pytest.fixture
def demo_crm(db_url: str) -> Iterator[tuple[SqlConnector, list[tuple[str, str]]]]:
    """The demo CRM (``config/demo``) in ``db_url``; its (email, customer number) by id."""
    seed_crm(db_url, customers=DEMO_CUSTOMERS)
    config = load_config(PROJECT_ROOT / "config" / "demo")
    store = config.store("crm")
    assert isinstance(store, SqlStore)
    store = store.model_copy(update={"url": SecretStr(db_url)})
    connector = SqlConnector(store, config.policy, keys=KEYS)
    with connector.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT email, customer_number FROM customers ORDER BY id"))
        people = [(str(e), str(n)) for e, n in rows]
    try:
        yield connector, people
    finally:
        connector.close()


def demo_subjects(people: Sequence[tuple[str, str]]) -> list[Identities]:
    """About fifty subjects of every kind a batch may hold."""
    demo = next(e for e, _ in people if e == "Demo.Subject@example.com")
    subjects: list[Identities] = [by_email(e.lower()) for e, _ in people[:30]]
    subjects += [{"customer_number": frozenset({n})} for _, n in people[30:36]]
    subjects += [
        by_email(NOBODY),  # no rows
        {"customer_number": frozenset({"C9999999"})},  # no rows
        {},  # no identities at all
        {"phone": frozenset({"+49 30 1234567"})},  # a kind the store does not search by
        by_email(demo.lower()),  # stored in mixed case
        by_email(demo.upper()),  # the same person again, spelled differently
        by_email(demo.lower()),  # an exact duplicate
        by_email(people[0][0], people[0][0].upper(), NOBODY),
        {"email": frozenset({people[40][0]}), "customer_number": frozenset({people[41][1]})},
        {"email": frozenset({people[42][0]}), "customer_number": frozenset({people[42][1]})},
        by_email(*(e for e, _ in people[43:48])),  # one request naming five addresses
        by_email(people[1][0]),  # also in the first thirty
    ]
    return subjects


def test_demo_crm_batch_equals_one_by_one(
    demo_crm: tuple[SqlConnector, list[tuple[str, str]]],
) -> None:
    connector, people = demo_crm
    assert supports(connector, BatchLocating)
    subjects = demo_subjects(people)
    assert len(subjects) >= 45
    found = assert_same(connector, subjects)
    assert not found[30 + 6].targets  # nobody
    assert found[40] == found[41] == found[42]  # one person, spelled three ways
    assert found[40].counts()["customers"] == 1
    assert_same(connector, with_derived(subjects, found))  # derived identities fed back


def _statements(
    engine: Engine, schema: StoreSchema, store: SqlStore, subjects: Sequence[Identities], **kw: Any
) -> tuple[int, list[Findings]]:
    with count_statements(engine) as statements:
        found = locate_many(engine, schema, store, subjects, 1000, **kw)
    return len([s for s in statements if s.strip().upper() != "BEGIN"]), found


def test_demo_crm_statements_do_not_grow_with_subjects(
    demo_crm: tuple[SqlConnector, list[tuple[str, str]]],
) -> None:
    connector, people = demo_crm
    engine, schema, store = connector.engine, connector.schema, connector.store
    demo = by_email("demo.subject@example.com")  # has rows in every table
    few = [demo, *(by_email(e) for e, _ in people[:9])]
    many = [demo, *(by_email(e) for e, _ in people[:199])]

    ten, _ = _statements(engine, schema, store, few)
    two_hundred, found = _statements(engine, schema, store, many)
    assert ten == two_hundred
    # Seeds by e-mail, then one level per hop of the walk (orders, tickets, invoices and
    # logins; then order items): one statement per reference, no more.
    assert two_hundred <= 1 + len(schema.edges)
    assert sum(f.total for f in found) > 5 * two_hundred

    with count_statements(engine) as statements:
        for subject in many:
            locate(engine, schema, store, subject, 1000)
    assert len(statements) >= 10 * two_hundred

    # Chunks of 50 subjects: the statements of four batches located one after the other.
    chunked, same = _statements(engine, schema, store, many, subjects_per_chunk=50)
    assert same == found
    per_chunk = [_statements(engine, schema, store, many[i : i + 50])[0] for i in (0, 50, 100, 150)]
    assert chunked == sum(per_chunk) > two_hundred


def test_key_batches_bound_every_in_list(
    demo_crm: tuple[SqlConnector, list[tuple[str, str]]],
) -> None:
    """With batches of 7 keys, more statements run and the findings stay the same."""
    connector, people = demo_crm
    engine, schema, store = connector.engine, connector.schema, connector.store
    subjects = [by_email(e) for e, _ in people[:60]]
    sizes: list[int] = []

    def _bound(_conn: Any, _cursor: Any, _statement: str, parameters: Any, *_rest: Any) -> None:
        sizes.append(len(parameters or ()))

    wide = locate_many(engine, schema, store, subjects, 1000)
    sa.event.listen(engine, "before_cursor_execute", _bound)
    try:
        narrow = locate_many(engine, schema, store, subjects, 7)
    finally:
        sa.event.remove(engine, "before_cursor_execute", _bound)
    assert narrow == wide
    assert len(sizes) > 6
    # 7 values; on MariaDB a case-insensitive e-mail binds each value and its variant.
    assert max(sizes) <= 2 * 7


# -- households, shared rows, another person's card --------------------------------------


@pytest.fixture
def shop(db_url: str) -> Iterator[trap_world.TrapWorld]:
    world = trap_world.build_world(db_url)
    # Another member of Dave's household, stored in upper case with a non-ASCII letter
    # (MariaDB's collation would also match it without the accent), and one of Carol's.
    world.insert(
        "customers", trap_world._customer(901, "JÜRGEN@Example.com", "J", None, 14, agent=None)
    )
    world.insert(
        "customers", trap_world._customer(902, "juergen@example.com", "K", None, 13, agent=None)
    )
    try:
        yield world
    finally:
        world.engine.dispose()


def test_households_and_case_folding_equal_one_by_one(shop: trap_world.TrapWorld) -> None:
    connector = SqlConnector(shop.store, shop.policy, keys=KEYS, engine=shop.engine)
    named = [trap_world.ALICE_EMAIL, trap_world.BOB_EMAIL, "carol@example.com", "dave@example.com"]
    unrelated = [trap_world._unrelated_email(n).lower() for n in range(trap_world.UNRELATED)]
    subjects: list[Identities] = [by_email(e) for e in named + unrelated]
    subjects += [
        by_email("ALICE@EXAMPLE.COM"),  # Alice again, other case
        by_email(trap_world.ALICE_EMAIL),  # Alice again, duplicate
        by_email(trap_world.ALICE_EMAIL, trap_world.BOB_EMAIL),  # the household at once
        by_email("agent.one@example.com"),  # another subject table
        by_email("malice@example.com"),
        by_email("jürgen@example.com"),
        by_email("JÜRGEN@EXAMPLE.COM"),
        by_email("jurgen@example.com"),  # without the accent: no one
        by_email(NOBODY),
        {},
    ]
    found = assert_same(connector, subjects)
    assert_same(connector, list(reversed(subjects)))  # the order of the batch is irrelevant

    def linked(findings: Findings, table: str) -> tuple[Any, ...]:
        return next((t.linked for t in findings.targets if t.target == table), ())

    alice, bob = found[0], found[1]
    neighbour = found[4 + trap_world.NEIGHBOUR]
    for person in (alice, bob, neighbour):  # the shared address is in each one's findings
        assert (trap_world.H1,) in linked(person, "addresses")
    cards = next(t for t in alice.targets if t.target == "cards")
    assert cards.withheld == ((trap_world.CB,),)  # Bob's card on Alice's order
    assert found[-5] == found[-4] != found[-3]
    assert found[-3].total == 0
    connector.close()


# -- self-references, cycles, keyless tables, derived identities -------------------------


def test_references_of_every_shape_equal_one_by_one(sql_world: SqlWorld) -> None:
    connector = SqlConnector(
        sql_world.store, sql_world.policy, keys=KEYS, engine=sql_world.engine, batch_size=3
    )
    with sql_world.engine.connect() as conn:
        people = list(conn.execute(sa.text("SELECT email, customer_number FROM customers")))
    subjects: list[Identities] = [by_email(str(e).upper()) for e, _ in people]
    subjects += [
        sql_world.subject,
        sql_world.subject_by_number,
        sql_world.other,
        merge_identities(sql_world.subject, sql_world.other),
        {"customer_number": frozenset({"c-0001"})},  # case-sensitive: no one
        by_email(NOBODY),
    ]
    found = assert_same(connector, subjects)  # batches of 3 keys: every step in several
    assert_same(connector, with_derived(subjects, found))


# -- identity values differing only in case or accents ------------------------------------

PEOPLE = [
    {"id": 1, "email": "jürgen@example.com", "code": "K-100"},
    {"id": 2, "email": "jurgen@example.com", "code": "k-100"},
    {"id": 3, "email": "ZOË.ÄRGER@EXAMPLE.COM", "code": "Ä-7"},
    {"id": 4, "email": "[redacted]", "code": "[redacted]"},
]
SPELLINGS = [
    "jürgen@example.com",
    "JÜRGEN@EXAMPLE.COM",
    "jurgen@example.com",
    "zoë.ärger@example.com",
    "zoe.arger@example.com",
    "[REDACTED]",
]
CODES = ["K-100", "k-100", "Ä-7", "ä-7", "[redacted]"]


def _people(url: str, collation: str | None) -> tuple[Engine, SqlStore]:
    engine = make_engine(url)
    md = sa.MetaData()
    table = sa.Table(
        "people",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(120), nullable=False, index=True),
        sa.Column("code", sa.String(40, collation=collation), nullable=False, index=True),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), PEOPLE)
    store = SqlStore.model_validate(
        {
            "type": "sql",
            "name": "people",
            "url": url,
            "region": "eu-central-1",
            "tables": [
                {
                    "name": "people",
                    "identity": [
                        {"column": "email", "kind": "email", "case_insensitive": True},
                        {"column": "code", "kind": "customer_number"},
                    ],
                    "fields": {"email": ["contact"]},
                }
            ],
        }
    )
    return engine, store


def test_spellings_are_attributed_as_each_subject_matches(db_url: str) -> None:
    engine, store = _people(db_url, None)
    subjects = [by_email(s) for s in SPELLINGS]
    subjects += [{"customer_number": frozenset({c})} for c in CODES]
    subjects += [{"email": frozenset(SPELLINGS), "customer_number": frozenset(CODES)}]
    connector = SqlConnector(store, trap_world_policy(), keys=KEYS, engine=engine)
    try:
        found = assert_same(connector, subjects)
        ids = [{k[0] for t in f.targets for k in t.keys} for f in found]
        assert ids[:6] == [{1}, {1}, {2}, {3}, set(), set()]
        assert ids[6:8] == [{1}, {2}]  # codes are case-sensitive
    finally:
        engine.dispose()


def test_a_collation_matching_more_falls_back_to_each_subject(tmp_path: Any) -> None:
    """SQLite NOCASE on a case-sensitive identity: the database matches more than the
    attribution explains, so that step runs per subject and the result stays exact."""
    engine, store = _people(f"sqlite:///{tmp_path / 'people.db'}", "NOCASE")
    connector = SqlConnector(store, trap_world_policy(), keys=KEYS, engine=engine)
    subjects = [{"customer_number": frozenset({"k-100"})}, {"customer_number": frozenset({"Ä-7"})}]
    try:
        found = assert_same(connector, subjects)
        assert {k[0] for t in found[0].targets for k in t.keys} == {1, 2}
    finally:
        engine.dispose()


def trap_world_policy() -> Policy:
    return Policy.model_validate(trap_world.POLICY)


def test_an_empty_batch_runs_no_statement(
    demo_crm: tuple[SqlConnector, list[tuple[str, str]]],
) -> None:
    connector, _ = demo_crm
    connector.locate_many([by_email(NOBODY)])  # reflects the schema, checks indexes
    with count_statements(connector.engine) as statements:
        assert connector.locate_many([]) == []
    assert not [s for s in statements if s.strip().upper() != "BEGIN"]
