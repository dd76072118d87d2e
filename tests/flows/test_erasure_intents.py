"""Exactly-once erasure audit: intents before the commit, reconciled after a crash.

A crash is simulated in process: the erasure task's ``crash_point`` raises ``Crash`` (a
``BaseException``, so nothing on the way catches it) at the named point. A SQL
transaction still open there is rolled back as a killed process's would be; one that
committed stays. Then ``execute_store`` runs again, as a resumed request does, and the
ledger must say exactly what the store changed: no batch lost, none counted twice, and no
keys reported dropped that the crashed attempt had in fact erased. The demo CRM on SQLite
(and the demo S3 store over HTTP) with the real connectors.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from audit.events import StoredEvent
from config.schema import Policy
from connectors import registry
from connectors.base import Connector
from connectors.s3.config import S3Store
from connectors.sql.config import SqlStore
from core.engines import make_engine
from core.keys import KeyRing
from demo.crm_schema import crm_metadata
from demo.s3_server import LocalS3
from demo.seed_s3 import TICKETS_BUCKET, seed_s3
from demo.seed_sql import DemoData, seed_crm
from engine.intake import submit
from engine.request_support import request_context
from tasks import erasure_tasks
from tasks.erasure_tasks import execute_store, plan_store
from tasks.request_tasks import locate_store
from tests.flows.support import REQUESTER

CUSTOMERS = 40


class Crash(BaseException):
    """The process "dies" here."""


CrashAt = Callable[[str | None], None]


@pytest.fixture
def crash_at(monkeypatch: pytest.MonkeyPatch) -> CrashAt:
    """``crash_at("committed:crm")`` arms the erasure task's crash point; None disarms it."""

    def arm(point: str | None) -> None:
        def hook(phase: str, store: str = "request") -> None:
            if point == f"{phase}:{store}":
                raise Crash(point)

        monkeypatch.setattr(erasure_tasks, "crash_point", hook)

    return arm


def _sql_batches_of(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.sql.connector import SqlConnector

    def factory(store: SqlStore | S3Store, policy: Policy, keys: KeyRing) -> Connector:
        assert isinstance(store, SqlStore)
        return SqlConnector(store, policy, keys=keys, batch_size=size)

    monkeypatch.setitem(registry.CONNECTORS, "sql", factory)


@pytest.fixture
def crm(isolated_settings: Path) -> Iterator[tuple[str, DemoData]]:
    url = f"sqlite:///{isolated_settings / 'crm.db'}"
    yield url, seed_crm(url, customers=CUSTOMERS)


def _add_logins(url: str, customer_id: int, count: int) -> None:
    """Give the subject ``count`` more login events (a heavy footprint)."""
    table = crm_metadata().tables["login_events"]
    engine = make_engine(url)
    with engine.begin() as conn:
        start = int(conn.scalar(sa.select(sa.func.max(table.c.id))) or 0) + 1
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = [
            {
                "id": start + i,
                "customer_id": customer_id,
                "ip_address": "10.0.0.1",
                "occurred_at": now,
            }
            for i in range(count)
        ]
        conn.execute(sa.insert(table), rows)
    engine.dispose()


def _snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every CRM table, sorted: the whole store."""
    engine = make_engine(url)
    md = crm_metadata()
    with engine.connect() as conn:
        snap = {
            name: sorted(tuple(map(repr, r)) for r in conn.execute(sa.select(table)))
            for name, table in md.tables.items()
        }
    engine.dispose()
    return snap


def _changed(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> dict[str, int]:
    """Rows deleted or changed per table."""
    return {
        t: len(set(before[t]) - set(after[t])) for t in before if set(before[t]) - set(after[t])
    }


def _approved(stores: tuple[str, ...], data: DemoData) -> str:
    ctx = request_context()
    rid = submit(ctx, kind="erasure", identity=data.subject.identity, requested_by=REQUESTER).id
    for store in stores:
        locate_store.fn(rid, store)
        plan_store.fn(rid, store)
    ctx.progress.mark_approved(rid)
    return rid


def _ledger(rid: str, store: str) -> tuple[list[StoredEvent], StoredEvent]:
    events = [e for e in request_context().ledger.events(request_id=rid) if e.connector == store]
    [executed] = [e for e in events if e.kind == "erasure.executed"]
    return [e for e in events if e.kind == "erasure.batch"], executed


def _per_target(batches: list[StoredEvent], action: str) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for e in batches:
        if e.detail["action"] == action and e.target is not None:
            totals[e.target] += e.counts["affected"]
    return dict(totals)


def _assert_exact(rid: str, before: dict[str, list[Any]], after: dict[str, list[Any]]) -> None:
    """The ledger's deleted and masked counts are the rows the store lost or changed."""
    batches, executed = _ledger(rid, "crm")
    assert max(Counter((e.target, e.detail["keys_digest"]) for e in batches).values()) == 1
    changed = _changed(before, after)
    ledger = Counter(_per_target(batches, "delete")) + Counter(_per_target(batches, "mask"))
    assert dict(ledger) == changed
    assert executed.detail["batches"] == len(batches)
    assert executed.detail["dropped_keys"] == 0
    assert request_context().ledger.verify().ok


def _crashed(rid: str, store: str, point: str, crash_at: CrashAt) -> None:
    """Execute ``store``'s erasure into a crash at ``point``, then disarm it for the rerun."""
    crash_at(point)
    with pytest.raises(Crash):
        execute_store.fn(rid, store)
    crash_at(None)


def _crm_crashed_at(
    phase: str, crm: tuple[str, DemoData], crash_at: CrashAt
) -> tuple[str, str, dict[str, list[Any]]]:
    """An approved erasure of the CRM whose execution crashed at ``phase``: the store's
    URL, the request id and the store as it was before."""
    url, data = crm
    rid = _approved(("crm",), data)
    before = _snapshot(url)
    _crashed(rid, "crm", f"{phase}:crm", crash_at)
    return url, rid, before


def test_crash_between_commit_and_confirmation_records_the_committed_batches(
    crm: tuple[str, DemoData], crash_at: CrashAt
) -> None:
    url, rid, before = _crm_crashed_at("committed", crm, crash_at)
    progress = request_context().progress
    committed = _snapshot(url)
    assert committed != before  # the store committed ...
    assert progress.batches(rid, "crm") == []  # ... and nothing was confirmed
    intents = progress.intents(rid, "crm")
    assert intents and {i.attempt for i in intents} == {1}

    affected = execute_store.fn(rid, "crm")

    assert _snapshot(url) == committed  # not executed again
    assert progress.intents(rid, "crm") == []
    assert [b.keys_digest for b in progress.batches(rid, "crm")] == [
        i.record.keys_digest for i in intents
    ]
    assert affected == sum(i.record.affected for i in intents)
    row = progress.store(rid, "crm")
    assert row is not None and row.attempts == 1 and row.phase.value == "executed"
    _assert_exact(rid, before, committed)


def test_crash_between_intents_and_commit_executes_once(
    crm: tuple[str, DemoData], crash_at: CrashAt
) -> None:
    url, rid, before = _crm_crashed_at("prepared", crm, crash_at)
    progress = request_context().progress
    assert _snapshot(url) == before  # rolled back
    stale = progress.intents(rid, "crm")
    assert stale  # written down, never confirmed

    execute_store.fn(rid, "crm")

    after = _snapshot(url)
    assert after != before
    assert progress.intents(rid, "crm") == []
    row = progress.store(rid, "crm")
    assert row is not None and row.attempts == 2
    batches, _ = _ledger(rid, "crm")
    assert len(batches) == len(stale)  # the rolled-back attempt's intents were discarded
    _assert_exact(rid, before, after)


def test_a_heavy_erasure_interrupted_after_its_commit_is_audited_in_full(
    crm: tuple[str, DemoData], crash_at: CrashAt, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's reproduction, scaled down: ~5,000 rows in batches of 50 (~100 batches)."""
    url, data = crm
    _add_logins(url, data.subject.customer_id, 5_000)
    _sql_batches_of(50, monkeypatch)
    _, rid, before = _crm_crashed_at("committed", crm, crash_at)
    execute_store.fn(rid, "crm")

    after = _snapshot(url)
    batches, _ = _ledger(rid, "crm")
    assert len(batches) > 100
    deleted = sum(len(before[t]) - len(after[t]) for t in before)
    assert deleted > 5_000
    assert sum(_per_target(batches, "delete").values()) == deleted
    _assert_exact(rid, before, after)


def test_s3_calls_interrupted_before_confirmation_are_recorded_from_what_is_gone(
    crm: tuple[str, DemoData],
    local_s3: LocalS3,
    crash_at: CrashAt,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S3 is not transactional: each call's keys are an intent; after a crash the keys
    that are gone are recorded as deleted, the rest deleted by the rerun (AWS behaviour
    modelled: DeleteObjects by version id removes exactly those versions)."""
    from connectors.s3 import purge

    _, data = crm
    seed_s3(
        local_s3.client(),
        customer_ids=range(1, CUSTOMERS + 1),
        subject_customer_id=data.subject.customer_id,
        region=local_s3.region,
    )
    monkeypatch.setattr(purge, "chunks", functools.partial(purge.chunks, size=2))
    rid = _approved(("crm", "files"), data)
    plan = request_context().progress.plan(rid, "files")
    planned = sum(len(s["keys"]) for s in plan["steps"] if s["action"] == "delete")
    assert planned > 2  # several calls

    _crashed(rid, "files", "deleted:files", crash_at)  # a call returned, not confirmed
    execute_store.fn(rid, "files")

    batches, executed = _ledger(rid, "files")
    assert sum(e.counts["affected"] for e in batches) == planned
    assert executed.detail["dropped_keys"] == 0
    left = local_s3.client().list_object_versions(
        Bucket=TICKETS_BUCKET, Prefix=f"tickets/{data.subject.customer_id}/"
    )
    assert not left.get("Versions") and not left.get("DeleteMarkers")
