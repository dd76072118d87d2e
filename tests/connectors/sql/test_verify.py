"""Verification after an erasure: clean when it worked, and precise when something is left."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from config.schema import LegalHold
from connectors.base import Findings, StorePlan, Verification
from connectors.sql.locate import locate
from connectors.sql.planning import plan_erasure
from connectors.sql.schema import StoreSchema, reflect_store
from connectors.sql.verify import verify_erasure
from tests.connectors.sql.conftest import SUBJECT_EMAIL, T0, SqlWorld
from tests.connectors.sql.test_execute import MASKER, TODAY, erasure_plan, run


def verify(world: SqlWorld, schema: StoreSchema, plan: StorePlan) -> Verification:
    after: Findings = locate(world.engine, schema, world.store, world.subject, 100)
    return verify_erasure(world.engine, schema, plan, after, MASKER)


def erased(world: SqlWorld) -> tuple[StoreSchema, StorePlan]:
    schema, _findings, plan = erasure_plan(world)
    run(world, schema, plan)
    return schema, plan


def test_clean_after_a_proper_erasure(sql_world: SqlWorld) -> None:
    schema, plan = erased(sql_world)

    result = verify(sql_world, schema, plan)

    assert result.clean
    assert result.store == "crm"
    assert dict(result.remaining) == {}
    assert dict(result.masked) == {"invoices": 2}
    assert dict(result.deferred) == {}


def test_not_clean_before_the_plan_ran(sql_world: SqlWorld) -> None:
    schema, _findings, plan = erasure_plan(sql_world)
    result = verify(sql_world, schema, plan)
    assert not result.clean
    expected = {t: len(k) for t, k in sql_world.expected.items()}
    expected["consents"] = 2  # rows, not keys: consents are keyed by customer_id
    # Plus the references the UNLINK steps clear: replies to the subject's tickets, the
    # contacts of their account, and the customer they referred.
    expected["support_tickets"] += 2
    expected["contacts"] += 2
    expected["customers"] += 1
    assert dict(result.remaining) == expected
    assert dict(result.masked) == {"invoices": 0}


def test_a_reinserted_row_is_reported_with_its_table_and_count(sql_world: SqlWorld) -> None:
    schema, plan = erased(sql_world)
    customers = sql_world.metadata.tables["customers"]
    with sql_world.engine.begin() as conn:
        # The same key again, and a new row under the subject's email the plan never saw.
        for cid, number in ((1, "C-0001"), (999, "C-0999")):
            conn.execute(
                customers.insert().values(
                    id=cid,
                    customer_number=number,
                    email=SUBJECT_EMAIL,
                    full_name="Alice Example",
                    created_at=T0,
                )
            )

    result = verify(sql_world, schema, plan)

    assert not result.clean
    assert dict(result.remaining) == {"customers": 2}


def test_a_deleted_row_that_locate_cannot_reach_is_still_caught(sql_world: SqlWorld) -> None:
    """A reply ticket back without its parent is invisible to locate, not to the key check."""
    schema, plan = erased(sql_world)
    tickets = sql_world.metadata.tables["support_tickets"]
    with sql_world.engine.begin() as conn:
        conn.execute(tickets.insert().values(id=103, subject="Ticket 103", created_at=T0))

    result = verify(sql_world, schema, plan)

    assert dict(result.remaining) == {"support_tickets": 1}


def test_a_restored_masked_column_is_reported(sql_world: SqlWorld) -> None:
    """The masked invoices were unlinked (customer_id NULL): locate no longer finds them."""
    schema, plan = erased(sql_world)
    invoices = sql_world.metadata.tables["invoices"]
    with sql_world.engine.begin() as conn:
        conn.execute(
            invoices.update().where(invoices.c.id == 101).values(billing_name="Alice Example")
        )

    result = verify(sql_world, schema, plan)

    assert not result.clean
    assert dict(result.remaining) == {"invoices": 1}
    assert dict(result.masked) == {"invoices": 1}


def test_deferred_rows_are_expected_to_remain(sql_world: SqlWorld) -> None:
    schema = reflect_store(sql_world.engine, sql_world.store)
    findings = locate(sql_world.engine, schema, sql_world.store, sql_world.subject, 100)
    hold = LegalHold.model_validate(
        {
            "id": "H-9",
            "reason": "tax audit",
            "scope": {"store": "crm", "table": "invoices"},
            "starts": date(2026, 1, 1),
        }
    )
    plan = plan_erasure(
        schema,
        sql_world.store,
        findings,
        sql_world.policy.requests.erasure,
        [hold],
        TODAY,
        None,
    )
    run(sql_world, schema, plan)

    result = verify(sql_world, schema, plan)

    assert result.clean
    assert dict(result.deferred) == {"invoices": 2}
    # The deferred invoices still reference the customer, so the customer was masked.
    assert dict(result.masked) == {"customers": 1}
    with sql_world.engine.connect() as conn:
        invoices = sql_world.metadata.tables["invoices"]
        names = conn.execute(
            sa.select(invoices.c.billing_name).where(invoices.c.id.in_([101, 102]))
        ).scalars()
        assert set(names) == {"Alice Example"}  # untouched while the hold lasts
