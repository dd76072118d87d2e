"""Value types of the audit ledger: what callers append and what they read back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from core.pseudonym import Pseudonym


class EventStatus(StrEnum):
    """Outcome of the step an event records."""

    PLANNED = "planned"
    APPROVED = "approved"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    DEFERRED = "deferred"


@dataclass(frozen=True)
class NewEvent:
    """An event to append. ``subject`` only ever holds a keyed pseudonym."""

    kind: str
    status: EventStatus
    request_id: str | None = None
    connector: str | None = None
    target: str | None = None
    subject: Pseudonym | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    detail: Mapping[str, Any] = field(default_factory=dict)
    flow_run_id: str | None = None
    task_run_id: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class StoredEvent:
    """An event as it stands in the ledger, with its chain position and hashes."""

    seq: int
    event_id: str
    occurred_at: datetime
    kind: str
    status: EventStatus
    actor: str
    request_id: str | None
    flow_run_id: str | None
    task_run_id: str | None
    connector: str | None
    target: str | None
    subject: str | None
    counts: Mapping[str, int]
    detail: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of the chain head: ``count`` events ending in ``head_hash``."""

    seq: int
    head_hash: str
    count: int
    created_at: datetime
    signature: str  # base64 Ed25519 over the checkpoint's canonical encoding


@dataclass(frozen=True)
class VerifyReport:
    """Result of verifying the chain; ``first_bad_seq`` names where it breaks."""

    ok: bool
    events_checked: int
    checkpoints_checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
