"""Retention-sweep progress: runs, targets and batches.

Revision ID: 0004_sweeps
Revises: 0003_request_progress

Our own record of how far each retention sweep got, so a rerun after a crash resumes
the same sweep (same cut-offs) and finishes exactly what the interrupted one started.
Columns are spelled out here rather than imported from ``state.sweep_tables`` so this
revision keeps describing the schema it created when the model moves on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004_sweeps"
down_revision = "0003_request_progress"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _utc() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime(timezone=False).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _long_text() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "sweep_runs",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("as_of", _utc(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rules", sa.Text(), nullable=False),
        sa.Column("plan", _long_text(), nullable=False),
        sa.Column("summary", _long_text(), nullable=True),
        sa.Column("flow_run_id", sa.String(36), nullable=True),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("updated_at", _utc(), nullable=False),
        **_MYSQL,
    )
    op.create_index("ix_sweep_runs_status", "sweep_runs", ["status", "started_at"])
    op.create_table(
        "sweep_targets",
        sa.Column("sweep_id", sa.String(20), primary_key=True),
        sa.Column("target", sa.String(512), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("store", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("expired", sa.BigInteger(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("done", sa.BigInteger(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        **_MYSQL,
    )
    op.create_table(
        "sweep_batches",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("sweep_id", sa.String(20), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("lo", sa.Text(), nullable=True),
        sa.Column("hi", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("keys_digest", sa.String(64), nullable=False),
        sa.Column("affected", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("recorded_at", _utc(), nullable=False),
        **_MYSQL,
    )
    op.create_index(
        "ix_sweep_batches_target", "sweep_batches", ["sweep_id", "target", "seq"], unique=True
    )


def downgrade() -> None:
    op.drop_table("sweep_batches")
    op.drop_table("sweep_targets")
    op.drop_table("sweep_runs")
