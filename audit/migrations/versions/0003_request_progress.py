"""Request progress: per-store phases and plans, executed batches, per-request run state.

Revision ID: 0003_request_progress
Revises: 0002_register

Our own record of how far each data-subject request got, so a rerun after a crash
continues where the last run stopped (Prefect's records are not the source of truth).
The columns are spelled out here rather than imported from ``state.progress_tables`` so
this revision keeps describing the schema it created when the model moves on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003_request_progress"
down_revision = "0002_register"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _utc() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime(timezone=False).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _long_text() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def _request_fk(table: str) -> sa.ForeignKey:
    return sa.ForeignKey("subject_requests.id", name=f"fk_{table}_request")


def upgrade() -> None:
    op.create_table(
        "request_progress",
        sa.Column("request_id", sa.String(20), _request_fk("request_progress"), primary_key=True),
        sa.Column("store", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("skip_reason", sa.Text(), nullable=True),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("findings", _long_text(), nullable=True),
        sa.Column("derived_nonce", sa.LargeBinary(), nullable=True),
        sa.Column("derived_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("plan", _long_text(), nullable=True),
        sa.Column("plan_digest", sa.String(64), nullable=True),
        sa.Column("plan_summary", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("batches_audited", sa.Boolean(), nullable=False),
        sa.Column("verification", sa.Text(), nullable=True),
        sa.Column("located_at", _utc(), nullable=True),
        sa.Column("planned_at", _utc(), nullable=True),
        sa.Column("executed_at", _utc(), nullable=True),
        sa.Column("verified_at", _utc(), nullable=True),
        sa.Column("updated_at", _utc(), nullable=False),
        **_MYSQL,
    )
    op.create_table(
        "request_batches",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("request_id", sa.String(20), _request_fk("request_batches"), nullable=False),
        sa.Column("store", sa.String(64), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("affected", sa.BigInteger(), nullable=False),
        sa.Column("keys_digest", sa.String(64), nullable=False),
        sa.Column("recorded_at", _utc(), nullable=False),
        **_MYSQL,
    )
    op.create_index(
        "ix_request_batches_request_store", "request_batches", ["request_id", "store", "id"]
    )
    op.create_table(
        "request_runs",
        sa.Column("request_id", sa.String(20), _request_fk("request_runs"), primary_key=True),
        sa.Column("approval_decision", sa.String(16), nullable=True),
        sa.Column("approval_reviewer", sa.String(128), nullable=True),
        sa.Column("approval_source", sa.String(32), nullable=True),
        sa.Column("approval_note_sha256", sa.String(64), nullable=True),
        sa.Column("approved_digest", sa.String(64), nullable=True),
        sa.Column("approved_at", _utc(), nullable=True),
        sa.Column("recipient_kind", sa.String(16), nullable=True),
        sa.Column("recipient_public", sa.LargeBinary(), nullable=True),
        sa.Column("recipient_nonce", sa.LargeBinary(), nullable=True),
        sa.Column("recipient_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("package_location", sa.Text(), nullable=True),
        sa.Column("package_sha256", sa.String(64), nullable=True),
        sa.Column("package_bytes", sa.BigInteger(), nullable=True),
        sa.Column("package_records", sa.BigInteger(), nullable=True),
        sa.Column("completion_claimed_at", _utc(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        **_MYSQL,
    )


def downgrade() -> None:
    op.drop_table("request_runs")
    op.drop_table("request_batches")
    op.drop_table("request_progress")
