"""Tables of retention-sweep progress (SQLAlchemy Core), on the audit database's metadata.

``sweep_runs``: one row per sweep: the moment it measures age from (pinned, so a resumed
sweep deletes exactly what the uninterrupted one would have), whether it was a dry run,
its status and the plan and summary as counts-only JSON. ``sweep_targets``: per target,
the counts planned, the keyset cursor reached and the rows done. ``sweep_batches``: each
batch's key range, count and digest, written *before* the batch acts (state ``pending``)
and marked ``audited`` in the same transaction as its ledger event. Migration
``0004_sweeps`` creates the three; keep them in step. ``leases``: one row per lease name
(``retention-sweep``): who holds it and until when (``state.leases``); migration
``0008_sweep_leases`` creates it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text

from audit.tables import MYSQL_TABLE_ARGS, UTCDateTime, metadata
from state.progress_tables import DIGEST_LEN, PHASE_LEN, STORE_LEN, TARGET_LEN, long_text
from state.register_tables import ID_LEN, history_pk_type

LEASE_NAME_LEN = 64
OWNER_LEN = 255

sweep_runs = Table(
    "sweep_runs",
    metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("as_of", UTCDateTime(), nullable=False),
    Column("dry_run", Boolean(), nullable=False),
    Column("status", String(PHASE_LEN), nullable=False),  # running | completed | failed
    Column("rules", Text(), nullable=False),  # JSON: the rule ids asked for ([] = all)
    Column("plan", long_text(), nullable=False),  # JSON: targets with counts, no keys
    Column("summary", long_text(), nullable=True),
    Column("flow_run_id", String(36), nullable=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_sweep_runs_status", "status", "started_at"),
    **MYSQL_TABLE_ARGS,
)

sweep_targets = Table(
    "sweep_targets",
    metadata,
    Column("sweep_id", String(ID_LEN), primary_key=True),
    Column("target", String(TARGET_LEN), primary_key=True),
    Column("position", Integer(), nullable=False),
    Column("store", String(STORE_LEN), nullable=False),
    Column("action", String(PHASE_LEN), nullable=False),
    Column("expired", BigInteger(), nullable=False),  # planned: to act on
    Column("held", BigInteger(), nullable=False),  # planned: kept by legal holds / locks
    Column("done", BigInteger(), nullable=False),  # rows or versions acted on so far
    Column("batches", Integer(), nullable=False),
    Column("cursor", Text(), nullable=True),  # JSON key the last audited batch ended at
    # pending | rescan (a pass after a verification found some left) | done | held | failed
    Column("state", String(PHASE_LEN), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    **MYSQL_TABLE_ARGS,
)

sweep_batches = Table(
    "sweep_batches",
    metadata,
    Column("id", history_pk_type(), primary_key=True, autoincrement=True),
    Column("sweep_id", String(ID_LEN), nullable=False),
    Column("target", String(TARGET_LEN), nullable=False),
    Column("seq", Integer(), nullable=False),
    Column("lo", Text(), nullable=True),  # JSON key, exclusive
    Column("hi", Text(), nullable=False),  # JSON key, inclusive
    Column("count", BigInteger(), nullable=False),  # keys read for the batch
    Column("keys_digest", String(DIGEST_LEN), nullable=False),
    Column("affected", BigInteger(), nullable=True),  # rows the range statement changed
    Column("state", String(PHASE_LEN), nullable=False),  # pending | audited
    Column("recorded_at", UTCDateTime(), nullable=False),
    Index("ix_sweep_batches_target", "sweep_id", "target", "seq", unique=True),
    **MYSQL_TABLE_ARGS,
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(LEASE_NAME_LEN), primary_key=True),
    Column("holder", String(32), nullable=False),  # random token of one acquisition
    Column("owner", String(OWNER_LEN), nullable=False),  # who, for messages: run, pid, host
    Column("host", String(OWNER_LEN), nullable=False),
    Column("pid", Integer(), nullable=False),
    Column("acquired_at", UTCDateTime(), nullable=False),
    Column("renewed_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    **MYSQL_TABLE_ARGS,
)

SWEEP_TABLES = (sweep_runs, sweep_targets, sweep_batches, leases)
