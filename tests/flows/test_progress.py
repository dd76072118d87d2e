"""Request progress tables: migration, phases that never go backwards, sealing, forgetting."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import inspect, select

from audit.database import dispose_engines
from audit.ledger import Ledger
from audit.migrate import alembic_config, current, upgrade
from audit.tables import metadata
from core.engines import make_engine
from core.keys import KeyRing
from core.package import PassphraseRecipient, X25519Recipient
from state.check_tables import transfer_checks
from state.progress import BatchRecord, Phase, RequestProgress
from state.progress_tables import request_progress, request_runs
from state.register import RequestKind, RequestRegister
from state.sweep_tables import SWEEP_TABLES

KEYS = KeyRing.from_master(b"m" * 32)
PROGRESS_TABLES = {"request_progress", "request_batches", "request_runs"}
OWN_TABLES = PROGRESS_TABLES | {t.name for t in SWEEP_TABLES} | {transfer_checks.name}
"""Our progress tables (requests, sweeps, transfer checks): migrations must match the models."""


def _table_of(diff: Any) -> str:
    if isinstance(diff, list):
        diff = diff[0]
    kind, *rest = diff
    if kind in ("add_table", "remove_table"):
        return str(rest[0].name)
    if kind in ("add_column", "remove_column") or kind.startswith("modify_"):
        return str(rest[1])
    return str(rest[0].table.name)


def test_migration_matches_the_table_definitions(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
        assert current(engine) == head
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            diffs = [d for d in compare_metadata(context, metadata) if _table_of(d) in OWN_TABLES]
        assert diffs == []
        command.downgrade(alembic_config(engine), "0002_register")
        assert not OWN_TABLES & set(inspect(engine).get_table_names())
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= OWN_TABLES
    finally:
        engine.dispose()


@pytest.fixture
def progress(db_url: str) -> Iterator[tuple[RequestProgress, str]]:
    ledger = Ledger.open(db_url, keys=KEYS, actor="test")
    register = RequestRegister(ledger, KEYS)
    record = register.register(
        RequestKind.ERASURE, {"email": "lee.fern@example.com"}, requested_by="op"
    )
    yield RequestProgress(ledger.engine, KEYS), record.id
    dispose_engines()


def _locate(progress: RequestProgress, rid: str, store: str, position: int) -> None:
    progress.record_located(
        rid,
        store,
        position,
        counts={"customers": 1},
        findings={"targets": [{"target": "customers", "keys": [[7]]}], "warnings": []},
        derived={"customer_id": {"7"}} if position == 0 else {"cart_id": {"c9"}},
    )


def test_phases_only_move_forward(progress: tuple[RequestProgress, str]) -> None:
    p, rid = progress
    _locate(p, rid, "crm", 0)
    _locate(p, rid, "shop", 1)
    p.record_skipped(rid, "files", 2, "no connector")
    _locate(p, rid, "crm", 0)  # a rerun records nothing new
    assert [(s.store, s.phase) for s in p.stores(rid)] == [
        ("crm", Phase.LOCATED),
        ("shop", Phase.LOCATED),
        ("files", Phase.SKIPPED),
    ]
    assert p.derived_identities(rid) == {"customer_id": {"7"}, "cart_id": {"c9"}}
    assert p.derived_identities(rid, before=1) == {"customer_id": {"7"}}
    assert p.findings(rid, "crm")["targets"][0]["keys"] == [[7]]

    plan = {"store": "crm", "steps": [], "warnings": []}
    summary = [
        {"target": "customers", "action": "defer", "count": 1, "reason": "hold", "until": None}
    ]
    assert p.record_plan(rid, "crm", plan=plan, digest="d" * 64, summary=summary)
    assert not p.record_plan(rid, "crm", plan=plan, digest="e" * 64, summary=[])
    assert p.plan(rid, "crm") == plan
    p.mark_approved(rid)
    assert p.store(rid, "crm").phase is Phase.APPROVED  # type: ignore[union-attr]
    assert p.store(rid, "shop").phase is Phase.LOCATED  # type: ignore[union-attr]
    assert p.begin_attempt(rid, "crm") == 0 and p.begin_attempt(rid, "crm") == 1

    batch = BatchRecord("crm", "customers", "delete", 1, "f" * 64)
    p.record_batch(rid, batch, committed=True)
    assert p.store(rid, "crm").phase is Phase.EXECUTED  # type: ignore[union-attr]
    assert p.batches(rid, "crm") == [batch]
    p.record_verification(rid, "crm", {"remaining": {"customers": 1}}, clean=False)
    assert p.store(rid, "crm").phase is Phase.EXECUTED  # type: ignore[union-attr]
    p.record_verification(rid, "crm", {"remaining": {}}, clean=True)
    assert p.store(rid, "crm").phase is Phase.VERIFIED  # type: ignore[union-attr]

    assert p.runs.claim_completion(rid) and not p.runs.claim_completion(rid)


def test_secrets_are_sealed_and_forgotten(progress: tuple[RequestProgress, str]) -> None:
    p, rid = progress
    _locate(p, rid, "crm", 0)
    p.runs.set_recipient(rid, PassphraseRecipient(b"open sesame please"))
    assert p.runs.recipient(rid) == PassphraseRecipient(b"open sesame please")
    engine = p._engine
    with engine.connect() as conn:
        row = conn.execute(select(request_progress)).one()
        run = conn.execute(select(request_runs)).one()
    assert b"customer_id" not in bytes(row.derived_ciphertext)
    assert b"sesame" not in bytes(run.recipient_ciphertext)

    p.forget(rid)
    with engine.connect() as conn:
        row = conn.execute(select(request_progress)).one()
        run = conn.execute(select(request_runs)).one()
    assert row.findings is None and row.plan is None and row.derived_ciphertext is None
    assert run.recipient_ciphertext is None and run.recipient_nonce is None
    assert p.derived_identities(rid) == {}
    assert p.store(rid, "crm").counts == {"customers": 1}  # type: ignore[union-attr]
    p.vacuum()


def test_public_key_recipient_round_trips(progress: tuple[RequestProgress, str]) -> None:
    p, rid = progress
    key = X25519PrivateKey.generate().public_key()
    p.runs.set_recipient(rid, X25519Recipient(key))
    got = p.runs.recipient(rid)
    assert isinstance(got, X25519Recipient)
    assert got.public_key.public_bytes_raw() == key.public_bytes_raw()
