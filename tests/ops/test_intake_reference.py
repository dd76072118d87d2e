"""The external reference column (migration 0010) on every backend, and one migration head."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from audit.migrate import HEAD, alembic_config, upgrade
from config.settings import get_settings
from core.engines import make_engine
from core.free_text import FreeTextRefused
from ops.intake.models import IntakeRequest
from ops.intake.reference import check_ticket, get_reference, set_reference
from ops.intake.service import Intake
from tests.ops.intake_support import EMAIL, FakeRuns, configure, context


def test_the_migrations_have_one_head() -> None:
    engine = make_engine("sqlite://")
    try:
        heads = ScriptDirectory.from_config(alembic_config(engine)).get_heads()
    finally:
        engine.dispose()
    assert len(heads) == 1, heads
    assert heads == [HEAD]  # audit.migrate skips Alembic for a database at HEAD


def _columns(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns("subject_requests")}
    finally:
        engine.dispose()


def test_the_migration_adds_and_drops_the_column(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        assert "external_reference" in _columns(db_url)
        command.downgrade(alembic_config(engine), "0009_approval_decisions")
        assert "external_reference" not in _columns(db_url)
        upgrade(engine)
        assert "external_reference" in _columns(db_url)
    finally:
        engine.dispose()


def test_a_ticket_is_stored_with_the_request(
    db_url: str, isolated_settings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(tmp_path, isolated_settings, monkeypatch)
    monkeypatch.setenv("LIFECYCLE_AUDIT_URL", db_url)
    get_settings.cache_clear()
    runs = FakeRuns()
    req = IntakeRequest(kind="erasure", identity={"email": EMAIL}, ticket="ZD-4711/a")
    result = Intake(start_run=runs).register(req)
    ctx = context()
    try:
        assert get_reference(ctx.ledger.engine, result.request_id) == "ZD-4711/a"
        set_reference(ctx.ledger.engine, result.request_id, "ZD-4712")
        assert get_reference(ctx.ledger.engine, result.request_id) == "ZD-4712"
        other = Intake(start_run=runs).register(
            IntakeRequest(kind="erasure", identity={"email": EMAIL})
        )
        assert get_reference(ctx.ledger.engine, other.request_id) is None
    finally:
        ctx.ledger.engine.dispose()


@pytest.mark.parametrize("ticket", ["ZD-4711", "#4711", "INC0012345", "12345678", "FD/2024/88"])
def test_ordinary_ticket_ids_pass(ticket: str) -> None:
    assert check_ticket(ticket) == ticket


@pytest.mark.parametrize(
    "ticket", [EMAIL, "+44 20 7946 0000", "020 7946 0000", "(202) 555-0143", "00 44 20 7946 0000"]
)
def test_tickets_holding_personal_data_are_refused(ticket: str) -> None:
    with pytest.raises(FreeTextRefused) as caught:
        check_ticket(ticket)
    assert caught.value.field == "ticket"
    assert ticket not in str(caught.value)
