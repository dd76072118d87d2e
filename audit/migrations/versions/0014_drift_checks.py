"""Inventory-drift runs and their findings.

Revision ID: 0014_drift_checks
Revises: 0013_submission_batches

Each run's findings (tables, columns, buckets and prefixes by name; never a value), so the
next run reports new, persisting and resolved findings. Columns are spelled out here
rather than imported from ``state.drift_checks`` so this revision keeps describing the
schema it created when the model moves on.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0014_drift_checks"
down_revision = "0013_submission_batches"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "drift_checks",
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
    op.create_index("ix_drift_checks_checked_at", "drift_checks", ["checked_at"])


def downgrade() -> None:
    op.drop_index("ix_drift_checks_checked_at", table_name="drift_checks")
    op.drop_table("drift_checks")
