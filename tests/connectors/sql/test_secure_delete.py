"""Secure deletion: after an erasure the subject's values are gone from the files themselves."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.base import Action, StorePlan
from connectors.sql.execute import execute_plan, finish_secure_erasure
from connectors.sql.schema import StoreSchema
from core.engines import make_engine
from core.errors import TerminalError
from tests.connectors.sql.conftest import OTHER_EMAIL, SUBJECT_EMAIL, SqlWorld, build_world
from tests.connectors.sql.test_execute import MASKER, erasure_plan

SUBJECT_VALUES = (SUBJECT_EMAIL.encode(), b"alice example")


def file_bytes(db: Path) -> bytes:
    """The database file and its WAL, lowercased (the subject's email is stored mixed-case)."""
    wal = db.with_name(db.name + "-wal")
    data = db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    return data.lower()


def touched(plan: StorePlan) -> list[str]:
    return sorted({s.target for s in plan.steps if s.action in (Action.DELETE, Action.MASK)})


def erase(world: SqlWorld, engine: sa.Engine) -> tuple[StoreSchema, StorePlan]:
    """Plan with the world's engine, execute with ``engine``."""
    schema, _findings, plan = erasure_plan(world)
    execute_plan(engine, schema, plan, MASKER, lambda _r: None, 100)
    return schema, plan


def sqlite_world(tmp_path: Path) -> tuple[SqlWorld, Path]:
    db = tmp_path / "crm.sqlite"
    world = build_world(f"sqlite:///{db}")
    # Closing the last connection checkpoints the WAL: the data now sits in the file.
    world.engine.dispose()
    assert all(value in file_bytes(db) for value in SUBJECT_VALUES)
    return world, db


@pytest.mark.parametrize("vacuum", [False, True])
def test_sqlite_erased_values_are_in_neither_the_file_nor_the_wal(
    tmp_path: Path, vacuum: bool
) -> None:
    world, db = sqlite_world(tmp_path)

    schema, plan = erase(world, world.engine)
    finish_secure_erasure(world.engine, schema, touched(plan), vacuum=vacuum)

    data = file_bytes(db)
    for value in SUBJECT_VALUES:
        assert value not in data
    assert OTHER_EMAIL.encode() in data  # the search does find what is still there
    with world.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    world.engine.dispose()


def test_control_without_secure_delete_and_checkpoint_the_values_survive(tmp_path: Path) -> None:
    """The same search finds the erased values when the engine does not zero them."""
    world, db = sqlite_world(tmp_path)
    plain = sa.create_engine(f"sqlite:///{db}")

    @sa.event.listens_for(plain, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "secure_delete=OFF"):
            dbapi_conn.execute(f"PRAGMA {pragma}")

    erase(world, plain)

    with plain.connect() as conn:  # the rows are gone for SQL ...
        emails = conn.exec_driver_sql("SELECT lower(email) FROM customers").scalars().all()
        assert SUBJECT_EMAIL not in emails
    data = file_bytes(db)  # ... but not from the bytes
    assert any(value in data for value in SUBJECT_VALUES)
    plain.dispose()
    world.engine.dispose()


def test_undeclared_tables_are_refused(tmp_path: Path) -> None:
    world, _db = sqlite_world(tmp_path)
    schema, _findings, _plan = erasure_plan(world)
    with pytest.raises(TerminalError, match="undeclared tables: sqlite_master"):
        finish_secure_erasure(world.engine, schema, ["sqlite_master"], vacuum=False)
    world.engine.dispose()


@pytest.mark.service
def test_postgresql_vacuum_runs_on_the_touched_tables(pg_url: str) -> None:
    world = build_world(pg_url)
    try:
        schema, plan = erase(world, world.engine)
        tables = touched(plan)

        finish_secure_erasure(world.engine, schema, tables, vacuum=True)

        stats = "SELECT relname, last_vacuum IS NOT NULL, n_dead_tup FROM pg_stat_user_tables"
        while True:  # statistics arrive asynchronously: poll until they show it, no deadline
            with world.engine.connect() as conn:
                rows = {r[0]: (r[1], r[2]) for r in conn.execute(sa.text(stats))}
            done = {
                t for t in tables if rows.get(t, (False, 1))[0] or rows.get(t, (False, 1))[1] == 0
            }
            vacuumed = any(rows.get(t, (False, 1))[0] for t in tables)
            if done == set(tables) and vacuumed:
                break
            time.sleep(0.1)
        assert done == set(tables)
        assert any(rows[t][0] for t in tables)  # at least the statistics show the VACUUM
    finally:
        world.engine.dispose()


@pytest.mark.service
def test_mariadb_optimize_runs_and_without_vacuum_nothing_is_called(mariadb_url: str) -> None:
    world = build_world(mariadb_url)
    try:  # disposed even when an assertion fails: pymysql warns from __del__ otherwise
        schema, plan = erase(world, world.engine)
        statements: list[str] = []
        sa.event.listen(world.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

        finish_secure_erasure(world.engine, schema, touched(plan), vacuum=False)
        assert statements == []
        finish_secure_erasure(world.engine, schema, touched(plan), vacuum=True)

        assert len(statements) == len(touched(plan))
        assert all(s.startswith("OPTIMIZE TABLE") for s in statements)
    finally:
        world.engine.dispose()


def test_make_engine_turns_secure_delete_on(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar_one() == 1
    engine.dispose()
