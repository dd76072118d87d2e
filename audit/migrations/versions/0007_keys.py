"""The master key's fingerprint per key epoch (audit_keys), append-only.

Revision ID: 0007_keys
Revises: 0006_batch_intents

Rows are written by the application (the migration cannot know the key): epoch 1 when
the database is first keyed, one more per rotation. Like the ledger's tables, UPDATE
and DELETE are refused by triggers. Columns are spelled out rather than imported from
``audit.key_tables`` so this revision keeps describing the schema it created.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007_keys"
down_revision = "0006_batch_intents"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
_TABLE = "audit_keys"


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("epoch", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("since_seq", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=False).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column("carried_nonce", sa.LargeBinary(), nullable=True),
        sa.Column("carried", sa.LargeBinary(), nullable=True),
        **_MYSQL,
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        # audit_refuse_change() comes with 0001_ledger.
        op.execute(
            f"CREATE TRIGGER {_TABLE}_append_only BEFORE UPDATE OR DELETE ON {_TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {_TABLE}_no_truncate BEFORE TRUNCATE ON {_TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        if dialect == "sqlite":
            body = f"BEGIN SELECT RAISE(ABORT, '{_TABLE} is append-only'); END"
        else:
            body = (
                f"FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{_TABLE} is append-only'"
            )
        op.execute(
            f"CREATE TRIGGER {_TABLE}_no_{action.lower()} BEFORE {action} ON {_TABLE} {body}"
        )


def downgrade() -> None:
    bind = op.get_bind()
    quote = bind.dialect.identifier_preparer.quote  # names are constants; quoted all the same
    table = quote(_TABLE)
    if bind.dialect.name == "postgresql":
        for trigger in (f"{_TABLE}_append_only", f"{_TABLE}_no_truncate"):
            op.execute(f"DROP TRIGGER IF EXISTS {quote(trigger)} ON {table}")
    else:
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {quote(f'{_TABLE}_no_{action}')}")
    op.drop_table(_TABLE)
