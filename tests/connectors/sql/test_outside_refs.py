"""Undeclared tables holding foreign keys into the inventory: found before anything runs.

The schema: ``customers`` and ``orders`` are declared (``orders`` references customers: a
declared holder, not reported); ``loyalty_points`` is undeclared and holds a NOT NULL
foreign key ``fk_loyalty_customer`` into customers (an erasure deleting a referenced
customer fails); ``newsletter_optins`` is undeclared with an unnamed, nullable foreign key
``ON DELETE CASCADE`` (the database would silently delete its rows); ``point_redemptions``
is undeclared and references only ``loyalty_points`` (an undeclared table: not reported).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy import Engine
from typer.testing import CliRunner

from cli.doctor_cmd import app as doctor_app
from cli.main import app as main_app
from connectors.base import Action, StorePlan, TargetPlan
from connectors.sql.config import SqlStore
from connectors.sql.doctor import check_store
from connectors.sql.execute import execute_plan
from connectors.sql.outside_refs import OutsideReference, outside_references
from connectors.sql.schema import reflect_store
from core.engines import make_engine
from core.errors import TerminalError, TransientError
from tests.connectors.sql.conftest import POLICY, make_store, snapshot
from tests.connectors.sql.test_execute import MASKER

runner = CliRunner()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

PLANTED_EMAIL = "dana.loyal@example.com"
REFERENCED_ID = 8675309  # the customer loyalty_points references
FREE_ID = 5550123  # a customer nothing outside the inventory references
POINTS_ID, POINTS = 9001234, 7312468

TABLES: list[dict[str, Any]] = [
    {
        "name": "customers",
        "identity": [{"column": "email", "kind": "email"}],
        "fields": {"email": ["contact"]},
    },
    {"name": "orders", "fields": {"note": ["order_history"]}},
]

LOYALTY = OutsideReference(
    holder="loyalty_points",
    constraint="fk_loyalty_customer",
    columns=("customer_id",),
    target="customers",
    to_columns=("id",),
    not_null=True,
    on_delete=None,
)
# Unnamed in the DDL: SQLite keeps no name; the servers generate one.
OPTIN_NAMES = {
    "sqlite": None,
    "postgresql": "newsletter_optins_customer_id_fkey",
    "mysql": "newsletter_optins_ibfk_1",
}
LOYALTY_LINE = (
    "store 'crm': undeclared table 'loyalty_points' holds foreign key fk_loyalty_customer "
    "(customer_id) -> customers(id), NOT NULL: an erasure that deletes customers rows "
    "referenced there fails; declare the table in the inventory (with follow:) or drop the "
    "constraint"
)


def _metadata() -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "customers",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(120), nullable=False, unique=True),
    )
    sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("note", sa.String(80)),
        sa.Index("ix_orders_customer_id", "customer_id"),
    )
    sa.Table(
        "loyalty_points",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, nullable=False),
        sa.Column("points", sa.Integer, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name="fk_loyalty_customer"),
    )
    sa.Table(
        "newsletter_optins",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id", ondelete="CASCADE")),
    )
    sa.Table(
        "point_redemptions",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column(
            "points_id",
            sa.Integer,
            sa.ForeignKey("loyalty_points.id", name="fk_redemption_points"),
            nullable=False,
        ),
    )
    return md


@dataclass
class World:
    url: str
    engine: Engine
    metadata: sa.MetaData
    store: SqlStore

    @property
    def backend(self) -> str:
        return self.engine.dialect.name


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    engine = make_engine(db_url)
    md = _metadata()
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            md.tables["customers"].insert(),
            [
                {"id": REFERENCED_ID, "email": PLANTED_EMAIL},
                {"id": FREE_ID, "email": "erin.free@example.com"},
            ],
        )
        conn.execute(md.tables["orders"].insert(), [{"id": 1, "customer_id": FREE_ID, "note": "n"}])
        conn.execute(
            md.tables["loyalty_points"].insert(),
            [{"id": POINTS_ID, "customer_id": REFERENCED_ID, "points": POINTS}],
        )
        conn.execute(md.tables["point_redemptions"].insert(), [{"id": 1, "points_id": POINTS_ID}])
    try:
        yield World(db_url, engine, md, make_store(db_url, TABLES))
    finally:
        engine.dispose()


def _drop_outside_holders(world: World) -> None:
    tables = world.metadata.tables
    for name in ("point_redemptions", "loyalty_points", "newsletter_optins"):
        tables[name].drop(world.engine)


# --- the finder ---------------------------------------------------------------------------


def test_lists_exactly_the_undeclared_holders_into_declared_tables(world: World) -> None:
    found = outside_references(world.engine, ["customers", "orders"])

    optins = OutsideReference(
        holder="newsletter_optins",
        constraint=OPTIN_NAMES[world.backend],
        columns=("customer_id",),
        target="customers",
        to_columns=("id",),
        not_null=False,
        on_delete="CASCADE",
    )
    # Not orders (declared), not point_redemptions (its target is undeclared).
    assert found == [LOYALTY, optins]
    assert not LOYALTY.acting and optins.acting
    assert LOYALTY.problem("crm") == LOYALTY_LINE
    assert optins.consequence == (
        "ON DELETE CASCADE: an erasure that deletes customers rows makes the database "
        "silently delete the newsletter_optins rows referencing them, which the inventory "
        "does not know about (worse than a failure)"
    )
    # Declaring loyalty_points takes it off the list and makes point_redemptions a holder.
    redemptions = OutsideReference(
        "point_redemptions",
        "fk_redemption_points",
        ("points_id",),
        "loyalty_points",
        ("id",),
        True,
        None,
    )
    declared = ["customers", "orders", "loyalty_points"]
    assert outside_references(world.engine, declared) == [optins, redemptions]


# --- doctor -------------------------------------------------------------------------------


def _config_dir(tmp_path: Path, url: str) -> Path:
    folder = tmp_path / "cfg"
    folder.mkdir(exist_ok=True)
    store = {"name": "crm", "type": "sql", "url": url, "region": "eu-central-1"}
    inventory = {"stores": [{**store, "tables": TABLES}]}
    (folder / "inventory.yaml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    (folder / "policy.yaml").write_text(yaml.safe_dump(POLICY), encoding="utf-8")
    return folder


def test_doctor_reports_each_holder_and_exits_non_zero(world: World, tmp_path: Path) -> None:
    check = check_store(world.store)
    assert not check.ok
    assert check.advice == ()  # the references alone make it fail
    assert check.problems[0] == LOYALTY_LINE
    assert "ON DELETE CASCADE" in check.problems[1]
    assert len(check.problems) == 2
    folder = _config_dir(tmp_path, world.url)

    result = runner.invoke(doctor_app, ["--config", str(folder), "--json"])

    assert result.exit_code == 1
    [report] = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["problems"] == list(check.problems)
    assert report["outside_references"][0] == {
        "holder": "loyalty_points",
        "constraint": "fk_loyalty_customer",
        "columns": ["customer_id"],
        "target": "customers",
        "to_columns": ["id"],
        "not_null": True,
        "on_delete": None,
        "acting": False,
    }
    assert report["outside_references"][1]["on_delete"] == "CASCADE"

    result = runner.invoke(doctor_app, ["--config", str(folder)])
    assert result.exit_code == 1
    assert f"  reference: {LOYALTY_LINE}" in _ANSI.sub("", result.output).splitlines()

    _drop_outside_holders(world)
    result = runner.invoke(doctor_app, ["--config", str(folder)])
    assert result.exit_code == 0, result.output


# --- config validate --live -----------------------------------------------------------------


def test_config_validate_live_names_table_and_constraint(world: World, tmp_path: Path) -> None:
    folder = _config_dir(tmp_path, world.url)

    plain = runner.invoke(main_app, ["config", "validate", "--config", str(folder)])
    live = runner.invoke(main_app, ["config", "validate", "--live", "--config", str(folder)])

    assert plain.exit_code == 0, plain.output
    assert live.exit_code == 2
    assert live.stdout == ""
    lines = _ANSI.sub("", live.stderr).splitlines()
    assert lines[0] == (
        "error: crm.loyalty_points: undeclared table holds foreign key fk_loyalty_customer "
        "(customer_id) -> customers(id), NOT NULL: an erasure that deletes customers rows "
        "referenced there fails; declare the table in the inventory (with follow:) or drop "
        "the constraint"
    )
    assert lines[1].startswith("error: crm.newsletter_optins: undeclared table holds ")
    assert len(lines) == 2

    _drop_outside_holders(world)
    live = runner.invoke(main_app, ["config", "validate", "--live", "--config", str(folder)])
    assert live.exit_code == 0, live.output
    assert "schema of 1 sql stores checked live" in _ANSI.sub("", live.stdout)


def test_plain_validate_stays_offline(tmp_path: Path) -> None:
    """An unreachable store: plain validate never connects; --live says it cannot."""
    folder = _config_dir(tmp_path, "postgresql://lc:s3cret-pw@127.0.0.1:1/crm?connect_timeout=2")

    plain = runner.invoke(main_app, ["config", "validate", "--config", str(folder)])
    live = runner.invoke(main_app, ["config", "validate", "--live", "--config", str(folder)])

    assert plain.exit_code == 0, plain.output
    assert live.exit_code == 2
    stderr = _ANSI.sub("", live.stderr)
    assert stderr.startswith("error: crm: cannot connect (OperationalError")
    assert "s3cret-pw" not in live.output


# --- the erasure's error --------------------------------------------------------------------


def test_erasure_refused_by_an_outside_reference_names_it_without_values(world: World) -> None:
    schema = reflect_store(world.engine, world.store)
    plan = StorePlan(
        store="crm",
        steps=(
            TargetPlan("customers", Action.DELETE, ((FREE_ID,),)),  # fine alone: rolled back
            TargetPlan("customers", Action.DELETE, ((REFERENCED_ID,),)),
        ),
    )
    with world.engine.begin() as conn:
        conn.execute(world.metadata.tables["orders"].delete())  # FREE_ID is unreferenced now
    before = snapshot(world.engine, world.metadata)

    with pytest.raises(TerminalError) as caught:
        execute_plan(world.engine, schema, plan, MASKER, lambda _r: None, 10)

    error = caught.value
    message = str(error)
    assert not isinstance(error, TransientError)
    assert message.startswith("store 'crm': erasure (delete customers batch 1) failed: ")
    assert "customers" in message and "loyalty_points" in message
    for value in (PLANTED_EMAIL, "dana", str(REFERENCED_ID), str(FREE_ID), str(POINTS_ID)):
        assert value not in message
    assert str(POINTS) not in message
    assert error.fields["store"] == "crm"
    assert error.fields["table"] == "customers"
    if world.backend == "sqlite":  # SQLite names neither table nor constraint
        assert message == (
            "store 'crm': erasure (delete customers batch 1) failed: rows of customers are "
            "still referenced through a foreign key (IntegrityError "
            "SQLITE_CONSTRAINT_FOREIGNKEY); undeclared tables referencing customers: "
            "loyalty_points (fk_loyalty_customer); declare them in the inventory or remove "
            "the reference"
        )
        assert error.fields["constraint"] is None
    else:
        code = "23503" if world.backend == "postgresql" else "23000"
        assert message == (
            "store 'crm': erasure (delete customers batch 1) failed: rows of customers are "
            "still referenced by loyalty_points through foreign key fk_loyalty_customer "
            f"(IntegrityError {code}); declare loyalty_points in the inventory or remove the "
            "reference"
        )
        assert error.fields["constraint"] == "fk_loyalty_customer"
        assert error.fields["referencing_table"] == "loyalty_points"
    assert snapshot(world.engine, world.metadata) == before
