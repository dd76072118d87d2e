"""The transfer and posture check's own record: each run's findings (configuration facts only).

``transfer_checks``: one row per run with its findings as JSON, so the next run can say
which findings are new, persisting or resolved. Migration ``0005_transfer_checks``
creates it; keep them in step.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table

from audit.tables import MYSQL_TABLE_ARGS, UTCDateTime, metadata
from state.progress_tables import long_text
from state.register_tables import ID_LEN

transfer_checks = Table(
    "transfer_checks",
    metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("checked_at", UTCDateTime(), nullable=False),
    Column("findings", long_text(), nullable=False),  # JSON list of findings
    Column("total", Integer(), nullable=False),
    Column("high", Integer(), nullable=False),
    Column("flow_run_id", String(36), nullable=True),
    Index("ix_transfer_checks_checked_at", "checked_at"),
    **MYSQL_TABLE_ARGS,
)
