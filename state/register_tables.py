"""Tables of the request register (SQLAlchemy Core), on the audit database's metadata.

``subject_requests`` holds one row per data-subject request: the keyed pseudonym of
the subject, the sealed identity (nonce and AES-GCM ciphertext, NULL once destroyed),
deadlines and status. ``subject_request_history`` records every registration, status
change and extension. Migration ``0002_register`` creates both; keep them in step.
``approval_decisions`` holds each approval decision once (request and plans).
``intake_deliveries`` and ``intake_tickets`` keep the intake webhook from registering a
request twice (``ops.intake.idempotency``; migration 0012).
Also here: the translation of database errors into the product's error tree, and the
maintenance that makes overwritten values physically unrecoverable (``vacuum_tables``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    ForeignKey,
    Index,
    Insert,
    Integer,
    LargeBinary,
    Row,
    String,
    Table,
    Text,
    insert,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.types import TypeEngine

from audit.tables import LENGTHS, MYSQL_TABLE_ARGS, UTCDateTime, metadata
from core.engines import reclaim_storage
from core.errors import LifecycleError, TerminalError, TransientError
from core.pseudonym import Pseudonym
from state.register_model import RequestKind, RequestRecord, RequestStatus

ID_LEN = 20  # "req_" + 16 hex digits
KIND_LEN = 16
STATUS_LEN = 20
SUBJECT_LEN = 36  # "psn_" + 32 hex digits
ACTOR_LEN = LENGTHS["actor"]  # actors are also ledger actors
ACTION_LEN = 20
DIGEST_LEN = 64  # SHA-256 in hex
SOURCE_LEN = 32
FINGERPRINT_LEN = 40  # "ed25519:" + 32 hex digits
EXTERNAL_REFERENCE_LEN = 128  # a help-desk ticket id (ops.intake); migration 0010


def history_pk_type() -> TypeEngine[int]:
    """BIGINT, except INTEGER on SQLite where only that is an auto-incrementing rowid."""
    return BigInteger().with_variant(Integer(), "sqlite")


requests = Table(
    "subject_requests",
    metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("kind", String(KIND_LEN), nullable=False),
    Column("subject", String(SUBJECT_LEN), nullable=False),
    Column("status", String(STATUS_LEN), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("extended", Boolean(), nullable=False, default=False),
    Column("extension_reason", Text(), nullable=True),
    Column("extended_at", UTCDateTime(), nullable=True),
    Column("extended_by", String(ACTOR_LEN), nullable=True),
    Column("closed_at", UTCDateTime(), nullable=True),
    Column("requested_by", String(ACTOR_LEN), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # Sealed identity (and rectification values); both NULL once the request closes.
    Column("identity_nonce", LargeBinary(), nullable=True),
    Column("identity_ciphertext", LargeBinary(), nullable=True),
    Column("external_reference", String(EXTERNAL_REFERENCE_LEN), nullable=True),
    Index("ix_subject_requests_status_due", "status", "due_at"),
    Index("ix_subject_requests_subject", "subject"),
    **MYSQL_TABLE_ARGS,
)

history = Table(
    "subject_request_history",
    metadata,
    Column("id", history_pk_type(), primary_key=True, autoincrement=True),
    Column(
        "request_id",
        String(ID_LEN),
        ForeignKey("subject_requests.id", name="fk_subject_request_history_request"),
        nullable=False,
    ),
    Column("at", UTCDateTime(), nullable=False),
    Column("action", String(ACTION_LEN), nullable=False),
    Column("from_status", String(STATUS_LEN), nullable=True),
    Column("to_status", String(STATUS_LEN), nullable=False),
    Column("actor", String(ACTOR_LEN), nullable=False),
    Column("note", Text(), nullable=True),
    Index("ix_subject_request_history_request", "request_id", "id"),
    **MYSQL_TABLE_ARGS,
)

decisions = Table(
    "approval_decisions",
    metadata,
    # One decision per request and plans: the primary key is what makes it atomic. The
    # scope is the digest of the plans decided on, or "pre-approval" (before plans exist).
    Column(
        "request_id",
        String(ID_LEN),
        ForeignKey("subject_requests.id", name="fk_approval_decisions_request"),
        primary_key=True,
    ),
    Column("scope", String(DIGEST_LEN), primary_key=True),
    Column("decision", String(STATUS_LEN), nullable=False),  # approved | rejected
    Column("source", String(SOURCE_LEN), nullable=False),  # cli, ui, pre-approved, ...
    Column("approver", String(ACTOR_LEN), nullable=False),
    Column("verification", String(STATUS_LEN), nullable=False),  # verified | unverified | none
    Column("key_fingerprint", String(FINGERPRINT_LEN), nullable=True),
    Column("signature", Text(), nullable=True),  # base64 Ed25519, re-verifiable offline
    Column("signed_at", UTCDateTime(), nullable=True),
    Column("note_sha256", String(DIGEST_LEN), nullable=True),
    Column("decided_at", UTCDateTime(), nullable=False),
    **MYSQL_TABLE_ARGS,
)
"""Approval decisions, inserted once each (``state.approvals``); migration 0008 creates it."""

intake_deliveries = Table(
    "intake_deliveries",
    metadata,
    # One row per accepted webhook delivery (ops.intake.idempotency), inserted in the
    # transaction that registers its request: the primary key makes a repeat lose. The
    # digest is SHA-256 of the delivery's keyed signature, never of the body.
    Column("digest", String(DIGEST_LEN), primary_key=True),
    Column("request_id", String(ID_LEN), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_intake_deliveries_expires", "expires_at"),
    **MYSQL_TABLE_ARGS,
)
"""Webhook deliveries seen, until their signature is stale; migration 0012 creates it."""

intake_tickets = Table(
    "intake_tickets",
    metadata,
    # The request a help-desk ticket (and request kind) became, keyed by SHA-256 of both:
    # one open request per ticket and kind (ops.intake.idempotency); a claim whose request
    # has closed is taken over by the next one.
    Column("ticket_key", String(DIGEST_LEN), primary_key=True),
    Column("request_id", String(ID_LEN), nullable=False),
    Column("claimed_at", UTCDateTime(), nullable=False),
    **MYSQL_TABLE_ARGS,
)
"""The open request of each help-desk ticket and kind; migration 0012 creates it."""

REGISTER_TABLES = (requests, history)


RECORD_COLUMNS = (
    requests.c.id,
    requests.c.kind,
    requests.c.subject,
    requests.c.status,
    requests.c.received_at,
    requests.c.due_at,
    requests.c.extended,
    requests.c.extension_reason,
    requests.c.closed_at,
    requests.c.requested_by,
    requests.c.identity_ciphertext.is_(None).label("identity_destroyed"),
)
"""The columns ``record_from_row`` reads: everything but the sealed identity itself."""


def record_from_row(row: Row[*tuple[Any, ...]]) -> RequestRecord:
    """A register row (selected with ``RECORD_COLUMNS``) as a record."""
    return RequestRecord(
        id=row.id,
        kind=RequestKind(row.kind),
        subject=Pseudonym.parse(row.subject),
        status=RequestStatus(row.status),
        received_at=row.received_at,
        due_at=row.due_at,
        extended=bool(row.extended),
        extension_reason=row.extension_reason,
        closed_at=row.closed_at,
        requested_by=row.requested_by,
        identity_destroyed=bool(row.identity_destroyed),
    )


def history_entry(
    request_id: str,
    action: str,
    *,
    at: datetime,
    from_status: RequestStatus | None,
    to_status: RequestStatus,
    actor: str,
    note: str | None = None,
) -> Insert:
    """The INSERT of one history line (run it in the transaction of the change)."""
    return insert(history).values(
        request_id=request_id,
        at=at,
        action=action,
        from_status=None if from_status is None else from_status.value,
        to_status=to_status.value,
        actor=actor,
        note=note,
    )


@contextmanager
def database_errors(operation: str, request_id: str | None = None) -> Iterator[None]:
    """Translate SQLAlchemy errors; messages name the operation, never statement values."""
    try:
        yield
    except LifecycleError:
        raise
    except OperationalError as e:  # lost connection, lock timeout, deadlock: retryable
        raise TransientError(
            f"register database unavailable during {operation} ({type(e.orig).__name__})",
            request_id=request_id,
        ) from e
    except SQLAlchemyError as e:
        raise TerminalError(
            f"register database error during {operation} ({type(e).__name__})",
            request_id=request_id,
        ) from e


def vacuum_tables(engine: Engine) -> None:
    """Rewrite the register's storage so values overwritten or NULLed are physically gone."""
    with database_errors("vacuum"):
        reclaim_storage(engine, REGISTER_TABLES)
