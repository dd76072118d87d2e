"""Rectification: validated before anything is written, applied to the subject's rows only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.base import Action, Findings
from connectors.sql.locate import locate
from connectors.sql.rectify import convert, rectify
from connectors.sql.schema import StoreSchema, reflect_store
from core.errors import TerminalError
from tests.connectors.sql.conftest import SqlWorld, build_world, count_statements
from tests.connectors.sql.test_execute import failing_at, with_values


def found(world: SqlWorld) -> tuple[StoreSchema, Findings]:
    schema = reflect_store(world.engine, world.store)
    return schema, locate(world.engine, schema, world.store, world.subject, 100)


@pytest.fixture
def sqlite_world(tmp_path: Path) -> Iterator[SqlWorld]:
    """The test store on SQLite only, for checks that happen before any SQL runs."""
    world = build_world(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield world
    world.engine.dispose()


def test_changes_apply_to_the_subjects_rows_only(sql_world: SqlWorld) -> None:
    before = sql_world.snapshot()
    schema, findings = found(sql_world)
    changes = {
        "full_name": "Alice Smith",  # bare: every found table declaring it (customers)
        "customers.customer_number": "C-1001",  # an identity column
        "customers.contract_ended_at": "2025-06-30",
        "invoices.billing_name": "Alice Smith",
        "order_items.quantity": "7",
    }

    with count_statements(sql_world.engine) as statements:
        results = rectify(sql_world.engine, schema, sql_world.store, findings, changes, 2)

    expected = {k: list(v) for k, v in before.items()}
    with_values(
        sql_world,
        expected,
        "customers",
        (1,),
        {
            "full_name": "Alice Smith",
            "customer_number": "C-1001",
            "contract_ended_at": date(2025, 6, 30),
        },
    )
    for key in sql_world.expected["invoices"]:
        with_values(sql_world, expected, "invoices", key, {"billing_name": "Alice Smith"})
    for key in sql_world.expected["order_items"]:
        with_values(sql_world, expected, "order_items", key, {"quantity": 7})
    assert sql_world.snapshot() == expected
    assert [(r.target, r.action, r.affected) for r in results] == [
        ("customers", Action.RECTIFY, 1),
        ("invoices", Action.RECTIFY, 2),
        ("order_items", Action.RECTIFY, 2),
        ("order_items", Action.RECTIFY, 1),
    ]
    # One UPDATE per table per key batch, every changed column of the table at once.
    assert sum(s.lstrip().upper().startswith("UPDATE") for s in statements) == 4


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"order_items.quantity": "three"}, "crm.order_items.quantity: expected an integer"),
        (
            {"customers.full_name": "Alice " + "x" * 80},
            "crm.customers.full_name: expected text of at most 80 characters (VARCHAR)",
        ),
        ({"customers.nickname": "Ally"}, "crm.customers.nickname: no such column"),
        ({"customers.id": "77"}, "crm.customers.id: key columns cannot be rectified"),
        ({"order_items.line_no": "4"}, "crm.order_items.line_no: key columns cannot be rectified"),
        (
            {"customers.created_at": "2025-01-01T00:00:00"},
            "crm.customers.created_at: not a declared personal field or identity column",
        ),
        (
            {"customers.contract_ended_at": "31.12.2024"},
            "crm.customers.contract_ended_at: expected an ISO date (YYYY-MM-DD) (DATE)",
        ),
        (
            {"orders.ordered_at": ""},
            "crm.orders.ordered_at: expected a value (the column is NOT NULL)",
        ),
        ({"payments.iban": "DE00"}, "unknown table 'payments'"),
        ({"nickname": "Ally"}, "no table declares a personal field 'nickname'"),
    ],
)
def test_invalid_changes_are_refused_and_nothing_is_written(
    sqlite_world: SqlWorld, changes: dict[str, str], message: str
) -> None:
    sql_world = sqlite_world
    before = sql_world.snapshot()
    schema, findings = found(sql_world)
    # A valid change listed first must not be applied either.
    changes = {"customers.phone": "+49 30 7654321", **changes}

    with pytest.raises(TerminalError) as caught:
        rectify(sql_world.engine, schema, sql_world.store, findings, changes, 100)

    assert message in str(caught.value)
    for value in changes.values():
        assert not value or value not in str(caught.value)  # values never echoed
    assert sql_world.snapshot() == before


def test_no_changes_is_an_error(sqlite_world: SqlWorld) -> None:
    sql_world = sqlite_world
    schema, findings = found(sql_world)
    with pytest.raises(TerminalError, match="at least one change"):
        rectify(sql_world.engine, schema, sql_world.store, findings, {}, 100)


def test_one_transaction_per_store(sql_world: SqlWorld) -> None:
    before = sql_world.snapshot()
    schema, findings = found(sql_world)
    changes = {"customers.full_name": "Alice Smith", "invoices.billing_name": "Alice Smith"}
    dbapi = sql_world.engine.dialect.loaded_dbapi

    with (
        failing_at(sql_world.engine, 2, dbapi.IntegrityError("injected")),
        pytest.raises(TerminalError, match="rectify invoices batch 1"),
    ):
        rectify(sql_world.engine, schema, sql_world.store, findings, changes, 100)

    assert sql_world.snapshot() == before  # the customers update was rolled back


def test_nothing_found_writes_nothing(sql_world: SqlWorld) -> None:
    schema = reflect_store(sql_world.engine, sql_world.store)
    nobody = locate(
        sql_world.engine,
        schema,
        sql_world.store,
        {"email": frozenset({"nobody@example.com"})},
        100,
    )
    before = sql_world.snapshot()
    assert rectify(sql_world.engine, schema, sql_world.store, nobody, {"full_name": "X"}, 10) == []
    assert sql_world.snapshot() == before


# --- conversions (no database) --------------------------------------------------------------


def col(type_: Any, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column("c", type_, nullable=nullable)


@pytest.mark.parametrize(
    ("column", "text", "value"),
    [
        (col(sa.Integer), " -42 ", -42),
        (col(sa.Numeric(6, 2)), "1234.50", Decimal("1234.50")),
        (col(sa.Float), "2.5", 2.5),
        (col(sa.Boolean), "Yes", True),
        (col(sa.Boolean), "0", False),
        (col(sa.Date), "2025-06-30", date(2025, 6, 30)),
        (col(sa.DateTime), "2025-06-30T08:15:00", datetime(2025, 6, 30, 8, 15)),
        (col(sa.Time), "08:15", time(8, 15)),
        (col(sa.String(5)), "abcde", "abcde"),
        (col(sa.String(5), nullable=False), "", ""),  # text: the empty string, not NULL
        (col(sa.Enum("gold", "silver")), "gold", "gold"),
        (col(sa.Integer), "", None),  # nullable non-text: empty means NULL
    ],
)
def test_text_converts_to_the_column_type(column: sa.Column[Any], text: str, value: Any) -> None:
    assert convert(column, text) == value


@pytest.mark.parametrize(
    ("column", "text", "expected"),
    [
        (col(sa.Integer), "4.5", "an integer"),
        (col(sa.Numeric(6, 2)), "12345.5", "a decimal number with at most 6 digits"),
        (col(sa.Numeric(6, 2)), "1.555", "a decimal number with at most 6 digits"),
        (col(sa.Numeric(6, 2)), "NaN", "a decimal number"),
        (col(sa.Float), "inf", "a finite number"),
        (col(sa.Boolean), "maybe", "a boolean"),
        (col(sa.DateTime), "yesterday", "an ISO datetime"),
        (col(sa.String(5)), "abcdef", "text of at most 5 characters"),
        (col(sa.Enum("gold", "silver")), "bronze", "one of gold, silver"),
        (col(sa.Integer, nullable=False), "", "a value (the column is NOT NULL)"),
        (col(sa.LargeBinary), "AAAA", "a supported type (cannot rectify LARGEBINARY)"),
    ],
)
def test_text_that_does_not_fit_is_refused(
    column: sa.Column[Any], text: str, expected: str
) -> None:
    with pytest.raises(ValueError) as caught:
        convert(column, text)
    assert str(caught.value).startswith(expected)
    assert text not in str(caught.value) or text in expected
