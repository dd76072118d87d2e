"""Transfer and posture check runs and their findings.

Revision ID: 0005_transfer_checks
Revises: 0004_sweeps

Each run's findings, so the next run reports new, persisting and resolved findings.
Columns are spelled out here rather than imported from ``state.check_tables`` so this
revision keeps describing the schema it created when the model moves on.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005_transfer_checks"
down_revision = "0004_sweeps"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "transfer_checks",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column(
            "checked_at",
            sa.DateTime(timezone=False).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column(
            "findings", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"), nullable=False
        ),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("high", sa.Integer(), nullable=False),
        sa.Column("flow_run_id", sa.String(36), nullable=True),
        **_MYSQL,
    )
    op.create_index("ix_transfer_checks_checked_at", "transfer_checks", ["checked_at"])


def downgrade() -> None:
    op.drop_table("transfer_checks")
