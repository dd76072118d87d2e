"""The incident register: incidents, notifications, corrective actions.

Revision ID: 0015_incidents
Revises: 0014_drift_checks

Columns are spelled out here rather than imported from ``state.incident_tables`` so this
revision keeps describing the schema it created when the model moves on.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0015_incidents"
down_revision = "0014_drift_checks"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _when(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(
        name,
        sa.DateTime(timezone=False).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"),
        nullable=nullable,
    )


def _long(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"))


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("reported_by", sa.String(64), nullable=False),
        _when("reported_at", nullable=False),
        _when("detected_at"),
        _when("aware_at"),
        sa.Column("kinds", sa.String(64), nullable=True),
        _long("scope"),
        sa.Column("key_compromised", sa.Boolean(), nullable=True),
        _long("assessment"),
        sa.Column("risk", sa.String(8), nullable=True),
        _when("assessed_at"),
        _when("closed_at"),
        sa.Column("close_reason", sa.Text(), nullable=True),
        _when("updated_at", nullable=False),
        **_MYSQL,
    )
    op.create_index("ix_incidents_state", "incidents", ["state"])
    op.create_table(
        "incident_notifications",
        sa.Column("incident_id", sa.String(20), primary_key=True),
        sa.Column("audience", sa.String(80), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        _when("due_at"),
        sa.Column("because", sa.Text(), nullable=True),
        _when("sent_at"),
        sa.Column("recipient_role", sa.String(120), nullable=True),
        sa.Column("reference", sa.String(120), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        _when("updated_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name="fk_incident_notifications_incident"
        ),
        **_MYSQL,
    )
    op.create_index("ix_incident_notifications_due", "incident_notifications", ["status", "due_at"])
    op.create_table(
        "incident_actions",
        sa.Column("incident_id", sa.String(20), primary_key=True),
        sa.Column("number", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("due", sa.Date(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _when("updated_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name="fk_incident_actions_incident"
        ),
        **_MYSQL,
    )


def downgrade() -> None:
    op.drop_table("incident_actions")
    op.drop_index("ix_incident_notifications_due", table_name="incident_notifications")
    op.drop_table("incident_notifications")
    op.drop_index("ix_incidents_state", table_name="incidents")
    op.drop_table("incidents")
