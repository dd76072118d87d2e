"""Leases: one retention sweep at a time.

Revision ID: 0008_sweep_leases
Revises: 0007_keys

One row per lease name (``retention-sweep``): the holder's random token, who it is (for
messages), its pid and host (a dead holder on the same host is taken over at once), and
when it was acquired, last renewed and expires. Columns are spelled out here rather than
imported from ``state.sweep_tables`` so this revision keeps describing the schema it
created when the model moves on.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008_sweep_leases"
down_revision = "0007_keys"
branch_labels = None
depends_on = None


def _utc() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime(timezone=False).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("acquired_at", _utc(), nullable=False),
        sa.Column("renewed_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("leases")
