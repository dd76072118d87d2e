"""Migration 0001_ledger creates exactly the tables the code uses, and can be undone."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from audit.migrate import alembic_config, current, upgrade
from audit.tables import GENESIS_HASH, audit_head, metadata
from core.engines import make_engine

LEDGER_TABLES = {"audit_events", "audit_head", "audit_checkpoints"}


def _table_of(diff: Any) -> str:
    """The table an Alembic autogenerate diff is about."""
    if isinstance(diff, list):  # column modifications come grouped
        diff = diff[0]
    kind, *rest = diff
    if kind in ("add_table", "remove_table"):
        return str(rest[0].name)
    if kind in ("add_column", "remove_column") or kind.startswith("modify_"):
        return str(rest[1])
    return str(rest[0].table.name)  # indexes and constraints


def test_migration_matches_the_table_definitions(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0001_ledger")
        assert current(engine) == "0001_ledger"
        assert set(inspect(engine).get_table_names()) >= LEDGER_TABLES
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            diffs = compare_metadata(context, metadata)
            ledger_diffs = [d for d in diffs if _table_of(d) in LEDGER_TABLES]
            head = conn.execute(select(audit_head)).all()
        assert ledger_diffs == []
        assert [tuple(r) for r in head] == [(1, 0, GENESIS_HASH)]

        command.downgrade(alembic_config(engine), "base")
        assert not LEDGER_TABLES & set(inspect(engine).get_table_names())
        upgrade(engine)  # and forward again to head
        assert set(inspect(engine).get_table_names()) >= LEDGER_TABLES
    finally:
        engine.dispose()
