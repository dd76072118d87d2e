"""A request's external reference: the help-desk ticket it came from, if any.

Revision ID: 0010_external_reference
Revises: 0009_approval_decisions

``subject_requests.external_reference``: the ticket id a help desk sent with the request
(``ops.intake``), so the result can be reported back to that ticket. Not personal data
(checked like a note before it is stored); NULL for requests entered any other way.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_external_reference"
down_revision = "0009_approval_decisions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "subject_requests", sa.Column("external_reference", sa.String(128), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("subject_requests") as batch:
        batch.drop_column("external_reference")
