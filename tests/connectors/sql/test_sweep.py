"""Retention sweeps on SQL tables, on SQLite, PostgreSQL and MariaDB.

A small schema of its own: ``accounts`` (a UNIQUE NOT NULL email, a nullable name, a
contract end), their ``events`` (a foreign key to accounts), ``memberships`` with a
composite primary key, and ``trail`` without a primary key. Rows carry timestamps at
known distances from a fixed ``NOW``; targets come from ``resolve_targets`` on a policy
built here, and sweepers from ``SqlConnector.sweeper`` (which reflects the schema).
Every test that changes data compares a snapshot of every row of every table before and
after: exactly the expired rows are gone or masked, everything else is unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any, Literal

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from config.crossref import check
from config.problems import LineMap, Problem, Reporter
from config.schema import LifecycleConfig
from connectors.base import Key, SweepBatch, keys_digest
from connectors.sql.config import SqlStore
from connectors.sql.connector import SqlConnector
from connectors.sql.masks import Masker
from connectors.sql.sweep import SqlSweeper
from core.engines import make_engine
from core.errors import ConfigError, TerminalError, TransientError
from core.keys import KeyRing
from retention.targets import SweepTarget, resolve_targets
from tests.connectors.sql.conftest import Rows, snapshot

KEYS = KeyRing.from_master(b"k" * 32)
NOW = datetime(2026, 3, 15, 12, 0, 0, tzinfo=UTC)
NAIVE_NOW = NOW.replace(tzinfo=None)
TODAY = NOW.date()
EVENTS_CUTOFF = NAIVE_NOW - timedelta(days=90)  # the 90d rule's cut-off
EVENT_COUNT = 75  # every third event is recent: 50 are expired
ORGS = ("alpha", "beta", "gamma")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def build_metadata() -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "accounts",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(200), nullable=False, unique=True),
        sa.Column("name", sa.String(100)),
        sa.Column("contract_ended_at", sa.DateTime),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("badge", sa.String(10), nullable=False, unique=True),
        sa.Column("tier", sa.String(10), nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
    )
    sa.Table(
        "events",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("occurred_at", sa.DateTime, nullable=False),
        sa.Column("ip", sa.String(45)),
        sa.Index("ix_events_account_id", "account_id"),
    )
    sa.Table(
        "memberships",
        md,
        sa.Column("org", sa.String(20), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("joined_at", sa.DateTime, nullable=False),
        sa.Column("note", sa.String(100)),
    )
    sa.Table(  # clocks of other types: a DATE and a timezone-aware timestamp
        "visits",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(  # no primary key: keyed by its reference for erasure, refused by sweeps
        "trail",
        md,
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("note", sa.String(100)),
        sa.Column("logged_at", sa.DateTime, nullable=False),
    )
    return md


def contract_end(account: int) -> datetime | None:
    """Accounts 1-4 ended five years ago, 5-6 one year ago, 7-10 are active (NULL)."""
    if account <= 4:
        return NAIVE_NOW - timedelta(days=5 * 366)
    if account <= 6:
        return NAIVE_NOW - timedelta(days=365)
    return None


def event_time(event: int) -> datetime:
    """Two of three events are before the 90-day cut-off; event 3 is exactly on it."""
    if event % 3:
        return EVENTS_CUTOFF - timedelta(minutes=event)
    return EVENTS_CUTOFF + timedelta(minutes=event - 3)


def membership_expired(org: str, seq: int) -> bool:
    return org == "beta" or seq % 3 == 1


def seed_rows() -> dict[str, list[dict[str, Any]]]:
    accounts = [
        {
            "id": a,
            "email": f"user{a}@example.com",
            "name": None if a == 2 else f"User {a}",
            "contract_ended_at": contract_end(a),
            "created_at": NAIVE_NOW - timedelta(days=3000 - a),
            "badge": f"B-{a:04d}",
            "tier": "gold" if a % 2 else "silver",
            "score": a * 10,
        }
        for a in range(1, 11)
    ]
    events = [
        {
            "id": e,
            "account_id": e % 10 + 1,
            "occurred_at": event_time(e),
            "ip": None if e % 7 == 0 else f"192.0.2.{e}",
        }
        for e in range(1, EVENT_COUNT + 1)
    ]
    memberships = [
        {
            "org": org,
            "seq": seq,
            "joined_at": NAIVE_NOW - timedelta(days=400 if membership_expired(org, seq) else 30),
            "note": f"{org} member {seq}",
        }
        for org in ORGS
        for seq in range(1, 13)
    ]
    trail = [
        {"account_id": a, "note": "signed in", "logged_at": NAIVE_NOW - timedelta(days=100)}
        for a in (1, 2)
    ]
    aware_cutoff = EVENTS_CUTOFF.replace(tzinfo=UTC)
    visits = [  # ids 0 and 1 are before the 90-day cut-off, 2 is on it, 3 and 4 after
        {
            "id": v,
            "day": (EVENTS_CUTOFF + timedelta(days=v - 2)).date(),
            "at": aware_cutoff + timedelta(hours=v - 2),
        }
        for v in range(5)
    ]
    return {
        "accounts": accounts,
        "events": events,
        "memberships": memberships,
        "visits": visits,
        "trail": trail,
    }


TABLES: list[dict[str, Any]] = [
    {
        "name": "accounts",
        "identity": [{"column": "email", "kind": "email"}],
        "fields": {
            "email": ["contact"],
            "name": ["contact"],
            "badge": ["contact"],
            "tier": ["contact"],
            "score": ["contact"],
            "contract_ended_at": ["contract"],
        },
        "timestamps": {"created": "created_at"},
    },
    {
        "name": "events",
        "fields": {"ip": ["telemetry"], "occurred_at": ["telemetry"]},
        "timestamps": {"created": "occurred_at"},
    },
    {
        "name": "memberships",
        "fields": {"note": ["contact"]},
        "timestamps": {"created": "joined_at"},
    },
    {"name": "visits", "fields": {"day": ["telemetry"], "at": ["telemetry"]}},
    {"name": "trail", "fields": {"note": ["telemetry"]}, "timestamps": {"created": "logged_at"}},
]

VIA_ACCOUNT = [{"columns": ["account_id"], "table": "accounts", "to_columns": ["id"]}]


def rule(
    rule_id: str, table: str, age: str, action: str = "delete", **extra: Any
) -> dict[str, Any]:
    return {"id": rule_id, "store": "crm", "table": table, "age": age, "action": action, **extra}


EVENTS_90D = rule("events-90d", "events", "90d", measured_from={"column": "occurred_at"})
ANONYMIZE_3Y = rule(
    "accounts-anon-3y",
    "accounts",
    "3y",
    "anonymize",
    fields=["email", "name"],
    measured_from={"column": "contract_ended_at"},
)


@dataclass
class World:
    url: str
    engine: Engine
    metadata: sa.MetaData
    rows: dict[str, list[dict[str, Any]]]

    def config(
        self, rules: Sequence[Mapping[str, Any]], holds: Sequence[Mapping[str, Any]] = ()
    ) -> LifecycleConfig:
        """The store and a policy with ``rules`` and ``holds``, checked as on load."""
        config = LifecycleConfig.model_validate(
            {
                "inventory": {
                    "stores": [
                        {
                            "type": "sql",
                            "name": "crm",
                            "url": self.url,
                            "region": "eu-central-1",
                            "tables": TABLES,
                        }
                    ]
                },
                "policy": {
                    "categories": [{"name": n} for n in ("contact", "contract", "telemetry")],
                    "requests": {
                        "approval": {"approvers": ["privacy-officer"], "unverified_ui": True}
                    },
                    "retention": list(rules),
                    "legal_holds": list(holds),
                },
            }
        )
        problems: list[Problem] = []
        reporters = [Reporter(f, LineMap({}), problems) for f in ("inventory", "policy")]
        check(config.inventory, config.policy, *reporters)
        assert not problems, [str(p) for p in problems]
        return config

    def target(
        self, rules: Sequence[Mapping[str, Any]], holds: Sequence[Mapping[str, Any]] = ()
    ) -> SweepTarget:
        [target] = resolve_targets(self.config(rules, holds), NOW)
        return target

    def sweeper(self, target: SweepTarget, held_keys: frozenset[Key] = frozenset()) -> SqlSweeper:
        """A sweeper from a fresh connector (reflecting the schema), on the shared engine."""
        config = self.config([])
        [store] = config.stores_of(SqlStore)
        connector = SqlConnector(store, config.policy, keys=KEYS, engine=self.engine)
        return connector.sweeper(target, today=TODAY, held_keys=held_keys)

    def snapshot(self) -> Rows:
        return snapshot(self.engine, self.metadata)

    def read(self, table: str, *where: sa.ColumnElement[bool]) -> list[dict[str, Any]]:
        t = self.metadata.tables[table]
        order = list(t.primary_key.columns) or list(t.columns)
        with self.engine.connect() as conn:
            return [
                dict(r._mapping) for r in conn.execute(sa.select(t).where(*where).order_by(*order))
            ]


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    engine = make_engine(db_url)
    md = build_metadata()
    md.create_all(engine)
    rows = seed_rows()
    with engine.begin() as conn:
        for name in ("accounts", "events", "memberships", "visits", "trail"):
            conn.execute(md.tables[name].insert(), rows[name])
    try:
        yield World(db_url, engine, md, rows)
    finally:
        engine.dispose()


def keys_mode(target: SweepTarget) -> SweepTarget:
    """``target`` with ``audit: keys`` (every batch digests its keys)."""
    return replace(target, audit="keys")


def without(before: Rows, world: World, table: str, gone: set[Key] | frozenset[Key]) -> Rows:
    """``before`` minus the rows of ``table`` whose primary key is in ``gone``."""
    t = world.metadata.tables[table]
    names = [c.name for c in t.columns]
    idx = [names.index(c.name) for c in t.primary_key.columns]
    return {
        name: [r for r in rows if name != table or tuple(r[i] for i in idx) not in gone]
        for name, rows in before.items()
    }


def sweep_all(sweeper: SqlSweeper, size: int) -> list[SweepBatch]:
    """Read a batch, apply it, continue after it, until nothing is left."""
    done: list[SweepBatch] = []
    cursor: Key | None = None
    while (batch := sweeper.next_batch(cursor, size)) is not None:
        assert sweeper.apply(batch) == batch.count
        done.append(batch)
        cursor = batch.hi
    return done


def expired_events() -> list[Key]:
    return [(e,) for e in range(1, EVENT_COUNT + 1) if event_time(e) < EVENTS_CUTOFF]


# --- expiry -----------------------------------------------------------------------------


def test_age_rule_deletes_exactly_the_rows_older_than_the_cutoff(world: World) -> None:
    target = world.target([EVENTS_90D])
    assert target.conditions[0].cutoff == EVENTS_CUTOFF
    sweeper = world.sweeper(target)
    expired = expired_events()
    assert len(expired) == 50
    assert (3,) not in expired  # exactly on the cut-off: not older than it
    before = world.snapshot()

    assert sweeper.counts() == (50, 0)
    batches = sweep_all(sweeper, 500)

    assert sum(b.count for b in batches) == 50
    assert world.snapshot() == without(before, world, "events", set(expired))
    assert sweeper.counts() == (0, 0)
    assert sweeper.next_batch(None, 500) is None


def test_event_rule_through_a_reference_deletes_rows_of_long_ended_contracts(
    world: World,
) -> None:
    target = world.target(
        [
            rule(
                "events-after-contract-2y",
                "events",
                "2y",
                measured_from={"column": "contract_ended_at", "via": VIA_ACCOUNT},
            )
        ]
    )
    sweeper = world.sweeper(target)
    # Accounts 1-4 ended five years ago; 5-6 one year ago; 7-10 are active (NULL).
    gone: set[Key] = {(e["id"],) for e in world.rows["events"] if e["account_id"] <= 4}
    assert gone and len(gone) < EVENT_COUNT
    before = world.snapshot()

    assert sweeper.counts() == (len(gone), 0)
    sweep_all(sweeper, 8)

    assert world.snapshot() == without(before, world, "events", gone)
    left = {e["account_id"] for e in world.read("events")}
    assert left == set(range(5, 11))


def test_overlapping_rules_delete_only_when_the_longest_has_passed(world: World) -> None:
    # 90 days alone would take 50 events; 2 years after the contract ends only those of
    # accounts 1-4. Both have to hold.
    target = world.target(
        [
            EVENTS_90D,
            rule(
                "events-after-contract-2y",
                "events",
                "2y",
                measured_from={"column": "contract_ended_at", "via": VIA_ACCOUNT},
            ),
        ]
    )
    sweeper = world.sweeper(target)
    gone: set[Key] = {
        (e["id"],)
        for e in world.rows["events"]
        if e["account_id"] <= 4 and e["occurred_at"] < EVENTS_CUTOFF
    }
    before = world.snapshot()

    assert sweeper.counts() == (len(gone), 0)
    sweep_all(sweeper, 5)

    assert world.snapshot() == without(before, world, "events", gone)


@pytest.mark.parametrize("column", ["day", "at"], ids=["date", "timestamp-with-time-zone"])
def test_date_and_timezone_aware_clocks_compare_with_the_utc_cutoff(
    world: World, column: str
) -> None:
    # A DATE on the cut-off's day is not yet expired; an aware timestamp compares in UTC.
    target = world.target([rule("visits-90d", "visits", "90d", measured_from={"column": column})])
    sweeper = world.sweeper(target)
    before = world.snapshot()

    assert sweeper.counts() == (2, 0)
    sweep_all(sweeper, 10)

    assert world.snapshot() == without(before, world, "visits", {(0,), (1,)})


# --- anonymize --------------------------------------------------------------------------


def test_anonymize_masks_fields_of_expired_rows_and_leaves_the_rest(world: World) -> None:
    target = world.target([ANONYMIZE_3Y])
    assert (target.action, target.fields) == ("anonymize", ("email", "name"))
    sweeper = world.sweeper(target)
    before = world.read("accounts")

    assert sweeper.counts() == (4, 0)
    sweep_all(sweeper, 3)

    after = world.read("accounts")
    masker = Masker(KEYS)
    email_column = world.metadata.tables["accounts"].c.email
    for old, new in zip(before, after, strict=True):
        if old["id"] <= 4:
            assert new["name"] is None  # nullable: NULL
            assert HEX64.match(new["email"])  # UNIQUE NOT NULL: a keyed hash
            assert new["email"] == masker.value("hash", email_column, old["email"])
            assert new | {"email": old["email"], "name": old["name"]} == old
        else:
            assert new == old
    masked = [a["email"] for a in after if a["id"] <= 4]
    assert len(set(masked)) == 4  # distinct per row: the UNIQUE constraint holds


def test_anonymize_changes_nothing_outside_the_target_table(world: World) -> None:
    sweeper = world.sweeper(world.target([ANONYMIZE_3Y]))
    before = world.snapshot()

    sweep_all(sweeper, 100)

    after = world.snapshot()
    assert {k: v for k, v in after.items() if k != "accounts"} == {
        k: v for k, v in before.items() if k != "accounts"
    }


def test_a_second_anonymize_sweep_finds_nothing(world: World) -> None:
    target = world.target([ANONYMIZE_3Y])
    first = world.sweeper(target)
    [batch] = sweep_all(first, 100)
    assert batch.count == 4
    after_first = world.snapshot()

    second = world.sweeper(target)
    assert second.counts() == (0, 0)
    assert second.next_batch(None, 100) is None
    assert second.apply(batch) == 0  # re-running the recorded batch changes nothing
    assert world.snapshot() == after_first


def test_anonymize_of_a_short_not_null_field_writes_the_redaction_marker(world: World) -> None:
    target = world.target(
        [
            rule(
                "tier-3y",
                "accounts",
                "3y",
                "anonymize",
                fields=["tier"],
                measured_from={"column": "contract_ended_at"},
            )
        ]
    )

    sweep_all(world.sweeper(target), 100)

    tiers = {a["id"]: a["tier"] for a in world.read("accounts")}
    assert all(tiers[a] == "[redacted]" for a in range(1, 5))
    assert tiers[5] == "gold"
    assert tiers[6] == "silver"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (["score"], ["accounts.score"]),
        (["badge"], ["accounts.badge"]),
        (["email", "score", "badge"], ["accounts.badge", "accounts.score"]),
    ],
    ids=["not-null-integer", "unique-not-null-string-10", "both"],
)
def test_anonymize_field_that_cannot_be_masked_is_refused_naming_it(
    world: World, fields: list[str], named: list[str]
) -> None:
    target = world.target(
        [
            rule(
                "anon-3y",
                "accounts",
                "3y",
                "anonymize",
                fields=fields,
                measured_from={"column": "contract_ended_at"},
            )
        ]
    )
    before = world.snapshot()

    with pytest.raises(ConfigError) as err:
        world.sweeper(target)

    assert sorted(p.split(":")[0] for p in err.value.problems) == named
    for name in named:
        assert name in str(err.value)
    assert "accounts.email" not in str(err.value)
    assert world.snapshot() == before


# --- batches ----------------------------------------------------------------------------


def read_batches(sweeper: SqlSweeper, size: int, cursor: Key | None = None) -> list[SweepBatch]:
    """Every batch after ``cursor``, read without applying any."""
    found: list[SweepBatch] = []
    while (batch := sweeper.next_batch(cursor, size)) is not None:
        found.append(batch)
        cursor = batch.hi
    return found


def split_by(batches: Sequence[SweepBatch], keys: Sequence[Key]) -> list[list[Key]]:
    """The sorted ``keys`` in each batch's range (lo exclusive, hi inclusive)."""
    out: list[list[Key]] = []
    for b in batches:
        out.append([k for k in keys if (b.lo is None or k > b.lo) and k <= b.hi])
    return out


def test_batches_are_contiguous_ranges_covering_exactly_the_expired_keys(world: World) -> None:
    sweeper = world.sweeper(keys_mode(world.target([EVENTS_90D])))
    expired = expired_events()

    batches = read_batches(sweeper, 7)

    assert len(batches) == 8  # 7 x 7 + 1
    assert all(b.count <= 7 for b in batches)
    assert batches[0].lo is None
    for previous, following in pairwise(batches):
        assert following.lo == previous.hi
    assert batches[-1].hi == expired[-1]
    parts = split_by(batches, expired)
    assert [k for part in parts for k in part] == expired
    for batch, part in zip(batches, parts, strict=True):
        assert batch.count == len(part)
        assert batch.keys_digest == keys_digest(part)


def test_applying_batches_deletes_each_range_once(world: World) -> None:
    sweeper = world.sweeper(world.target([EVENTS_90D]))
    expired = expired_events()
    before = world.snapshot()
    batches = read_batches(sweeper, 7)

    for batch in batches:
        assert sweeper.apply(batch) == batch.count
        assert sweeper.apply(batch) == 0  # re-applying a done range touches nothing

    assert world.snapshot() == without(before, world, "events", set(expired))
    assert all(sweeper.apply(b) == 0 for b in batches)


def test_resuming_from_a_mid_cursor_continues_exactly(world: World) -> None:
    target = world.target([EVENTS_90D])
    planned = read_batches(world.sweeper(target), 7)
    first = world.sweeper(target)
    for batch in planned[:3]:
        first.apply(batch)

    # A new run (another connector) resumes after the last recorded batch.
    resumed = world.sweeper(target)
    assert resumed.counts() == (50 - sum(b.count for b in planned[:3]), 0)
    rest = read_batches(resumed, 7, cursor=planned[2].hi)
    assert rest == planned[3:]
    # Starting over from the beginning finds the same keys (the done ones are gone).
    restart = resumed.next_batch(None, 7)
    assert restart is not None
    assert (restart.hi, restart.count, restart.keys_digest) == (
        planned[3].hi,
        planned[3].count,
        planned[3].keys_digest,
    )
    for batch in rest:
        assert resumed.apply(batch) == batch.count
    assert resumed.counts() == (0, 0)


def test_an_interrupted_batch_reapplied_after_commit_changes_nothing(world: World) -> None:
    # The crash case: the range was applied, the audit record says only "read".
    sweeper = world.sweeper(world.target([EVENTS_90D]))
    batch = sweeper.next_batch(None, 7)
    assert batch is not None
    assert sweeper.apply(batch) == 7
    after = world.snapshot()

    again = world.sweeper(world.target([EVENTS_90D]))
    assert again.apply(batch) == 0
    assert world.snapshot() == after


# --- holds ------------------------------------------------------------------------------


def test_rows_with_held_keys_survive_and_are_counted_as_held(world: World) -> None:
    expired = expired_events()
    held: frozenset[Key] = frozenset({expired[0], expired[10], expired[-1], (3,), (999,)})
    sweeper = world.sweeper(world.target([EVENTS_90D]), held_keys=held)
    before = world.snapshot()

    assert sweeper.counts() == (47, 3)  # (3,) is not expired, (999,) does not exist
    batches = sweep_all(sweeper, 7)

    assert sum(b.count for b in batches) == 47
    assert world.snapshot() == without(before, world, "events", set(expired) - held)
    assert {(e["id"],) for e in world.read("events")} >= held - {(999,)}
    assert sweeper.counts() == (0, 3)
    assert sweeper.next_batch(None, 7) is None


def test_held_keys_inside_a_batch_range_are_left_by_the_range_statement(world: World) -> None:
    expired = expired_events()
    batch = world.sweeper(world.target([EVENTS_90D])).next_batch(None, 7)
    assert batch is not None
    # A hold arrives between reading the batch and applying it: the held key stays.
    held: frozenset[Key] = frozenset({expired[3]})
    late = world.sweeper(world.target([EVENTS_90D]), held_keys=held)

    assert late.apply(batch) == 6
    assert expired[3] in {(e["id"],) for e in world.read("events")}


def test_a_hold_on_the_whole_table_stops_the_sweep_and_counts_everything_held(
    world: World,
) -> None:
    target = world.target(
        [EVENTS_90D],
        [
            {
                "id": "HOLD-1",
                "reason": "litigation",
                "scope": {"store": "crm", "table": "events"},
                "starts": date(2026, 1, 1),
            }
        ],
    )
    assert target.holds == ("HOLD-1",)
    sweeper = world.sweeper(target)
    before = world.snapshot()

    assert sweeper.counts() == (0, 50)
    assert sweeper.next_batch(None, 7) is None
    assert world.snapshot() == before


def test_an_expired_hold_no_longer_stops_the_sweep(world: World) -> None:
    target = world.target(
        [EVENTS_90D],
        [
            {
                "id": "HOLD-OLD",
                "reason": "closed audit",
                "scope": {"store": "crm", "table": "events"},
                "starts": date(2025, 1, 1),
                "ends": date(2026, 3, 14),
            }
        ],
    )

    assert world.sweeper(target).counts() == (50, 0)


# --- keys -------------------------------------------------------------------------------


def test_composite_primary_key_is_paged_by_keyset(world: World) -> None:
    sweeper = world.sweeper(keys_mode(world.target([rule("memberships-1y", "memberships", "1y")])))
    expired: list[Key] = sorted(
        (org, seq) for org in ORGS for seq in range(1, 13) if membership_expired(org, seq)
    )
    held: frozenset[Key] = frozenset({("beta", 5)})
    before = world.snapshot()

    planned = read_batches(sweeper, 4)

    assert [k for part in split_by(planned, expired) for k in part] == expired
    assert all(b.count <= 4 for b in planned)
    for batch, part in zip(planned, split_by(planned, expired), strict=True):
        assert batch.keys_digest == keys_digest(part)
    held_sweeper = world.sweeper(
        keys_mode(world.target([rule("memberships-1y", "memberships", "1y")])), held
    )
    assert held_sweeper.counts() == (len(expired) - 1, 1)
    done = sweep_all(held_sweeper, 4)

    assert sum(b.count for b in done) == len(expired) - 1
    assert world.snapshot() == without(before, world, "memberships", set(expired) - held)


# --- errors -----------------------------------------------------------------------------


def test_a_delete_blocked_by_a_foreign_key_is_a_terminal_error_without_values(
    world: World,
) -> None:
    # Every account is older than a year, and events still reference them.
    sweeper = world.sweeper(world.target([rule("accounts-1y", "accounts", "1y")]))
    batch = sweeper.next_batch(None, 100)
    assert batch is not None
    before = world.snapshot()

    with pytest.raises(TerminalError) as err:
        sweeper.apply(batch)

    assert not isinstance(err.value, TransientError)
    message = str(err.value)
    assert message.startswith("store 'crm', table 'accounts': sweep delete failed (IntegrityError")
    assert "example.com" not in message
    assert "2025" not in message  # no bound parameters (the cut-off)
    assert err.value.fields == {"store": "crm", "table": "accounts", "operation": "sweep delete"}
    assert world.snapshot() == before  # the batch's transaction rolled back


@pytest.mark.parametrize("statement", ["SELECT count", "SELECT events.id", "DELETE"])
def test_driver_operational_errors_become_transient(world: World, statement: str) -> None:
    # Models a lock wait timeout (or a lost connection) raised by the driver mid-sweep.
    sweeper = world.sweeper(keys_mode(world.target([EVENTS_90D])))
    batch = sweeper.next_batch(None, 7)
    assert batch is not None
    dbapi = world.engine.dialect.loaded_dbapi

    def fail(_conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        if sql.lstrip().startswith(statement):
            raise dbapi.OperationalError("lock wait timeout exceeded")

    sa.event.listen(world.engine, "before_cursor_execute", fail)
    try:
        with pytest.raises(TransientError) as err:
            if statement == "SELECT count":
                sweeper.counts()
            elif statement == "DELETE":
                sweeper.apply(batch)
            else:
                sweeper.next_batch(None, 7)
    finally:
        sa.event.remove(world.engine, "before_cursor_execute", fail)

    assert "store 'crm', table 'events': sweep" in str(err.value)
    assert sweeper.counts() == (50, 0)  # nothing changed; a retry starts over cleanly


def test_a_table_without_a_primary_key_is_refused_naming_it(world: World) -> None:
    target = world.target([rule("trail-30d", "trail", "30d")])

    with pytest.raises(TerminalError) as err:
        world.sweeper(target)

    assert not isinstance(err.value, ConfigError)
    assert "crm.trail" in str(err.value)
    assert "primary key" in str(err.value)
    assert err.value.fields["table"] == "trail"


def test_anonymizing_a_key_column_is_refused() -> None:
    from connectors.sql.sweep import anonymize_masks

    md = sa.MetaData()
    sa.Table("parent", md, sa.Column("id", sa.Integer, primary_key=True))
    child = sa.Table(
        "child",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("parent.id"), nullable=True),
        sa.Column("note", sa.String(200), nullable=True),
    )

    with pytest.raises(ConfigError) as err:
        anonymize_masks(child, ["id", "parent_id", "note"])

    assert sorted(p.split(":")[0] for p in err.value.problems) == ["child.id", "child.parent_id"]


def test_too_many_held_keys_is_refused_before_anything_runs(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import connectors.sql.sweep as sweep_module

    monkeypatch.setattr(sweep_module, "MAX_HELD_KEYS", 2)
    held: frozenset[Key] = frozenset({(1,), (2,), (3,)})

    with pytest.raises(TerminalError, match="subject holds cover 3 rows"):
        world.sweeper(world.target([EVENTS_90D]), held_keys=held)


@pytest.mark.service
def test_postgresql_deletes_a_batch_in_one_transaction_with_the_same_digest(pg_url: str) -> None:
    """The SQL-side digest is ``keys_digest`` (keys in numeric order); only expired rows go."""
    engine = make_engine(pg_url)
    old, new = NAIVE_NOW - timedelta(days=400), NAIVE_NOW
    sweeper, logs = _logs_sweeper(engine, {i: old if i % 3 else new for i in range(1, 31)})
    expired: list[Key] = [(i,) for i in range(1, 31) if i % 3]
    assert sweeper.deletes_in_one_transaction
    seen: list[SweepBatch] = []

    first = sweeper.delete_next(None, 12, seen.append)
    second = sweeper.delete_next(first.hi if first else None, 12, seen.append)
    third = sweeper.delete_next(second.hi if second else None, 12, seen.append)

    assert first is not None and second is not None and third is None
    assert [b.count for b in seen] == [12, 8]
    assert first.keys_digest == keys_digest(expired[:12])
    assert second.keys_digest == keys_digest(expired[12:])
    assert _ids(engine, logs) == [i for i in range(1, 31) if i % 3 == 0]
    engine.dispose()


def _logs_sweeper(
    engine: Engine,
    rows: Mapping[int, datetime],
    held: frozenset[Key] = frozenset(),
    audit: Literal["keys", "range"] = "keys",
) -> tuple[SqlSweeper, sa.Table]:
    """A PostgreSQL ``logs`` table holding ``rows`` (id -> time) and a 90-day delete target."""
    from connectors.sql.schema import StoreSchema
    from retention.targets import Clock, Condition

    md = sa.MetaData()
    logs = sa.Table(
        "logs",
        md,
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(logs), [{"id": i, "at": at} for i, at in rows.items()])
    schema = StoreSchema("s", "postgresql", {"logs": logs}, {"logs": ("id",)}, ())
    target = SweepTarget(
        audit=audit,
        id="s.logs:delete",
        kind="sql",
        store="s",
        label="s.logs",
        action="delete",
        table="logs",
        conditions=(Condition("r", "90d", 90, Clock("at"), NAIVE_NOW - timedelta(days=90)),),
    )
    sweeper = SqlSweeper(engine, schema, target, masker=None, held_keys=held)  # type: ignore[arg-type]
    return sweeper, logs


def _ids(engine: Engine, logs: sa.Table) -> list[int]:
    with engine.connect() as conn:
        return sorted(int(r[0]) for r in conn.execute(sa.select(logs.c.id)))


@pytest.mark.service
def test_postgresql_time_ordered_rows_go_in_dense_batches_with_exact_digests(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old rows first (ids with gaps): batches read from the key index; each digest is
    ``keys_digest`` of exactly the rows it deleted; a held row and the new rows stay."""
    old, new = NAIVE_NOW - timedelta(days=400), NAIVE_NOW
    ids = [i for i in range(1, 121) if i % 7]  # gaps, as sequences leave them
    rows = {i: old if i <= 80 else new for i in ids}
    engine = make_engine(pg_url)
    sweeper, logs = _logs_sweeper(engine, rows, held=frozenset({(50,)}))
    searched: list[Key | None] = []
    read_and_delete = sweeper._read_and_delete

    def spy(cursor: Key | None, size: int, before: Any, *, dense: bool) -> Any:
        if not dense:
            searched.append(cursor)
        return read_and_delete(cursor, size, before, dense=dense)

    monkeypatch.setattr(sweeper, "_read_and_delete", spy)
    recorded: list[SweepBatch] = []
    cursor: Key | None = None
    while (batch := sweeper.delete_next(cursor, 10, recorded.append)) is not None:
        cursor = batch.hi
        if sum(b.count for b in recorded) >= 68:  # as run_range stops at the plan's count
            break

    expired = [(i,) for i in ids if i <= 80 and i != 50]
    assert sum(b.count for b in recorded) == len(expired) == 68
    for b in recorded:
        part = [k for k in expired if (b.lo is None or k > b.lo) and k <= b.hi]
        assert (b.count, b.keys_digest) == (len(part), keys_digest(part))
    assert _ids(engine, logs) == sorted([50, *(i for i in ids if i > 80)])
    # Dense until the held row's window, which was searched; not the search per batch.
    assert 1 <= len(searched) < len(recorded) / 2
    engine.dispose()


@pytest.mark.service
@pytest.mark.parametrize("layout", ["time_ordered", "interleaved", "sparse"])
def test_postgresql_range_audit_deletes_ranges_without_digests(pg_url: str, layout: str) -> None:
    """``audit: range``: each batch is a key range and the count its DELETE took, with no
    digest; together they take exactly the expired rows, a held row and the new rows stay."""
    old, new = NAIVE_NOW - timedelta(days=400), NAIVE_NOW
    ids = [i for i in range(1, 301) if i % 7]

    def expired_at(i: int) -> bool:
        if layout == "time_ordered":
            return i <= 200
        return i % 2 == 0 if layout == "interleaved" else i % 23 == 0

    rows = {i: old if expired_at(i) else new for i in ids}
    engine = make_engine(pg_url)
    sweeper, logs = _logs_sweeper(engine, rows, held=frozenset({(50,)}), audit="range")
    recorded: list[SweepBatch] = []
    cursor: Key | None = None
    while (batch := sweeper.delete_next(cursor, 20, recorded.append)) is not None:
        assert batch.lo == cursor and batch.keys_digest == ""
        cursor = batch.hi
    expired = [(i,) for i in ids if expired_at(i) and i != 50]
    assert sum(b.count for b in recorded) == len(expired)
    for b in recorded:
        part = [k for k in expired if (b.lo is None or k > b.lo) and k <= b.hi]
        assert b.count == len(part)
    assert _ids(engine, logs) == sorted(i for i in ids if i == 50 or not expired_at(i))
    engine.dispose()


@pytest.mark.service
def test_postgresql_dense_batch_changes_nothing_when_a_row_changes_under_it(
    pg_url: str,
) -> None:
    """A row updated by another session between the key read and the DELETE: the batch
    fails as transient and deletes nothing, rather than deleting rows it did not count."""
    old = NAIVE_NOW - timedelta(days=400)
    engine = make_engine(pg_url)
    sweeper, logs = _logs_sweeper(engine, {i: old for i in range(1, 21)})
    other = make_engine(pg_url)

    def meddle(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            with other.begin() as c:
                c.execute(sa.update(logs).where(logs.c.id == 5).values(at=NAIVE_NOW))

    sa.event.listen(engine, "before_cursor_execute", meddle)
    recorded: list[SweepBatch] = []
    with pytest.raises(TransientError):
        sweeper.delete_next(None, 50, recorded.append)
    sa.event.remove(engine, "before_cursor_execute", meddle)

    assert recorded == []
    assert _ids(engine, logs) == list(range(1, 21))
    again = sweeper.delete_next(None, 50, recorded.append)  # the retry sees row 5 as new
    assert again is not None and again.count == 19
    assert _ids(engine, logs) == [5]
    other.dispose()
    engine.dispose()


@pytest.mark.service
def test_postgresql_dense_batch_is_rolled_back_when_its_intent_cannot_be_recorded(
    pg_url: str,
) -> None:
    """The intent is written before the commit: if that fails, no row is gone."""
    old = NAIVE_NOW - timedelta(days=400)
    engine = make_engine(pg_url)
    sweeper, logs = _logs_sweeper(engine, {i: old for i in range(1, 31)})

    def fail(batch: SweepBatch) -> None:
        assert batch.count == 10 and batch.keys_digest == keys_digest([(i,) for i in range(1, 11)])
        raise RuntimeError("audit database unavailable")

    with pytest.raises(RuntimeError):
        sweeper.delete_next(None, 10, fail)
    assert _ids(engine, logs) == list(range(1, 31))
    engine.dispose()
