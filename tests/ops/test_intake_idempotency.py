"""No request registered twice: repeated deliveries and re-sent tickets (``idempotency``).

The guards live in the audit database (migration 0012), so a "restart" here is a new
app and service on the same database, with the process's engines closed in between.
Concurrent copies are made to race past the early checks (a barrier) so that the
unique constraints decide. Each runs on SQLite and PostgreSQL; PostgreSQL skips when
unreachable, and fails under CI=true (``tests/conftest.py``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select

from audit.database import dispose_engines
from audit.migrate import alembic_config, upgrade
from audit.tables import metadata
from config.settings import get_settings
from core.engines import make_engine
from ops.intake import idempotency, service
from ops.intake.idempotency import Delivery, purge_expired, ticket_key
from ops.intake.reference import get_reference, store_reference
from ops.intake.signing import signed_headers
from state.register import RequestStatus
from state.register_tables import intake_deliveries, intake_tickets
from tests.ops.intake_support import (
    EMAIL,
    SECRET,
    FakeRuns,
    basic,
    body_of,
    client,
    configure,
    context,
    erasure,
)

GUARD_TABLES = {"intake_deliveries", "intake_tickets"}
WEBHOOK = "/webhook/requests"


# -- the migration -------------------------------------------------------------------------


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _diffs_of_guard_tables(diffs: list[Any]) -> list[Any]:
    """Autogenerate diffs about the guard tables (the model and 0012 must agree)."""
    found = []
    for diff in diffs:
        first = diff[0] if isinstance(diff, list) else diff
        text = repr(first)
        if any(name in text for name in GUARD_TABLES):
            found.append(diff)
    return found


def test_the_migration_creates_and_drops_the_tables(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        assert _tables(db_url) >= GUARD_TABLES
        with engine.connect() as conn:
            context_ = MigrationContext.configure(conn, opts={"compare_type": False})
            assert _diffs_of_guard_tables(compare_metadata(context_, metadata)) == []
        command.downgrade(alembic_config(engine), "0011_batch_reference")
        assert not _tables(db_url) & GUARD_TABLES
        assert "subject_requests" in _tables(db_url)
        upgrade(engine)
        assert _tables(db_url) >= GUARD_TABLES
    finally:
        engine.dispose()


# -- the webhook on SQLite and PostgreSQL ------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_url(
    request: pytest.FixtureRequest,
    isolated_settings: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The test configuration, its audit database on the backend; engines closed after."""
    configure(tmp_path, isolated_settings, monkeypatch)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    else:
        request.applymarker(pytest.mark.service)
        url = str(request.getfixturevalue("pg_url"))
    monkeypatch.setenv("LIFECYCLE_AUDIT_URL", url)
    get_settings.cache_clear()
    try:
        yield url
    finally:
        dispose_engines()


def _signed(payload: Any, now: float | None = None) -> tuple[bytes, dict[str, str]]:
    body = body_of(payload)
    return body, {"Content-Type": "application/json", **signed_headers(SECRET, body, now)}


def _restart() -> None:
    """What a restart of the service drops: its engines (and the app, made anew)."""
    dispose_engines()


def _rows(table: Any) -> list[dict[str, Any]]:
    ctx = context()
    with ctx.ledger.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table))]


def _request_ids() -> list[str]:
    return sorted(r.id for r in context().register.list())


def test_a_retry_after_a_restart_is_refused_and_registers_once(audit_url: str) -> None:
    runs = FakeRuns()
    body, headers = _signed(erasure(ticket="ZD-1001"))
    with client(runs) as api:
        first = api.post(WEBHOOK, content=body, headers=headers)
    assert first.status_code == 201, first.text
    _restart()
    with client(runs) as api:  # a new app and service, the same audit database
        again = api.post(WEBHOOK, content=body, headers=headers)
    assert again.status_code == 409, again.text
    assert again.json() == {
        "error": "this delivery was received before",
        "request_id": first.json()["request_id"],
    }
    assert EMAIL not in again.text
    assert _request_ids() == [first.json()["request_id"]]
    assert len(runs.requested) == 1
    # Only the signature's digest is kept, with the request and an expiry: never the body.
    [row] = _rows(intake_deliveries)
    signature = headers["X-Lifecycle-Signature"]
    assert row["digest"] == hashlib.sha256(signature.encode()).hexdigest()
    assert row["request_id"] == first.json()["request_id"]
    assert row["expires_at"] > datetime.now(UTC) + timedelta(seconds=590)
    assert "example.com" not in json.dumps(
        _rows(intake_deliveries) + _rows(intake_tickets), default=str
    )


def test_the_same_ticket_re_sent_answers_with_the_open_request(audit_url: str) -> None:
    runs = FakeRuns()
    with client(runs) as api:
        body, headers = _signed(erasure(ticket="ZD-2002"))
        first = api.post(WEBHOOK, content=body, headers=headers)
        _restart()
        # The help desk re-sends the ticket: another delivery (timestamp, note) and body.
        body, headers = _signed(erasure(ticket="ZD-2002", note="re-sent"), time.time() - 5)
        again = api.post(WEBHOOK, content=body, headers=headers)
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    request_id = first.json()["request_id"]
    assert again.json() == {
        "request_id": request_id,
        "status": "received",
        "already_registered": True,
        "message": "this ticket already has an open request of this kind; "
        "nothing new was registered",
    }
    assert EMAIL not in again.text and "ZD-2002" not in again.text
    assert _request_ids() == [request_id]
    assert runs.requested == [request_id]
    assert get_reference(context().ledger.engine, request_id) == "ZD-2002"


def test_a_ticket_is_claimed_per_kind(audit_url: str) -> None:
    runs = FakeRuns()
    rectify = {
        "kind": "rectification",
        "identity": {"email": EMAIL},
        "changes": {"customers.email": "robin.new@example.com"},
        "ticket": "ZD-3003",
    }
    with client(runs) as api:
        erase = api.post(
            WEBHOOK, content=(s := _signed(erasure(ticket="ZD-3003")))[0], headers=s[1]
        )
        fix = api.post(WEBHOOK, content=(s := _signed(rectify))[0], headers=s[1])
    assert (erase.status_code, fix.status_code) == (201, 201), fix.text
    assert erase.json()["request_id"] != fix.json()["request_id"]
    assert len(_request_ids()) == 2


def test_a_ticket_whose_request_closed_starts_a_new_one(audit_url: str) -> None:
    runs = FakeRuns()
    with client(runs) as api:
        first = api.post(
            WEBHOOK, content=(s := _signed(erasure(ticket="ZD-4004")))[0], headers=s[1]
        )
        old = first.json()["request_id"]
        context().register.close(old, outcome=RequestStatus.REJECTED, actor="operator")
        body, headers = _signed(erasure(ticket="ZD-4004", note="asked again"))
        second = api.post(WEBHOOK, content=body, headers=headers)
        body, headers = _signed(erasure(ticket="ZD-4004", note="and again"))
        third = api.post(WEBHOOK, content=body, headers=headers)
    assert second.status_code == 201, second.text
    new = second.json()["request_id"]
    assert new != old
    assert (third.status_code, third.json()["request_id"]) == (200, new)
    assert _request_ids() == sorted([old, new])
    [claim] = _rows(intake_tickets)
    assert claim["ticket_key"] == ticket_key("erasure", "ZD-4004")
    assert claim["request_id"] == new


def _racing(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make the first two calls of ``service.<name>`` (an early check) wait for each other,
    so both copies pass it and the database's constraint decides."""
    real: Callable[..., Any] = getattr(service, name)
    barrier = threading.Barrier(2, timeout=60)
    calls = iter(range(1_000_000))
    lock = threading.Lock()

    def both_pass(*args: Any) -> Any:
        found = real(*args)
        with lock:
            call = next(calls)
        if call < 2:
            barrier.wait()
        return found

    monkeypatch.setattr(service, name, both_pass)


def _post_together(api: httpx.Client, sends: list[tuple[bytes, dict[str, str]]]) -> list[Any]:
    with ThreadPoolExecutor(len(sends)) as pool:
        futures = [pool.submit(api.post, WEBHOOK, content=b, headers=h) for b, h in sends]
        return [f.result() for f in futures]


def test_two_concurrent_copies_of_a_delivery_register_exactly_one(
    audit_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _racing(monkeypatch, "earlier_delivery")
    runs = FakeRuns()
    sent = _signed(erasure())
    with client(runs) as api:
        answers = _post_together(api, [sent, sent])
    by_status = {a.status_code: a.json() for a in answers}
    assert sorted(by_status) == [201, 409], [a.text for a in answers]
    assert by_status[409]["request_id"] == by_status[201]["request_id"]
    assert _request_ids() == [by_status[201]["request_id"]]
    assert len(runs.requested) == 1
    assert len(list(context().ledger.events(kinds=["request.received"]))) == 1


def test_two_concurrent_deliveries_of_a_ticket_register_exactly_one(
    audit_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _racing(monkeypatch, "open_request_of_ticket")
    runs = FakeRuns()
    payload = erasure(ticket="ZD-5005")
    with client(runs) as api:
        answers = _post_together(api, [_signed(payload), _signed(payload, time.time() - 3)])
    by_status = {a.status_code: a.json() for a in answers}
    assert sorted(by_status) == [200, 201], [a.text for a in answers]
    assert by_status[200]["request_id"] == by_status[201]["request_id"]
    assert _request_ids() == [by_status[201]["request_id"]]
    assert len(runs.requested) == 1


def test_expired_deliveries_are_purged(audit_url: str) -> None:
    runs = FakeRuns()
    with client(runs) as api:
        first = api.post(WEBHOOK, content=(s := _signed(erasure()))[0], headers=s[1])
        assert first.status_code == 201
        now = datetime.now(UTC)
        with context().ledger.engine.begin() as conn:
            conn.execute(
                insert(intake_deliveries),
                [
                    {
                        "digest": "e" * 64,
                        "request_id": "req_00000000000000e1",
                        "expires_at": now - timedelta(seconds=1),
                    },
                    {
                        "digest": "f" * 64,
                        "request_id": "req_00000000000000f1",
                        "expires_at": now + timedelta(hours=1),
                    },
                ],
            )
        body, headers = _signed(erasure(note="another"))
        second = api.post(WEBHOOK, content=body, headers=headers)
    assert second.status_code == 201
    kept = {r["digest"] for r in _rows(intake_deliveries)}
    assert "e" * 64 not in kept and "f" * 64 in kept
    assert len(kept) == 3  # the live row and both deliveries
    later = datetime.now(UTC) + timedelta(hours=2)
    assert purge_expired(context().ledger.engine, later) == 3
    assert _rows(intake_deliveries) == []


def test_a_refused_delivery_is_not_remembered(audit_url: str) -> None:
    runs = FakeRuns()
    body, headers = _signed(erasure(identity={"email": "robin.quill@@example.com"}))
    with client(runs) as api:
        answers = [api.post(WEBHOOK, content=body, headers=headers) for _ in range(2)]
    assert [a.status_code for a in answers] == [422, 422]
    assert _rows(intake_deliveries) == [] and _request_ids() == []


def test_a_crash_before_the_commit_leaves_the_retry_free(
    audit_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure inside the registering transaction (after the guard's insert) undoes the
    delivery's row with the request: the retry registers, once."""
    real = store_reference
    failures = iter([True])

    def fails_once(*args: Any) -> None:
        if next(failures, False):
            raise RuntimeError("the process died here")
        real(*args)

    monkeypatch.setattr(idempotency, "store_reference", fails_once)
    runs = FakeRuns()
    body, headers = _signed(erasure(ticket="ZD-6006"))
    with client(runs) as api:
        crashed = api.post(WEBHOOK, content=body, headers=headers)
        assert crashed.status_code == 500
        assert _request_ids() == [] and _rows(intake_deliveries) == []
        assert _rows(intake_tickets) == []
        _restart()
        retry = api.post(WEBHOOK, content=body, headers=headers)
        again = api.post(WEBHOOK, content=body, headers=headers)
    assert retry.status_code == 201, retry.text
    assert (again.status_code, again.json()["request_id"]) == (409, retry.json()["request_id"])
    assert _request_ids() == [retry.json()["request_id"]]


def test_a_registered_request_whose_run_failed_is_not_registered_again(audit_url: str) -> None:
    runs = FakeRuns(fail=True)
    body, headers = _signed(erasure())
    with client(runs) as api:
        first = api.post(WEBHOOK, content=body, headers=headers)
        _restart()
        again = api.post(WEBHOOK, content=body, headers=headers)
    assert first.status_code == 201 and first.json()["flow_run_id"] is None
    assert (again.status_code, again.json()["request_id"]) == (409, first.json()["request_id"])
    assert _request_ids() == [first.json()["request_id"]]


def test_the_delivery_expires_after_twice_the_tolerance() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    delivery = Delivery.of("sha256=" + "a" * 64, 300, now)
    assert delivery.expires_at == now + timedelta(seconds=600)
    assert delivery.digest == hashlib.sha256(("sha256=" + "a" * 64).encode()).hexdigest()
    assert ticket_key("erasure", "ZD-1") != ticket_key("erasure", "zd-1")
    assert ticket_key("erasure", "ZD-1") != ticket_key("access", "ZD-1")


def test_the_page_answers_a_ticket_with_its_open_request(audit_url: str) -> None:
    runs = FakeRuns()
    form = {"kind": "erasure", "identity.email": EMAIL, "requested_by": "desk", "ticket": "FD-7"}
    with client(runs) as api:
        first = api.post("/requests", data=form, headers=basic())
        again = api.post("/requests", data=form, headers=basic())
    assert (first.status_code, again.status_code) == (201, 200), again.text
    [request_id] = runs.requested
    assert "Request already registered" in again.text and request_id in again.text
    assert EMAIL not in again.text and "FD-7" not in again.text
    assert _request_ids() == [request_id]
