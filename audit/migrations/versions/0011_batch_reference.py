"""A batch's reference: the store's own confirmation of it, if it gives one.

Revision ID: 0011_batch_reference
Revises: 0010_external_reference

``request_batches.reference``: the reference a store returned for an executed batch (a
processor's confirmation of an erasure or correction), carried into the batch's ledger
event. A short token, not personal data (the connector checks it); NULL for stores that
give none and for batches recorded before this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_batch_reference"
down_revision = "0010_external_reference"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("request_batches", sa.Column("reference", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_batches") as batch:
        batch.drop_column("reference")
