"""The request-level part of request progress: approval, the access package, completion.

One ``request_runs`` row per request holds what is not per store: the approval decision
(who, how, on which plans), the access package's recipient (an X25519 public key, or a
passphrase sealed under the export key until the request closes) and result, and the
completion claim that makes "request.completed" happen exactly once.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from core.engines import IMMEDIATE
from core.errors import IntegrityError, TerminalError
from core.keys import KeyRing
from core.package import PassphraseRecipient, Recipient, X25519Recipient, parse_public_key
from state.progress_tables import request_runs
from state.register_tables import database_errors

_NONCE = 12


def seal_aad(purpose: str, *parts: str) -> bytes:
    """Associated data binding a sealed value to its purpose and row."""
    return "\x1f".join((f"lifecycle/{purpose}/v1", *parts)).encode()


def seal(aead: AESGCM, aad: bytes, payload: bytes) -> tuple[bytes, bytes]:
    """``(nonce, ciphertext)`` of ``payload`` under a fresh random nonce."""
    nonce = os.urandom(_NONCE)
    return nonce, aead.encrypt(nonce, payload, aad)


def unseal(aead: AESGCM, aad: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    """The payload sealed by ``seal``; IntegrityError when altered or moved to another row."""
    try:
        return aead.decrypt(bytes(nonce), bytes(ciphertext), aad)
    except (InvalidTag, ValueError) as e:
        raise IntegrityError("a sealed request value does not open; it was altered") from e


@dataclass(frozen=True)
class Approval:
    """The decision on a request: who decided, how, and on which plans (their digest)."""

    decision: str  # "approved" or "rejected"
    reviewer: str
    source: str  # "cli", "ui", "pre-approved", "policy:auto-approve", "timeout"
    note_sha256: str | None
    digest: str | None
    at: datetime


@dataclass(frozen=True)
class RunState:
    """The request-level record: approval, package and whether completion was claimed."""

    approval: Approval | None
    recipient_kind: str | None
    package_location: str | None
    package_sha256: str | None
    package_bytes: int | None
    completion_claimed: bool = field(default=False)


class RequestRuns:
    """Reads and writes the request-level progress row."""

    def __init__(self, engine: Engine, keys: KeyRing) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{IMMEDIATE: True})
        self._export = AESGCM(keys.export_aes)

    def __repr__(self) -> str:
        return f"RequestRuns(backend={self._engine.dialect.name!r})"

    # -- request level --------------------------------------------------------------------

    def ensure_run(self, request_id: str) -> None:
        """Create the request-level row if it does not exist yet (idempotent)."""
        now = datetime.now(UTC)
        with database_errors("progress", request_id):
            try:
                with self._writer.begin() as conn:
                    conn.execute(
                        insert(request_runs).values(
                            request_id=request_id, created_at=now, updated_at=now
                        )
                    )
            except DbIntegrityError:
                pass  # already there (a rerun, or the CLI created it at submission)

    def _update_run(self, request_id: str, *where: Any, **values: Any) -> int:
        self.ensure_run(request_id)
        values["updated_at"] = datetime.now(UTC)
        stmt = update(request_runs).where(request_runs.c.request_id == request_id, *where)
        with database_errors("progress", request_id), self._writer.begin() as conn:
            return int(conn.execute(stmt.values(**values)).rowcount)

    def run(self, request_id: str) -> RunState:
        """The request-level state (empty when nothing was recorded yet)."""
        with database_errors("progress", request_id), self._engine.connect() as conn:
            row = conn.execute(
                select(request_runs).where(request_runs.c.request_id == request_id)
            ).first()
        if row is None:
            return RunState(None, None, None, None, None)
        approval = None
        if row.approval_decision is not None:
            approval = Approval(
                decision=row.approval_decision,
                reviewer=row.approval_reviewer,
                source=row.approval_source,
                note_sha256=row.approval_note_sha256,
                digest=row.approved_digest,
                at=row.approved_at,
            )
        return RunState(
            approval=approval,
            recipient_kind=row.recipient_kind,
            package_location=row.package_location,
            package_sha256=row.package_sha256,
            package_bytes=row.package_bytes,
            completion_claimed=row.completion_claimed_at is not None,
        )

    def record_approval(
        self,
        request_id: str,
        *,
        decision: str,
        reviewer: str,
        source: str,
        note_sha256: str | None,
        digest: str | None,
    ) -> None:
        """Store the decision; a pre-approval is completed with the plans' digest later."""
        self._update_run(
            request_id,
            approval_decision=decision,
            approval_reviewer=reviewer,
            approval_source=source,
            approval_note_sha256=note_sha256,
            approved_digest=digest,
            approved_at=datetime.now(UTC),
        )

    def clear_approval(self, request_id: str) -> Approval | None:
        """Withdraw the decision (the plans it covered grew); returns what was withdrawn.

        The next approval check asks again (policy, or a reviewer), as for a new plan.
        """
        withdrawn = self.run(request_id).approval
        self._update_run(
            request_id,
            approval_decision=None,
            approval_reviewer=None,
            approval_source=None,
            approval_note_sha256=None,
            approved_digest=None,
            approved_at=None,
        )
        return withdrawn

    def bind_approval(self, request_id: str, digest: str) -> bool:
        """Bind a pre-approval (given before plans existed) to the plans' digest, once.

        True for the one caller that binds it; False when it was bound already.
        """
        bound = self._update_run(
            request_id,
            request_runs.c.approval_decision == "approved",
            request_runs.c.approved_digest.is_(None),
            approved_digest=digest,
        )
        return bound == 1

    def set_waiting_run(self, request_id: str, flow_run_id: str | None) -> None:
        """The flow run that pauses for a decision, so the CLI can resume it with one."""
        self._update_run(request_id, approval_flow_run_id=flow_run_id)

    def waiting_run(self, request_id: str) -> str | None:
        """The flow run that last paused for a decision on the request, if any."""
        query = select(request_runs.c.approval_flow_run_id).where(
            request_runs.c.request_id == request_id
        )
        with database_errors("progress", request_id), self._engine.connect() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else str(found)

    def set_recipient(self, request_id: str, recipient: Recipient) -> None:
        """Who the access package is for: a public key, or a passphrase sealed until close."""
        if isinstance(recipient, X25519Recipient):
            raw = recipient.public_key.public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            self._update_run(request_id, recipient_kind="x25519", recipient_public=raw)
            return
        nonce, sealed = seal(
            self._export, seal_aad("package-passphrase", request_id), recipient.passphrase
        )
        self._update_run(
            request_id,
            recipient_kind="passphrase",
            recipient_nonce=nonce,
            recipient_ciphertext=sealed,
        )

    def recipient(self, request_id: str) -> Recipient | None:
        """The access package's recipient, or None when none was given."""
        query = select(
            request_runs.c.recipient_kind,
            request_runs.c.recipient_public,
            request_runs.c.recipient_nonce,
            request_runs.c.recipient_ciphertext,
        ).where(request_runs.c.request_id == request_id)
        with database_errors("progress", request_id), self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None or row.recipient_kind is None:
            return None
        if row.recipient_kind == "x25519":
            return X25519Recipient(
                parse_public_key(base64.b64encode(row.recipient_public).decode())
            )
        if row.recipient_ciphertext is None:
            raise TerminalError(f"the package passphrase of request {request_id} was destroyed")
        aad = seal_aad("package-passphrase", request_id)
        return PassphraseRecipient(
            unseal(self._export, aad, row.recipient_nonce, row.recipient_ciphertext)
        )

    def record_package(
        self, request_id: str, *, location: str, sha256: str, size: int, records: int
    ) -> None:
        self._update_run(
            request_id,
            package_location=location,
            package_sha256=sha256,
            package_bytes=size,
            package_records=records,
        )

    def claim_completion(self, request_id: str) -> bool:
        """Compare-and-set: True for exactly one caller, which records the completion."""
        claimed = self._update_run(
            request_id,
            request_runs.c.completion_claimed_at.is_(None),
            completion_claimed_at=datetime.now(UTC),
        )
        return claimed == 1

    def forget(self, request_id: str) -> None:
        """Destroy the sealed passphrase of a closing request."""
        stmt = (
            update(request_runs)
            .where(request_runs.c.request_id == request_id)
            .values(recipient_nonce=None, recipient_ciphertext=None, updated_at=datetime.now(UTC))
        )
        with database_errors("progress", request_id), self._writer.begin() as conn:
            conn.execute(stmt)
