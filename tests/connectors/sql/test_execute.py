"""Executing an erasure plan on every backend: exactly the planned rows, all or nothing."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from config.schema import ErasurePolicy
from connectors.base import Action, BatchResult, Findings, Key, MaskSpec, StorePlan, TargetPlan
from connectors.sql.execute import execute_plan, own_rows
from connectors.sql.locate import locate
from connectors.sql.masks import PER_ROW, REDACTED, Masker
from connectors.sql.planning import plan_erasure
from connectors.sql.schema import StoreSchema, reflect_store
from connectors.sql.shared import checked_edges
from core.errors import TerminalError, TransientError
from core.keys import KeyRing
from tests.connectors.sql.conftest import (
    INVENTORY_TABLES,
    SUBJECT_EMAIL,
    Rows,
    SqlWorld,
    build_world,
    count_statements,
    make_store,
    normalize,
)

KEYS = KeyRing.from_master(b"k" * 32)
MASKER = Masker(KEYS)
TODAY = date(2026, 3, 1)


def erasure_plan(
    world: SqlWorld, erasure: ErasurePolicy | None = None
) -> tuple[StoreSchema, Findings, StorePlan]:
    """Reflect, locate the subject and plan their erasure under the world's policy."""
    schema = reflect_store(world.engine, world.store)
    findings = locate(world.engine, schema, world.store, world.subject, 100)
    plan = plan_erasure(
        schema,
        world.store,
        findings,
        erasure or world.policy.requests.erasure,
        world.policy.legal_holds,
        TODAY,
        None,
    )
    return schema, findings, plan


def run(
    world: SqlWorld, schema: StoreSchema, plan: StorePlan, batch_size: int = 2
) -> tuple[list[BatchResult], list[BatchResult]]:
    """Execute; returns (results, what on_batch saw)."""
    seen: list[BatchResult] = []
    results = execute_plan(world.engine, schema, plan, MASKER, seen.append, batch_size)
    return results, seen


def with_values(
    world: SqlWorld, rows: Rows, table: str, key: Key, values: Mapping[str, Any]
) -> None:
    """Change one row of a snapshot in place (``key`` in the table's key columns)."""
    cols = [c.name for c in world.metadata.tables[table].columns]
    idx = [cols.index(c) for c in world.key_columns[table]]
    wanted = tuple(normalize(v) for v in key)
    for n, row in enumerate(rows[table]):
        if tuple(row[i] for i in idx) == wanted:
            changed = list(row)
            for column, value in values.items():
                changed[cols.index(column)] = normalize(value)
            rows[table][n] = tuple(changed)
    rows[table].sort(key=repr)


def after_default_erasure(world: SqlWorld, before: Rows) -> Rows:
    """The database after erasing the subject under the default policy."""
    removed = {t: k for t, k in world.expected.items() if t != "invoices"}
    expected = world.snapshot_without(before, removed)
    for key in world.expected["invoices"]:
        masked = {"billing_name": REDACTED, "billing_address": REDACTED, "customer_id": None}
        with_values(world, expected, "invoices", key, masked)
    # Customer 3 was referred by the subject: their row stays, the reference is cleared.
    with_values(world, expected, "customers", (3,), {"referred_by": None})
    return expected


@contextmanager
def failing_at(engine: sa.Engine, nth: int, error: Exception) -> Iterator[None]:
    """Make the ``nth`` DELETE/UPDATE statement fail with ``error`` (a driver error)."""
    seen = 0

    def fail(*_args: Any) -> None:
        nonlocal seen
        statement = str(_args[2]).lstrip().upper()
        if statement.startswith(("DELETE", "UPDATE")):
            seen += 1
            if seen == nth:
                raise error

    sa.event.listen(engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        sa.event.remove(engine, "before_cursor_execute", fail)


def lock_timeout(world: SqlWorld) -> Exception:
    """The driver's own error for a lock timeout, as the backend raises it."""
    if world.backend == "sqlite":
        import sqlite3

        busy = sqlite3.OperationalError("database is locked")
        busy.sqlite_errorcode = 5
        return busy
    if world.backend == "postgresql":
        import psycopg

        return psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
    dbapi: Any = world.engine.dialect.loaded_dbapi  # PyMySQL: (errno, message)
    error: Exception = dbapi.OperationalError(1205, "Lock wait timeout exceeded")
    return error


@pytest.fixture
def sqlite_world(tmp_path: Path) -> Iterator[SqlWorld]:
    """The test store on SQLite only, for checks that happen before any SQL runs."""
    world = build_world(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield world
    world.engine.dispose()


# --- the erasure itself ---------------------------------------------------------------------


def test_erasure_changes_exactly_the_planned_rows(sql_world: SqlWorld) -> None:
    before = sql_world.snapshot()
    schema, _findings, plan = erasure_plan(sql_world)

    results, seen = run(sql_world, schema, plan)

    assert sql_world.snapshot() == after_default_erasure(sql_world, before)
    assert seen == results
    deleted: dict[str, int] = {}
    for r in results:
        assert r.store == "crm"
        if r.action == Action.DELETE:
            deleted[r.target] = deleted.get(r.target, 0) + r.affected
    expected_rows = {t: len(k) for t, k in sql_world.expected.items() if t != "invoices"}
    expected_rows["consents"] = 2  # keyed by customer_id: one key, two rows
    assert deleted == expected_rows
    assert sum(r.affected for r in results if r.action == Action.MASK) == 2


def test_reexecuting_a_committed_plan_changes_nothing(sql_world: SqlWorld) -> None:
    schema, _findings, plan = erasure_plan(sql_world)
    run(sql_world, schema, plan)
    after = sql_world.snapshot()

    again, seen = run(sql_world, schema, StorePlan.from_json(plan.to_json()))

    assert sql_world.snapshot() == after
    assert again and all(r.affected == 0 for r in again)
    assert seen == again


def test_per_row_masks_use_each_rows_own_original(sql_world: SqlWorld) -> None:
    """Pseudonym masks on invoices and on consents, a table keyed by a non-unique column."""
    tables = [dict(t) for t in INVENTORY_TABLES]
    for t in tables:
        if t["name"] == "customers":
            t["fields"] = {k: v for k, v in t["fields"].items() if k != "contract_ended_at"}
        if t["name"] == "consents":
            t["fields"] = {"purpose": ["contract"]}
    sql_world.store = make_store(sql_world.url, tables)
    rules = {
        "billing": {"action": "mask", "mask": "pseudonym", "reason": "tax law"},
        "contract": {"action": "mask", "mask": "pseudonym", "reason": "proof of consent"},
    }
    policy = ErasurePolicy.model_validate({"categories": rules})
    before = sql_world.snapshot()
    schema, _findings, plan = erasure_plan(sql_world, policy)
    consents = sql_world.metadata.tables["consents"]
    purpose = MASKER.value("pseudonym", consents.c.purpose, "marketing")
    # Consents stay (masked) and reference the customer through their key: it is masked too.
    customers = [s for s in plan.steps if s.target == "customers"]
    assert [(s.action, s.reason) for s in customers] == [
        (Action.MASK, "referenced by retained consents")
    ]

    with count_statements(sql_world.engine) as statements:
        results, _seen = run(sql_world, schema, plan, batch_size=1)

    with sql_world.engine.connect() as conn:
        kept = conn.execute(
            sa.select(consents.c.purpose).where(consents.c.customer_id == 1)
        ).scalars()
        assert sorted(kept) == sorted(
            [purpose, MASKER.value("pseudonym", consents.c.purpose, "newsletter")]
        )
        invoices = sql_world.metadata.tables["invoices"]
        names = conn.execute(
            sa.select(invoices.c.billing_name).where(invoices.c.id.in_([101, 102]))
        ).scalars()
        assert set(names) == {MASKER.value("pseudonym", invoices.c.billing_name, "Alice Example")}
    masked: dict[str, int] = {}
    for r in results:
        if r.action == Action.MASK:
            masked[r.target] = masked.get(r.target, 0) + r.affected
    assert masked == {"consents": 2, "invoices": 2, "customers": 1}
    # A per-row mask costs one read and one executemany per batch.
    per_row = [
        s for s in plan.steps if s.action == Action.MASK and {m.mask for m in s.masks} & PER_ROW
    ]
    reads = [
        s for s in statements if s.lstrip().upper().startswith("SELECT") and not is_shared_check(s)
    ]
    assert len(reads) == sum(s.count for s in per_row)
    # Everyone else's rows are untouched: only the subject's consents changed.
    assert [r for r in sql_world.snapshot()["consents"] if r[0] != 1] == [
        r for r in before["consents"] if r[0] != 1
    ]
    again, _ = run(sql_world, schema, plan)
    assert all(r.affected == 0 for r in again)


def test_statements_grow_with_batches_not_rows(sql_world: SqlWorld) -> None:
    schema, _findings, plan = erasure_plan(sql_world)
    batch_size = 2
    expected = sum(
        math.ceil(s.count / batch_size)
        for s in plan.steps
        if s.action in (Action.DELETE, Action.MASK, Action.UNLINK)
    )

    # The shared-row check: per checked batch and reference, one grouped count of all
    # holders and one per batch of the erasure's own holders.
    own = own_rows(plan)
    checks = 0
    for step in plan.steps:
        if step.action not in (Action.DELETE, Action.MASK):
            continue
        for edge in checked_edges(schema, step.target):
            own_batches = math.ceil(len(own.get(edge.child, ())) / batch_size)
            checks += math.ceil(step.count / batch_size) * (1 + own_batches)

    with count_statements(sql_world.engine) as statements:
        run(sql_world, schema, plan, batch_size)

    dml = [
        s
        for s in statements
        if s.lstrip().upper().startswith(("DELETE", "UPDATE", "SELECT")) and not is_shared_check(s)
    ]
    assert len(dml) == expected
    shared = [s for s in statements if is_shared_check(s)]
    assert 0 < len(shared) <= checks
    assert len(statements) <= expected + len(shared) + 2  # plus BEGIN (SQLite) at most


def is_shared_check(statement: str) -> bool:
    """The shared-row check's statements: grouped counts of a reference's holders."""
    return "GROUP BY" in statement.upper() and "COUNT(*)" in statement.upper()


# --- failures -------------------------------------------------------------------------------


def test_failure_mid_plan_rolls_back_everything(sql_world: SqlWorld) -> None:
    before = sql_world.snapshot()
    schema, _findings, plan = erasure_plan(sql_world)
    seen: list[BatchResult] = []
    dbapi = sql_world.engine.dialect.loaded_dbapi

    with (
        failing_at(sql_world.engine, 9, dbapi.IntegrityError("injected")),
        pytest.raises(TerminalError) as caught,
    ):
        execute_plan(sql_world.engine, schema, plan, MASKER, seen.append, 2)

    assert not isinstance(caught.value, TransientError)
    assert sql_world.snapshot() == before
    assert seen == []
    message = str(caught.value)
    assert "store 'crm'" in message and "batch" in message
    assert SUBJECT_EMAIL not in message.lower() and "alice" not in message.lower()


def test_lock_timeout_is_transient_and_rolls_back(sql_world: SqlWorld) -> None:
    before = sql_world.snapshot()
    schema, _findings, plan = erasure_plan(sql_world)

    with failing_at(sql_world.engine, 5, lock_timeout(sql_world)), pytest.raises(TransientError):
        run(sql_world, schema, plan)

    assert sql_world.snapshot() == before


def test_a_real_constraint_violation_is_terminal_and_names_no_values(sql_world: SqlWorld) -> None:
    """Deleting customers before the orders referencing them fails in the database itself."""
    before = sql_world.snapshot()
    schema, _findings, plan = erasure_plan(sql_world)
    by_target = {s.target: s for s in plan.steps if s.action == Action.DELETE}
    bad = StorePlan(
        store="crm", steps=(by_target["login_events"], by_target["customers"], by_target["orders"])
    )

    with pytest.raises(TerminalError) as caught:
        run(sql_world, schema, bad)

    assert "delete customers batch 1" in str(caught.value)
    assert "Example" not in str(caught.value)
    assert sql_world.snapshot() == before  # login_events' deletion was rolled back too


@pytest.mark.parametrize(
    ("step", "problem"),
    [
        (TargetPlan("nowhere", Action.DELETE, ((1,),)), "nowhere: not in the reflected schema"),
        (TargetPlan("orders", Action.DELETE, ((1, 2),)), "keys do not match"),
        (TargetPlan("invoices", Action.MASK, ((101,),)), "mask step with no masks"),
        (
            TargetPlan("invoices", Action.MASK, ((101,),), (MaskSpec("nope", "null"),)),
            "invoices.nope: unknown column or mask kind",
        ),
        (
            TargetPlan("invoices", Action.UNLINK, ((1,),), (MaskSpec("billing_name", "null"),)),
            "no enforced reference invoices.billing_name",
        ),
    ],
)
def test_a_plan_that_does_not_fit_the_schema_is_refused_before_running(
    sqlite_world: SqlWorld, step: TargetPlan, problem: str
) -> None:
    sql_world = sqlite_world
    schema = reflect_store(sql_world.engine, sql_world.store)
    before = sql_world.snapshot()
    plan = StorePlan(
        store="crm", steps=(TargetPlan("login_events", Action.DELETE, ((101,),)), step)
    )
    with pytest.raises(TerminalError, match=problem):
        run(sql_world, schema, plan)
    assert sql_world.snapshot() == before


def test_keep_and_defer_steps_touch_nothing(sql_world: SqlWorld) -> None:
    schema = reflect_store(sql_world.engine, sql_world.store)
    before = sql_world.snapshot()
    keys: Sequence[Key] = tuple(sorted(sql_world.expected["orders"]))
    plan = StorePlan(
        store="crm",
        steps=(
            TargetPlan("orders", Action.DEFER, tuple(keys), reason="legal hold H: audit"),
            TargetPlan("customers", Action.KEEP, ((1,),), reason="archive"),
        ),
    )
    results, seen = run(sql_world, schema, plan)
    assert results == seen == []
    assert sql_world.snapshot() == before
