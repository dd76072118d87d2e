"""Batches of requests submitted together (``lifecycle request submit --batch``).

Revision ID: 0013_submission_batches
Revises: 0012_intake_idempotency

``submission_batches``: one row per batch file registered (who registered it, when, how many
lines were read and how many became requests). ``submission_batch_members``: the request each
accepted line became, with its line number; inserted in the transaction that registers the
request, so a batch never lists a request that does not exist, nor misses one that does.
Nothing of the file itself is kept (it holds identities). Columns are spelled out here
rather than imported from ``state.batch_tables`` so this revision keeps describing the
schema it created.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0013_submission_batches"
down_revision = "0012_intake_idempotency"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _utc() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime(timezone=False).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "submission_batches",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("registered_at", _utc(), nullable=False),
        sa.Column("registered_by", sa.String(128), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        **_MYSQL,
    )
    op.create_table(
        "submission_batch_members",
        sa.Column("batch_id", sa.String(20), primary_key=True),
        sa.Column("request_id", sa.String(20), primary_key=True),
        sa.Column("line", sa.Integer(), nullable=False),
        **_MYSQL,
    )
    op.create_index(
        "ix_submission_batch_members_request", "submission_batch_members", ["request_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_submission_batch_members_request", table_name="submission_batch_members")
    op.drop_table("submission_batch_members")
    op.drop_table("submission_batches")
