"""SQLAlchemy Core tables of the audit ledger (the migration 0001_ledger creates them).

``metadata`` is shared with the request register (state/register_tables.py) so one
``MetaData`` describes the whole audit database. Column lengths here are also enforced
at append time (audit/guard.py) so every backend stores exactly what was hashed:
MariaDB in non-strict mode would otherwise truncate silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator, TypeEngine, UserDefinedType

from audit.canonical import canonical_json

metadata = MetaData()
MYSQL_TABLE_ARGS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
}
"""Table options on MariaDB/MySQL, for every table on this metadata (ledger and state)."""

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first event: the chain starts from a fixed, known value."""

HEAD_ROW_ID = 1

STATUSES = ("planned", "approved", "succeeded", "failed", "skipped", "deferred")

# Maximum lengths of the string columns; audit.guard refuses longer values.
LENGTHS = {
    "event_id": 32,
    "kind": 64,
    "status": 16,
    "actor": 128,
    "request_id": 64,
    "flow_run_id": 64,
    "task_run_id": 64,
    "connector": 128,
    "target": 512,
    "subject": 36,
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes stored as naive UTC with microseconds on every backend.

    MySQL/MariaDB ``DATETIME`` drops fractions unless declared ``DATETIME(6)``; storing
    naive UTC everywhere keeps the value read back identical to the value hashed.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class CanonicalJSON(UserDefinedType[Any]):
    """A JSON column written as canonical text (sorted keys, no whitespace).

    PostgreSQL ``json`` and MariaDB ``JSON`` (LONGTEXT) keep the text verbatim, so
    verification can hash the stored text without parsing it; backends that normalize
    JSON (JSONB, MySQL 8) still verify through re-canonicalization.
    """

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "JSON"

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], str | None]:
        def process(value: Any) -> str | None:
            return None if value is None else canonical_json(value)

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any]:
        def process(value: Any) -> Any:
            # psycopg parses json columns itself; the other drivers hand back text.
            return json.loads(value) if isinstance(value, str | bytes) else value

        return process


audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(LENGTHS["event_id"]), nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("request_id", String(LENGTHS["request_id"])),
    Column("flow_run_id", String(LENGTHS["flow_run_id"])),
    Column("task_run_id", String(LENGTHS["task_run_id"])),
    Column("actor", String(LENGTHS["actor"]), nullable=False),
    Column("kind", String(LENGTHS["kind"]), nullable=False),
    Column("connector", String(LENGTHS["connector"])),
    Column("target", String(LENGTHS["target"])),
    Column("subject", String(LENGTHS["subject"])),
    Column("status", String(LENGTHS["status"]), nullable=False),
    Column("counts", CanonicalJSON(), nullable=False),
    Column("detail", CanonicalJSON(), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("event_id", name="uq_audit_events_event_id"),
    CheckConstraint(
        "status IN ('planned', 'approved', 'succeeded', 'failed', 'skipped', 'deferred')",
        name="ck_audit_events_status",
    ),
    Index("ix_audit_events_request_id", "request_id"),
    Index("ix_audit_events_occurred_at", "occurred_at"),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    CheckConstraint("id = 1", name="ck_audit_head_single_row"),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)
"""One row (id 1): the chain head that appends lock to serialize."""

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", BigInteger, nullable=False),
    Column("head_hash", String(64), nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("signature", String(128), nullable=False),
    Index("ix_audit_checkpoints_seq", "seq"),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)
