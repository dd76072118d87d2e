"""The request register on every backend: registration, sealing, deadlines, transitions."""

from __future__ import annotations

import hashlib
import importlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, select, update

from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from audit.tables import metadata
from core.errors import (
    IntegrityError,
    LifecycleError,
    NotFoundError,
    PersonalDataRefused,
    TerminalError,
)
from core.pseudonym import Pseudonymizer
from state.register import RequestKind, RequestRegister, RequestStatus
from state.register_tables import REGISTER_TABLES, requests

IDENTITY = {"email": "Robin.Quill@Example.com", "name": "Robin Quill"}
OTHER = {"email": "sam.birch@example.com"}
S = RequestStatus


def open_register(url: str) -> tuple[RequestRegister, Ledger]:
    keys = keyring_from_settings()
    ledger = Ledger.open(url, keys=keys, actor="tests")
    return RequestRegister(ledger, keys), ledger


@pytest.fixture
def reg(db_url: str) -> Iterator[RequestRegister]:
    register, ledger = open_register(db_url)
    yield register
    ledger.engine.dispose()


@pytest.fixture
def sqlite_reg(tmp_path: Path) -> Iterator[RequestRegister]:
    """For rules that do not depend on the backend: SQLite only, to keep the suite fast."""
    register, ledger = open_register(f"sqlite:///{tmp_path / 'audit.db'}")
    yield register
    ledger.engine.dispose()


def _events(register: RequestRegister, request_id: str) -> list[tuple[str, dict[str, object]]]:
    return [(e.kind, dict(e.detail)) for e in register.ledger.events(request_id=request_id)]


def test_register_get_list_and_open_round_trip(reg: RequestRegister) -> None:
    received = datetime(2025, 1, 6, 8, 15, 30, 123456, tzinfo=UTC)
    rec = reg.register(RequestKind.ERASURE, IDENTITY, requested_by="operator", received_at=received)
    assert rec.id.startswith("req_") and len(rec.id) == 20
    assert rec.status is S.RECEIVED
    assert rec.received_at == received
    assert rec.due_at == received + timedelta(days=30)
    assert not rec.extended and not rec.identity_destroyed and rec.closed_at is None
    keys = keyring_from_settings()
    assert rec.subject == Pseudonymizer(keys.pseudonym_hmac).of_identity(IDENTITY)
    assert reg.open_identity(rec.id) == IDENTITY
    assert reg.open_changes(rec.id) == {}
    assert "Robin" not in repr(rec) and "Robin" not in repr(reg)

    fix = reg.register(
        RequestKind.RECTIFICATION, OTHER, changes={"name": "Sam Birch"}, requested_by="operator"
    )
    assert reg.open_identity(fix.id) == OTHER
    assert reg.open_changes(fix.id) == {"name": "Sam Birch"}

    assert reg.get(rec.id) == rec
    assert [r.id for r in reg.list()] == [rec.id, fix.id]  # soonest due first
    assert [r.id for r in reg.list(status=S.RECEIVED)] == [rec.id, fix.id]
    assert reg.list(status=S.PLANNED) == []
    [entry] = reg.history(rec.id)
    assert (entry.action, entry.from_status, entry.to_status) == ("received", None, S.RECEIVED)
    [event] = reg.ledger.events(request_id=rec.id)
    assert (event.kind, event.subject, event.actor) == ("request.received", rec.subject, "operator")


def test_migration_creates_the_modelled_register_tables(reg: RequestRegister) -> None:
    # Every migrated table must be on the metadata, or tables that merely reference the
    # register (request progress) show up as differences when this file runs alone.
    importlib.import_module("state.progress_tables")
    with reg.ledger.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, metadata)
    names = [t.name for t in REGISTER_TABLES]
    assert [d for d in diffs if any(name in repr(d) for name in names)] == []


def test_ciphertext_copied_to_another_request_does_not_open(reg: RequestRegister) -> None:
    first = reg.register(RequestKind.ERASURE, IDENTITY, requested_by="operator")
    second = reg.register(RequestKind.ERASURE, OTHER, requested_by="operator")
    engine: Engine = reg.ledger.engine
    with engine.begin() as conn:
        sealed = conn.execute(
            select(requests.c.identity_nonce, requests.c.identity_ciphertext).where(
                requests.c.id == first.id
            )
        ).one()
        conn.execute(
            update(requests)
            .where(requests.c.id == second.id)
            .values(identity_nonce=sealed[0], identity_ciphertext=sealed[1])
        )
    with pytest.raises(IntegrityError, match="does not open") as info:
        reg.open_identity(second.id)
    assert "robin" not in str(info.value).lower()
    assert reg.open_identity(first.id) == IDENTITY


def test_unknown_request_is_not_found(sqlite_reg: RequestRegister) -> None:
    for call in (sqlite_reg.get, sqlite_reg.open_identity, sqlite_reg.history):
        with pytest.raises(NotFoundError, match="req_00000000000000ff not found"):
            call("req_00000000000000ff")
    with pytest.raises(NotFoundError, match="not a request id") as info:
        sqlite_reg.get("robin.quill@example.com")
    assert "robin" not in str(info.value)


def test_refused_registrations_store_and_audit_nothing(sqlite_reg: RequestRegister) -> None:
    reg = sqlite_reg
    with pytest.raises(TerminalError, match="needs the corrected values"):
        reg.register(RequestKind.RECTIFICATION, IDENTITY, requested_by="operator")
    with pytest.raises(TerminalError, match="only rectification"):
        reg.register(RequestKind.ACCESS, IDENTITY, changes={"name": "x"}, requested_by="op")
    with pytest.raises(TerminalError, match="identity key 'email'"):
        reg.register(RequestKind.ACCESS, {"email": " "}, requested_by="operator")
    with pytest.raises(PersonalDataRefused):
        reg.register(RequestKind.ACCESS, IDENTITY, requested_by="robin.quill@example.com")
    future = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(TerminalError, match="future"):
        reg.register(RequestKind.ACCESS, IDENTITY, requested_by="operator", received_at=future)
    assert reg.list() == []
    assert list(reg.ledger.events()) == []


def test_one_extension_with_reason_up_to_90_days(sqlite_reg: RequestRegister) -> None:
    reg = sqlite_reg
    received = datetime.now(UTC) - timedelta(days=10)
    rec = reg.register(RequestKind.ACCESS, IDENTITY, requested_by="op", received_at=received)
    with pytest.raises(TerminalError, match="at most 60 days"):
        reg.extend(rec.id, days=61, reason="complex request", actor="op")
    assert reg.get(rec.id) == rec
    assert len(reg.history(rec.id)) == 1

    reason = "Many stores to search; the subject was told on the phone"
    ext = reg.extend(rec.id, days=60, reason=reason, actor="lead")
    assert ext.due_at == received + timedelta(days=90)
    assert ext.extended and ext.extension_reason == reason
    assert ext.days_left() == 79
    last = reg.history(rec.id)[-1]
    assert (last.action, last.actor, last.note) == ("extended", "lead", reason)

    with pytest.raises(TerminalError, match="already extended"):
        reg.extend(rec.id, days=1, reason="again", actor="lead")
    assert reg.get(rec.id) == ext
    extended_events = [d for k, d in _events(reg, rec.id) if k == "request.extended"]
    assert len(extended_events) == 1
    assert extended_events[0]["days"] == 60 and extended_events[0]["total_days"] == 90
    assert extended_events[0]["reason"] == {
        "chars": len(reason),
        "sha256": hashlib.sha256(reason.encode()).hexdigest(),
    }
    assert "phone" not in str(extended_events)


def test_deadlines_follow_the_constructor_policy(tmp_path: Path) -> None:
    keys = keyring_from_settings()
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'p.db'}", keys=keys)
    try:
        reg = RequestRegister(ledger, keys, deadline_days=20, max_deadline_days=40)
        rec = reg.register(RequestKind.ERASURE, IDENTITY, requested_by="op")
        assert rec.due_at == rec.received_at + timedelta(days=20)
        with pytest.raises(TerminalError, match="at most 20 days"):
            reg.extend(rec.id, days=21, reason="r", actor="op")
    finally:
        ledger.engine.dispose()


def test_overdue_listing(reg: RequestRegister) -> None:
    now = datetime.now(UTC)
    late = reg.register(
        RequestKind.ERASURE, IDENTITY, requested_by="op", received_at=now - timedelta(days=33)
    )
    fresh = reg.register(RequestKind.ACCESS, OTHER, requested_by="op")
    closed = reg.register(
        RequestKind.ACCESS, OTHER, requested_by="op", received_at=now - timedelta(days=40)
    )
    reg.close(closed.id, outcome=S.REJECTED, actor="op", note="not a customer")

    assert [r.id for r in reg.list(overdue_only=True)] == [late.id]
    # Due 3 days and a moment ago: the fourth day overdue has started.
    assert reg.get(late.id).overdue() and reg.get(late.id).days_left() == -4
    assert not reg.get(fresh.id).overdue() and reg.get(fresh.id).days_left() == 29
    assert not reg.get(closed.id).overdue()
    assert [r.id for r in reg.list(overdue_only=True, status=S.PLANNED)] == []


def test_invalid_transitions_are_refused_and_change_nothing(sqlite_reg: RequestRegister) -> None:
    reg = sqlite_reg
    rec = reg.register(RequestKind.ERASURE, IDENTITY, requested_by="op")
    with pytest.raises(TerminalError, match="from 'received' to 'executing'"):
        reg.transition(rec.id, S.EXECUTING, actor="op")
    with pytest.raises(TerminalError, match="closes as one of"):
        reg.close(rec.id, outcome=S.PLANNED, actor="op")
    assert reg.get(rec.id) == rec
    assert len(reg.history(rec.id)) == 1
    assert [k for k, _ in _events(reg, rec.id)] == ["request.received"]

    reg.close(rec.id, outcome=S.CLOSED, actor="op")
    with pytest.raises(TerminalError, match="from 'closed' to 'planned'"):
        reg.transition(rec.id, S.PLANNED, actor="op")
    with pytest.raises(TerminalError, match="cannot be extended"):
        reg.extend(rec.id, days=5, reason="late", actor="op")


def test_failed_request_resumes(sqlite_reg: RequestRegister) -> None:
    reg = sqlite_reg
    rec = reg.register(RequestKind.ERASURE, IDENTITY, requested_by="op")
    for status in (S.PLANNED, S.APPROVED, S.EXECUTING, S.FAILED, S.EXECUTING, S.VERIFYING):
        reg.transition(rec.id, status, actor="worker")
    assert reg.get(rec.id).status is S.VERIFYING
    assert reg.open_identity(rec.id) == IDENTITY  # still open while the request is


def _race(
    reg: RequestRegister, request_id: str, targets: tuple[S, S], expected: S | None
) -> list[object]:
    barrier = threading.Barrier(len(targets))
    outcomes: list[object] = [None] * len(targets)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = reg.transition(
                request_id, targets[i], actor=f"worker-{i}", expected=expected
            )
        except LifecycleError as e:
            outcomes[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ((S.PLANNED, S.PLANNED), None),  # the same move: the second is no longer allowed
        ((S.PLANNED, S.REJECTED), S.RECEIVED),  # different moves from the same status
    ],
)
def test_concurrent_transitions_let_exactly_one_win(
    reg: RequestRegister, targets: tuple[S, S], expected: S | None
) -> None:
    rec = reg.register(RequestKind.ERASURE, IDENTITY, requested_by="op")
    outcomes = _race(reg, rec.id, targets, expected)
    errors = [o for o in outcomes if isinstance(o, LifecycleError)]
    winners = [o for o in outcomes if not isinstance(o, LifecycleError)]
    assert len(winners) == 1 and len(errors) == 1, outcomes
    final = reg.get(rec.id)
    assert final.status is winners[0].status  # type: ignore[attr-defined]
    assert len(reg.history(rec.id)) == 2
    assert len(_events(reg, rec.id)) == 2


def test_expected_status_guards_a_move(sqlite_reg: RequestRegister) -> None:
    rec = sqlite_reg.register(RequestKind.ERASURE, IDENTITY, requested_by="op")
    sqlite_reg.transition(rec.id, S.PLANNED, actor="planner", expected=S.RECEIVED)
    with pytest.raises(TerminalError, match="is 'planned', not 'received'"):
        sqlite_reg.close(rec.id, outcome=S.REJECTED, actor="lead", expected=S.RECEIVED)
    assert sqlite_reg.get(rec.id).status is S.PLANNED
    assert sqlite_reg.open_identity(rec.id) == IDENTITY


def _sqlite_files(url: str) -> list[Path]:
    db = Path(url.removeprefix("sqlite:///"))
    return [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]


def _dump_every_column(engine: Engine) -> list[bytes]:
    """Every value of every table in the database, as bytes."""
    meta = MetaData()
    meta.reflect(bind=engine)
    values: list[bytes] = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        values.append(bytes(value))
                    elif value is not None:
                        values.append(str(value).encode())
    return values


def test_closing_destroys_the_identity_everywhere(reg: RequestRegister, db_url: str) -> None:
    rec = reg.register(
        RequestKind.RECTIFICATION, IDENTITY, changes={"name": "Robin Q. Quill"}, requested_by="op"
    )
    engine = reg.ledger.engine
    with engine.connect() as conn:
        ciphertext = conn.execute(
            select(requests.c.identity_ciphertext).where(requests.c.id == rec.id)
        ).scalar_one()
    for status in (S.PLANNED, S.AWAITING_APPROVAL, S.APPROVED, S.EXECUTING, S.VERIFYING):
        reg.transition(rec.id, status, actor="worker", note="step done")
    closed = reg.close(rec.id, outcome=S.COMPLETED, actor="worker", note="all stores clean")

    assert closed.status is S.COMPLETED and closed.identity_destroyed
    assert closed.closed_at is not None and closed.subject == rec.subject
    for opener in (reg.open_identity, reg.open_changes):
        with pytest.raises(TerminalError, match="destroyed when the request closed"):
            opener(rec.id)
    kinds = [k for k, _ in _events(reg, rec.id)]
    assert kinds[0] == "request.received" and kinds[-1] == "request.closed"
    assert kinds.count("request.status_changed") == 5
    closed_detail = _events(reg, rec.id)[-1][1]
    assert closed_detail["from"] == "verifying" and closed_detail["to"] == "completed"
    assert closed_detail["note"]["chars"] == len("all stores clean")  # type: ignore[index]

    needles = [v.lower().encode() for v in (*IDENTITY.values(), "Robin Q. Quill")]
    needles += [b"robin.quill", b"quill@example"]
    if db_url.startswith("sqlite"):
        blobs = [p.read_bytes() for p in _sqlite_files(db_url)]
    else:
        blobs = _dump_every_column(engine)
    assert blobs
    for blob in blobs:
        lowered = blob.lower()
        for needle in needles:
            assert needle not in lowered
        assert bytes(ciphertext) not in blob
    for event in reg.ledger.events():
        text = repr(event).lower()
        assert "robin" not in text and "quill" not in text


def test_history_records_actor_and_note_in_order(sqlite_reg: RequestRegister) -> None:
    reg = sqlite_reg
    rec = reg.register(RequestKind.ACCESS, IDENTITY, requested_by="intake")
    reg.transition(rec.id, S.PLANNED, actor="planner", note="3 stores")
    reg.close(rec.id, outcome=S.REJECTED, actor="lead", note="identity not verified")
    steps = [(h.action, h.from_status, h.to_status, h.actor, h.note) for h in reg.history(rec.id)]
    assert steps == [
        ("received", None, S.RECEIVED, "intake", None),
        ("status_changed", S.RECEIVED, S.PLANNED, "planner", "3 stores"),
        ("closed", S.PLANNED, S.REJECTED, "lead", "identity not verified"),
    ]
    details = [d for _, d in _events(reg, rec.id)]
    assert all("identity not verified" not in str(d) for d in details)


def test_notes_and_reasons_holding_personal_data_are_refused(sqlite_reg: RequestRegister) -> None:
    # The backstop behind intake and the CLI: the register keeps notes verbatim.
    reg = sqlite_reg
    rec = reg.register(RequestKind.ERASURE, IDENTITY, requested_by="op")
    with pytest.raises(PersonalDataRefused, match=r"^note: holds an e-mail address;"):
        reg.transition(rec.id, S.PLANNED, actor="op", note="for robin.quill@example.com")
    with pytest.raises(PersonalDataRefused, match=r"^extension reason: holds a phone number;"):
        reg.extend(rec.id, days=5, reason="called on +44 20 7946 0000", actor="op")
    assert reg.get(rec.id) == rec
    assert [h.action for h in reg.history(rec.id)] == ["received"]
