"""A batch's reference (migration 0011) on every backend: kept through intents and batches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import inspect

from audit.database import dispose_engines
from audit.ledger import Ledger
from audit.migrate import alembic_config, upgrade
from core.engines import make_engine
from core.keys import KeyRing
from state.progress import BatchIntent, BatchRecord, RequestProgress
from state.register import RequestKind, RequestRegister

KEYS = KeyRing.from_master(b"m" * 32)


def _columns(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns("request_batches")}
    finally:
        engine.dispose()


def test_the_migration_adds_and_drops_the_column(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        assert "reference" in _columns(db_url)
        command.downgrade(alembic_config(engine), "0010_external_reference")
        assert "reference" not in _columns(db_url)
        upgrade(engine)
        assert "reference" in _columns(db_url)
    finally:
        engine.dispose()


@pytest.fixture
def progress(db_url: str) -> Iterator[tuple[RequestProgress, str]]:
    ledger = Ledger.open(db_url, keys=KEYS, actor="test")
    record = RequestRegister(ledger, KEYS).register(
        RequestKind.ERASURE, {"email": "lee.fern@example.com"}, requested_by="op"
    )
    yield RequestProgress(ledger.engine, KEYS), record.id
    dispose_engines()


def test_a_reference_is_kept_from_confirmation_to_batch(
    progress: tuple[RequestProgress, str],
) -> None:
    p, rid = progress
    digest = "d" * 64
    intents = [
        BatchIntent(BatchRecord("mailer", "Example Mail", "delete", 2, digest), [["r1"]], 0),
        BatchIntent(BatchRecord("mailer", "Example Mail", "delete", 1, digest), [["r2"]], 1),
    ]
    p.record_intents(rid, "mailer", 1, intents)
    assert [i.record.reference for i in p.intents(rid, "mailer")] == [None, None]

    # a call returned with the provider's reference; a crash left the other unconfirmed
    done = BatchRecord("mailer", "Example Mail", "delete", 2, digest, "REQ-0001")
    p.complete_intent(rid, "mailer", 1, BatchIntent(done, [["r1"]], 0))
    [left] = p.intents(rid, "mailer")
    settled = BatchRecord("mailer", "Example Mail", "delete", 1, digest, "REQ-0002")
    p.settle_intents(rid, "mailer", {left.row: BatchIntent(settled, [["r2"]], 1)}, executed=True)
    p.record_batch(rid, BatchRecord("crm", "customers", "delete", 1, digest), committed=True)

    assert [b.reference for b in p.batches(rid, "mailer")] == ["REQ-0001", "REQ-0002"]
    assert p.batches(rid, "crm") == [BatchRecord("crm", "customers", "delete", 1, digest)]
    assert p.batches(rid, "crm")[0].reference is None
