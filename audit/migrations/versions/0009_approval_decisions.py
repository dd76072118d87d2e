"""Approval decisions, taken once per request and plans; the flow run waiting for one.

Revision ID: 0009_approval_decisions
Revises: 0008_sweep_leases

``approval_decisions``: one row per decision, keyed by request and scope (the plans'
digest, or "pre-approval"), so two decisions on the same plans cannot both be recorded.
``request_runs.approval_flow_run_id``: the flow run paused for a decision, so a decision
taken from the CLI resumes that run instead of racing it. Columns are spelled out here
rather than imported from ``state.register_tables`` so this revision keeps describing
the schema it created.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009_approval_decisions"
down_revision = "0008_sweep_leases"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _utc() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime(timezone=False).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "approval_decisions",
        sa.Column(
            "request_id",
            sa.String(20),
            sa.ForeignKey("subject_requests.id", name="fk_approval_decisions_request"),
            primary_key=True,
        ),
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("approver", sa.String(128), nullable=False),
        sa.Column("verification", sa.String(20), nullable=False),
        sa.Column("key_fingerprint", sa.String(40), nullable=True),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column("signed_at", _utc(), nullable=True),
        sa.Column("note_sha256", sa.String(64), nullable=True),
        sa.Column("decided_at", _utc(), nullable=False),
        **_MYSQL,
    )
    op.add_column("request_runs", sa.Column("approval_flow_run_id", sa.String(36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_runs") as batch:
        batch.drop_column("approval_flow_run_id")
    op.drop_table("approval_decisions")
