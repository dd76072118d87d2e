"""Migration 0015 creates exactly the modelled incident tables on every backend, and undoes."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from audit.migrate import HEAD, alembic_config, current, upgrade
from audit.tables import metadata
from core.engines import make_engine
from state.incident_tables import INCIDENT_TABLES

NAMES = {t.name for t in INCIDENT_TABLES}


def _incident_diffs(diffs: list[Any]) -> list[Any]:
    return [d for d in diffs if any(n in repr(d) for n in NAMES)]


def test_the_migration_creates_the_modelled_tables_and_drops_them(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        assert current(engine) == HEAD
        assert set(inspect(engine).get_table_names()) >= NAMES
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            assert _incident_diffs(compare_metadata(context, metadata)) == []
        command.downgrade(alembic_config(engine), "0014_drift_checks")
        left = set(inspect(engine).get_table_names())
        assert not NAMES & left
        assert "drift_checks" in left  # the revision before stays
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= NAMES
    finally:
        engine.dispose()
