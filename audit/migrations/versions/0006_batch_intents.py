"""Erasure batch intents: request batches written down before they take effect.

Revision ID: 0006_batch_intents
Revises: 0005_transfer_checks

``request_batches`` rows become intents first (``state`` ``intent``, with the batch's keys),
confirmed (``committed``) once the store committed or the call returned, or ``discarded``
when a resumed run finds the store never changed; only committed batches are audited.
Existing rows were recorded after their commit: they are ``committed``. Columns are
spelled out here rather than imported from ``state.progress_tables`` so this revision
keeps describing the schema it created when the model moves on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006_batch_intents"
down_revision = "0005_transfer_checks"
branch_labels = None
depends_on = None


def _long_text() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.add_column(
        "request_batches",
        sa.Column("state", sa.String(16), nullable=False, server_default="committed"),
    )
    op.add_column("request_batches", sa.Column("attempt", sa.Integer(), nullable=True))
    op.add_column("request_batches", sa.Column("intent", sa.Integer(), nullable=True))
    op.add_column("request_batches", sa.Column("batch_keys", _long_text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_batches") as batch:
        batch.drop_column("batch_keys")
        batch.drop_column("intent")
        batch.drop_column("attempt")
        batch.drop_column("state")
