"""The intake webhook's memory: deliveries seen and the open request of each ticket.

Revision ID: 0012_intake_idempotency
Revises: 0011_batch_reference

``intake_deliveries``: one row per accepted webhook delivery, keyed by SHA-256 of its
keyed signature (never the body), with the request it became and when the row may go
(the signature is stale by then); inserted in the registration's transaction, so a repeat
of the delivery, even after a restart of the service, loses on the primary key.
``intake_tickets``: the request a help-desk ticket and request kind became, keyed by
SHA-256 of both, so a ticket re-sent while its request is open is answered with that
request. No foreign keys: both are guards beside the register, not part of it. Columns
are spelled out here rather than imported from ``state.register_tables`` so this revision
keeps describing the schema it created.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0012_intake_idempotency"
down_revision = "0011_batch_reference"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _utc() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime(timezone=False).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "intake_deliveries",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(20), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        **_MYSQL,
    )
    op.create_index("ix_intake_deliveries_expires", "intake_deliveries", ["expires_at"])
    op.create_table(
        "intake_tickets",
        sa.Column("ticket_key", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(20), nullable=False),
        sa.Column("claimed_at", _utc(), nullable=False),
        **_MYSQL,
    )


def downgrade() -> None:
    op.drop_table("intake_tickets")
    op.drop_index("ix_intake_deliveries_expires", table_name="intake_deliveries")
    op.drop_table("intake_deliveries")
