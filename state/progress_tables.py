"""Tables of request progress (SQLAlchemy Core), on the audit database's metadata.

``request_progress``: one row per request and store, the phase reached and what a rerun
needs to continue from it (findings and plan with the store's own row keys, derived
identities sealed with AES-GCM). ``request_batches``: every executed batch, written down
as an intent (state ``intent``, with its keys) before it takes effect and confirmed
(``committed``) once it did, or ``discarded`` when a resumed run finds it never did; the
ledger audits the committed ones, so auditing can be retried without executing again.
``request_runs``: one row per request for what is not per store (approval, the access
package's recipient and result, the completion claim). Migration ``0003_request_progress``
creates the three, ``0006_batch_intents`` adds the intent columns and
``0011_batch_reference`` a batch's reference; keep them in step.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

from audit.tables import MYSQL_TABLE_ARGS, UTCDateTime, metadata
from state.register_tables import ACTOR_LEN, ID_LEN, history_pk_type

STORE_LEN = 64
PHASE_LEN = 16
TARGET_LEN = 512
DIGEST_LEN = 64
REFERENCE_LEN = 128  # a store's reference for a batch (migration 0011)


def long_text() -> TypeEngine[str]:
    """TEXT, but LONGTEXT on MySQL/MariaDB where TEXT stops at 64 KiB (a plan's keys)."""
    return Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def _request_fk(table: str) -> Any:
    return ForeignKey("subject_requests.id", name=f"fk_{table}_request")


request_progress = Table(
    "request_progress",
    metadata,
    Column("request_id", String(ID_LEN), _request_fk("request_progress"), primary_key=True),
    Column("store", String(STORE_LEN), primary_key=True),
    Column("position", Integer(), nullable=False),  # the store's place in the inventory
    Column("phase", String(PHASE_LEN), nullable=False),
    Column("skip_reason", Text(), nullable=True),
    Column("counts", Text(), nullable=False),  # JSON: matches per target when located
    # What a rerun needs; all NULL once the request closes (they hold row keys).
    Column("findings", long_text(), nullable=True),
    Column("derived_nonce", LargeBinary(), nullable=True),
    Column("derived_ciphertext", LargeBinary(), nullable=True),
    Column("plan", long_text(), nullable=True),
    Column("plan_digest", String(DIGEST_LEN), nullable=True),
    Column("plan_summary", Text(), nullable=True),  # JSON: steps with counts, no keys
    Column("attempts", Integer(), nullable=False),
    Column("batches_audited", Boolean(), nullable=False),
    Column("verification", Text(), nullable=True),  # JSON: remaining/deferred/masked
    Column("located_at", UTCDateTime(), nullable=True),
    Column("planned_at", UTCDateTime(), nullable=True),
    Column("executed_at", UTCDateTime(), nullable=True),
    Column("verified_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    **MYSQL_TABLE_ARGS,
)

request_batches = Table(
    "request_batches",
    metadata,
    Column("id", history_pk_type(), primary_key=True, autoincrement=True),
    Column("request_id", String(ID_LEN), _request_fk("request_batches"), nullable=False),
    Column("store", String(STORE_LEN), nullable=False),
    Column("target", String(TARGET_LEN), nullable=False),
    Column("action", String(PHASE_LEN), nullable=False),
    Column("affected", BigInteger(), nullable=False),
    Column("keys_digest", String(DIGEST_LEN), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    # intent | committed | discarded; rows written before intents existed are committed.
    Column("state", String(PHASE_LEN), nullable=False, server_default="committed"),
    Column("attempt", Integer(), nullable=True),  # the execution attempt that wrote it
    Column("intent", Integer(), nullable=True),  # its index among that attempt's intents
    Column("batch_keys", long_text(), nullable=True),  # JSON while unconfirmed, then NULL
    # the store's own reference for the batch (a processor's confirmation); not personal data
    Column("reference", String(REFERENCE_LEN), nullable=True),
    Index("ix_request_batches_request_store", "request_id", "store", "id"),
    **MYSQL_TABLE_ARGS,
)

request_runs = Table(
    "request_runs",
    metadata,
    Column("request_id", String(ID_LEN), _request_fk("request_runs"), primary_key=True),
    Column("approval_decision", String(PHASE_LEN), nullable=True),
    Column("approval_reviewer", String(ACTOR_LEN), nullable=True),
    Column("approval_source", String(32), nullable=True),
    Column("approval_note_sha256", String(DIGEST_LEN), nullable=True),
    Column("approved_digest", String(DIGEST_LEN), nullable=True),
    Column("approved_at", UTCDateTime(), nullable=True),
    Column("recipient_kind", String(PHASE_LEN), nullable=True),
    Column("recipient_public", LargeBinary(), nullable=True),
    Column("recipient_nonce", LargeBinary(), nullable=True),  # sealed passphrase
    Column("recipient_ciphertext", LargeBinary(), nullable=True),
    Column("package_location", Text(), nullable=True),
    Column("package_sha256", String(DIGEST_LEN), nullable=True),
    Column("package_bytes", BigInteger(), nullable=True),
    Column("package_records", BigInteger(), nullable=True),
    Column("completion_claimed_at", UTCDateTime(), nullable=True),
    # The flow run that paused for a decision (0008_approval_decisions adds it).
    Column("approval_flow_run_id", String(36), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    **MYSQL_TABLE_ARGS,
)

PROGRESS_TABLES = (request_progress, request_batches, request_runs)
