"""Appending and reading back: what is stored is exactly what was hashed, on every backend."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from audit.canonical import InvalidEvent
from audit.chain import VERIFY_COLUMNS, row_is_authentic
from audit.database import audit_engine, dispose_engines
from audit.events import EventStatus, NewEvent
from audit.ledger import Ledger
from audit.migrate import current
from audit.tables import GENESIS_HASH, audit_events
from core.errors import PersonalDataRefused
from tests.audit.ledger_support import KEYS, edit, remove, sample, subject


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    yield Ledger(audit_engine(db_url), KEYS, actor="tester")
    dispose_engines()


@pytest.fixture
def sqlite_ledger(tmp_path: Any) -> Iterator[Ledger]:
    yield Ledger(audit_engine(f"sqlite:///{tmp_path / 'audit.db'}"), KEYS, actor="tester")
    dispose_engines()


AWKWARD_DETAIL: dict[str, Any] = {
    "z": 1,
    "a": {"y": [3, 2, {"b": None, "a": True}], "x": 'ü € 𝄞 " \\ \n \t'},
    "": "",
    "mid": -(2**63),
    "big": 2**63 - 1,
    "emptylist": [],
    "emptyobj": {},
    "false": False,
}


def test_round_trip_is_exact_and_verifies(ledger: Ledger) -> None:
    written = ledger.append(
        "connector.erase",
        status="succeeded",
        request_id="req-1",
        connector="orders_db",
        target="public.customers",
        subject=subject(),
        counts={"rows": 12, "batches": 2},
        detail=AWKWARD_DETAIL,
        flow_run_id="0d1a2b3c-0123-4567-89ab-0123456789ab",
        task_run_id="00112233-0456-4789-8abc-def012345678",  # digit groups a phone scan misread
    )
    read = list(ledger.events())
    assert read == [written]
    assert written.seq == 1 and written.prev_hash == GENESIS_HASH
    assert written.actor == "tester" and written.status is EventStatus.SUCCEEDED
    assert written.occurred_at.tzinfo is not None
    # The raw stored row (JSON as the backend keeps it) still authenticates.
    with ledger.engine.connect() as conn:
        stored = conn.execute(audit_events.select().with_only_columns(*VERIFY_COLUMNS)).one()
    assert row_is_authentic(KEYS.ledger_hmac, stored)
    assert ledger.verify().ok


def test_microseconds_survive_on_every_backend(ledger: Ledger) -> None:
    events = [ledger.append("tick", status="planned") for _ in range(5)]
    stored = list(ledger.events())
    assert [e.occurred_at for e in stored] == [e.occurred_at for e in events]
    assert any(e.occurred_at.microsecond for e in stored)


def test_appends_chain_in_order(ledger: Ledger) -> None:
    first = ledger.append("a", status=EventStatus.PLANNED)
    batch = ledger.append_many([sample(i) for i in range(3)])
    last = ledger.append("b", status="approved", actor="alice")
    chain = [first, *batch, last]
    assert [e.seq for e in chain] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))
    assert last.actor == "alice"
    assert ledger.count() == 5
    report = ledger.verify()
    assert report.ok and report.events_checked == 5


def test_update_and_delete_are_refused_by_the_database(ledger: Ledger) -> None:
    ledger.append("a", status="planned")
    ledger.checkpoint()
    for table in ("audit_events", "audit_checkpoints"):
        with pytest.raises(DBAPIError), ledger.engine.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET seq = seq + 10"))
        with pytest.raises(DBAPIError), ledger.engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {table}"))
    if ledger.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError), ledger.engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_events"))
    assert ledger.count() == 1
    assert ledger.verify().ok


def test_events_filters_and_pages(sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    ledger.append_many([sample(i, kind="plan" if i % 2 else "erase") for i in range(2500)])
    assert sum(1 for _ in ledger.events()) == 2500
    req = list(ledger.events(request_id="req-1"))
    assert req and all(e.request_id == "req-1" for e in req)
    plans = list(ledger.events(kinds=["plan"], limit=1200))
    assert len(plans) == 1200 and {e.kind for e in plans} == {"plan"}
    assert [e.seq for e in plans] == sorted(e.seq for e in plans)
    newest = list(ledger.events(limit=3, newest_first=True))
    assert [e.seq for e in newest] == [2500, 2499, 2498]
    future = datetime.now(UTC) + timedelta(days=1)
    assert list(ledger.events(since=future)) == []
    assert len(list(ledger.events(since=datetime.now(UTC) - timedelta(hours=1)))) == 2500


def test_raw_identity_as_subject_is_refused(sqlite_ledger: Ledger) -> None:
    for raw in ("jane@example.com", "psn_" + "0" * 32, 42):
        with pytest.raises(PersonalDataRefused) as info:
            sqlite_ledger.append("x", status="planned", subject=raw)  # type: ignore[arg-type]
        assert "example.com" not in str(info.value)
    assert sqlite_ledger.count() == 0


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"target": "customers where email = jane@example.com"}, "target"),
        ({"connector": "jane.doe@example.com"}, "connector"),
        ({"detail": {"note": "call +44 20 7946 0958"}}, "detail.note"),
        ({"detail": {"rows": [{"who": "jane@example.com"}]}}, "detail.rows[0].who"),
        ({"detail": {"jane@example.com": 1}}, "detail (a key)"),
        ({"counts": {"jane@example.com": 1}}, "counts (a key)"),
        ({"request_id": "(555) 123-4567"}, "request_id"),
    ],
)
def test_personal_data_in_fields_is_refused_without_echoing_it(
    sqlite_ledger: Ledger, fields: dict[str, Any], path: str
) -> None:
    with pytest.raises(PersonalDataRefused) as info:
        sqlite_ledger.append("x", status="planned", **fields)
    message = str(info.value)
    assert path in message
    assert "example.com" not in message and "4567" not in message and "0958" not in message
    assert sqlite_ledger.count() == 0


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-01",
        "2024-05-01T10:00:00Z",
        "192.168.10.200",
        "3f2a9c1e4b7d4e0f8a6b5c4d3e2f1a0b",
        "orders 1200000",
        "v1.2.3",
        "psn_0123456789abcdef0123456789abcdef",
    ],
)
def test_ordinary_values_pass_the_guard(sqlite_ledger: Ledger, value: str) -> None:
    event = sqlite_ledger.append("x", status="planned", target=value, detail={"v": value})
    assert event.target == value


def test_invalid_values_are_refused_before_writing(sqlite_ledger: Ledger) -> None:
    bad: list[dict[str, Any]] = [
        {"status": "done"},
        {"status": "planned", "detail": {"ratio": 0.5}},
        {"status": "planned", "counts": {"rows": 1.5}},
        {"status": "planned", "target": "x" * 513},
        {"status": "planned", "kind": ""},
    ]
    for fields in bad:
        kind = fields.pop("kind", "x")
        with pytest.raises(InvalidEvent):
            sqlite_ledger.append(kind, **fields)
    assert sqlite_ledger.count() == 0


def test_append_many_is_all_or_nothing(sqlite_ledger: Ledger) -> None:
    events = [sample(0), NewEvent(kind="x", status=EventStatus.PLANNED, detail={"f": 1.5})]
    with pytest.raises(InvalidEvent):
        sqlite_ledger.append_many(events)
    assert sqlite_ledger.count() == 0
    assert sqlite_ledger.append_many([]) == []


def test_open_uses_settings_and_migrates_once(isolated_settings: Any) -> None:
    ledger = Ledger.open()
    try:
        assert str(isolated_settings) in str(ledger.engine.url)
        assert ledger.actor == "cli"
        assert current(ledger.engine) is not None
        assert Ledger.open().engine is ledger.engine
        assert set(inspect(ledger.engine).get_table_names()) >= {
            "audit_events",
            "audit_head",
            "audit_checkpoints",
        }
    finally:
        dispose_engines()


def test_missing_head_row_is_an_integrity_error(sqlite_ledger: Ledger) -> None:
    from core.errors import IntegrityError

    with sqlite_ledger.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_head"))
    with pytest.raises(IntegrityError, match="head row is missing"):
        sqlite_ledger.append("x", status="planned")


def test_tampering_helpers_need_the_triggers_gone(sqlite_ledger: Ledger) -> None:
    sqlite_ledger.append("x", status="planned")
    with pytest.raises(DBAPIError):
        edit(sqlite_ledger.engine, 1, kind="y")
    with pytest.raises(DBAPIError):
        remove(sqlite_ledger.engine, 1)


def test_in_memory_sqlite_is_refused() -> None:
    from core.errors import ConfigError

    for url in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ConfigError, match="in-memory"):
            audit_engine(url)


def test_naive_since_is_refused(sqlite_ledger: Ledger) -> None:
    from core.errors import TerminalError

    with pytest.raises(TerminalError, match="timezone-aware"):
        list(sqlite_ledger.events(since=datetime(2024, 1, 1)))


def test_run_ids_must_be_uuids(sqlite_ledger: Ledger) -> None:
    with pytest.raises(InvalidEvent, match="task_run_id must be a UUID"):
        sqlite_ledger.append("step", status="succeeded", task_run_id="+44 20 7946 0123")
    assert sqlite_ledger.count() == 0
