"""The drift record (migration 0014) on every backend, and run-to-run comparison.

The migration creates exactly the modelled ``drift_checks`` table and can be undone; runs
are read back newest first; a run's findings compare with the last as new, persisting
and resolved.
"""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from audit.migrate import HEAD, alembic_config, current, upgrade
from audit.tables import metadata
from core.engines import make_engine
from discovery.drift import compare, finding
from state.drift_checks import DriftChecks, new_drift_id
from state.register_tables import ID_LEN


def _drift_diffs(diffs: list[Any]) -> list[Any]:
    return [d for d in diffs if "drift_checks" in repr(d[0] if isinstance(d, list) else d)]


def test_the_migration_creates_the_modelled_table_and_drops_it(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        assert current(engine) == HEAD == "0015_incidents"
        assert "drift_checks" in inspect(engine).get_table_names()
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            assert _drift_diffs(compare_metadata(context, metadata)) == []
        command.downgrade(alembic_config(engine), "0013_submission_batches")
        assert "drift_checks" not in inspect(engine).get_table_names()
        assert "transfer_checks" in inspect(engine).get_table_names()
        upgrade(engine)
        assert "drift_checks" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_runs_are_recorded_and_read_back_newest_first(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        checks = DriftChecks(engine)
        assert checks.latest() is None
        first = [finding("sql.undeclared-table", "shop", "coupons", "not declared").to_json()]
        second = [finding("sql.table-vanished", "shop", "notes", "gone").to_json()]
        ids = [new_drift_id(), new_drift_id()]
        for check_id, found in zip(ids, (first, second), strict=True):
            with engine.begin() as conn:
                DriftChecks.record(check_id, found, None)(conn)
        runs = checks.recent(5)
        assert [r.id for r in runs] == ids[::-1]
        assert (runs[0].total, runs[0].high, runs[1].high) == (1, 1, 0)
        assert runs[0].findings == second
        assert ids[0].startswith("drf_") and len(ids[0]) == ID_LEN
    finally:
        engine.dispose()


def test_new_persisting_and_resolved() -> None:
    a = finding("sql.undeclared-table", "shop", "a", "not declared")
    b = finding("sql.unreachable-table", "shop", "t", "not reached")
    c = finding("sql.table-vanished", "shop", "c", "gone")
    result = compare([a, b], [b, c])
    assert result.new == (c,) and result.persisting == (b,) and result.resolved == (a,)
    assert result.current == (c, b)  # high first
    assert result.high == (c,)
    assert result.status_of(c) == "new" and result.status_of(b) == "persisting"
