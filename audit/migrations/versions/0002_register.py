"""Request register: data-subject requests with sealed identities, and their history.

Revision ID: 0002_register
Revises: 0001_ledger

The columns are spelled out here rather than imported from ``state.register_tables``
so this revision keeps describing the schema it created when the model moves on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002_register"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None


_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _utc() -> sa.types.TypeEngine[datetime]:
    # Naive UTC as audit.tables.UTCDateTime stores it; MariaDB needs DATETIME(6) to keep
    # microseconds (its default precision is whole seconds).
    return sa.DateTime(timezone=False).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "subject_requests",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(36), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("due_at", _utc(), nullable=False),
        sa.Column("extended", sa.Boolean(), nullable=False),
        sa.Column("extension_reason", sa.Text(), nullable=True),
        sa.Column("extended_at", _utc(), nullable=True),
        sa.Column("extended_by", sa.String(128), nullable=True),
        sa.Column("closed_at", _utc(), nullable=True),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("identity_nonce", sa.LargeBinary(), nullable=True),
        sa.Column("identity_ciphertext", sa.LargeBinary(), nullable=True),
        **_MYSQL,
    )
    op.create_index("ix_subject_requests_status_due", "subject_requests", ["status", "due_at"])
    op.create_index("ix_subject_requests_subject", "subject_requests", ["subject"])
    op.create_table(
        "subject_request_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "request_id",
            sa.String(20),
            sa.ForeignKey("subject_requests.id", name="fk_subject_request_history_request"),
            nullable=False,
        ),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("from_status", sa.String(20), nullable=True),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        **_MYSQL,
    )
    op.create_index(
        "ix_subject_request_history_request", "subject_request_history", ["request_id", "id"]
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; dropping the FK's index first fails on MariaDB.
    op.drop_table("subject_request_history")
    op.drop_table("subject_requests")
