"""Approval decisions: checked against the policy, then taken once, atomically.

A decision is an attempt until it is taken. ``check_attempt`` verifies it without touching
the database: a signed decision must verify with the public key the policy lists for the
approver, name this request and the plans as they are now (their digest, or
``PRE_APPROVAL`` while no plans exist), be recent, agree with the form it came with, and
come from someone other than the requester (four-eyes). An unsigned decision passes only
from the Prefect UI and only where the policy sets ``unverified_ui``; system decisions
(policy auto-approval, the pause timing out) carry no signature.

``ApprovalBook.take`` then records it in one transaction with its ``approval.decided``
ledger event: the ``approval_decisions`` row (primary key: request and scope, so the same
plans are decided once) and the request's decision in force (``request_runs``, set only
while none is). A request that is finished, or already decided, refuses the decision:
``DecisionRefused``, which the caller records as ``approval.refused``. Whoever commits
first wins, on SQLite, PostgreSQL and MariaDB alike (the ledger's head lock serializes the
transactions; the primary key and the conditional update are the backstops).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from audit.events import NewEvent
from audit.ledger import Ledger
from config.schema.policy import Approval as ApprovalPolicy
from core.approver_keys import (
    PRE_APPROVAL,
    Decision,
    SignedDecision,
    fingerprint,
    parse_public_key,
    parse_time,
    public_key_text,
    sign_decision,
)
from core.errors import NotFoundError, TerminalError
from state.progress import Phase, RequestProgress
from state.progress_tables import request_runs
from state.register_model import RequestRecord, RequestStatus
from state.register_tables import database_errors, decisions, requests

SIGNATURE_MAX_AGE = timedelta(hours=24)
"""How long a signed decision stays usable: sign shortly before deciding."""
CLOCK_SKEW = timedelta(minutes=5)

Verification = Literal["verified", "unverified", "none"]
HUMAN_SOURCES = frozenset({"cli", "ui", "pre-approved"})


class DecisionRefused(TerminalError):
    """A decision that is not taken. ``taken`` says whether one already stands (or the
    request finished): the caller lost a race or came too late, rather than sent a bad one."""

    def __init__(
        self,
        problem: str,
        *,
        taken: bool = False,
        verified: Verified | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(problem, **fields)
        self.problem = problem
        self.taken = taken
        self.verified = verified  # who it was, when the signature verified (four-eyes)


@dataclass(frozen=True)
class Attempt:
    """A decision someone tries to take, as it arrived."""

    decision: Decision
    source: str  # cli | ui | pre-approved | policy:auto-approve | timeout
    approver: str  # the name given with it (the form's reviewer, --reviewer); may be ""
    signed: SignedDecision | None = None
    note: str = ""


@dataclass(frozen=True)
class Verified:
    """What checking an attempt established: who decided and how that is known."""

    approver: str
    verification: Verification
    key_fingerprint: str | None = None


@dataclass(frozen=True)
class StoredDecision:
    """A decision as ``approval_decisions`` holds it."""

    request_id: str
    scope: str
    decision: Decision
    source: str
    approver: str
    verification: Verification
    key_fingerprint: str | None
    signature: str | None
    signed_at: datetime | None
    note_sha256: str | None
    decided_at: datetime

    def describe(self) -> str:
        """One line for the loser of a race: what was decided, by whom, how, when."""
        return (
            f"{self.decision} by {self.approver} ({self.source}, {self.verification}) "
            f"at {self.decided_at:%Y-%m-%d %H:%M:%S} UTC"
        )


@dataclass(frozen=True)
class Signer:
    """An approver about to sign: the name the policy lists and the matching private key."""

    name: str
    key: Ed25519PrivateKey

    def sign(self, request_id: str, scope: str, decision: Decision) -> SignedDecision:
        return sign_decision(
            self.key, request_id=request_id, scope=scope, decision=decision, approver=self.name
        )


def signer_for(policy: ApprovalPolicy, name: str, key: Ed25519PrivateKey) -> Signer:
    """``name``'s signer; DecisionRefused unless the policy lists ``name`` with this key."""
    entry = policy.approver(name)
    if entry is None:
        raise DecisionRefused("the reviewer is not one of the policy's approvers")
    if entry.public_key is None:
        raise DecisionRefused(
            f"approver '{entry.name}' has no public_key in the policy, so cannot sign "
            "(lifecycle approver keygen)"
        )
    if public_key_text(key.public_key()) != entry.public_key.strip():
        raise DecisionRefused(
            f"the signing key ({fingerprint(key.public_key())}) is not {entry.name}'s key "
            "in the policy"
        )
    return Signer(entry.name, key)


def plans_digest(progress: RequestProgress, request_id: str) -> str:
    """One digest over every store's plan digest, in inventory order: what is decided on."""
    lines = [
        f"{row.store}:{row.plan_digest or '-'}"
        for row in progress.stores(request_id)
        if row.phase is not Phase.SKIPPED
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def current_scope(record: RequestRecord, progress: RequestProgress) -> str:
    """What a decision on ``record`` is about now: its plans' digest once it has plans."""
    if record.status is RequestStatus.RECEIVED:
        return PRE_APPROVAL
    return plans_digest(progress, record.id)


def _refuse(problem: str) -> DecisionRefused:
    return DecisionRefused(problem)


def check_attempt(
    policy: ApprovalPolicy,
    record: RequestRecord,
    scope: str,
    attempt: Attempt,
    now: datetime | None = None,
) -> Verified:
    """Who decided, once the attempt passes every check; DecisionRefused naming the first
    that fails. ``scope`` is ``current_scope`` of the request as it is now."""
    if attempt.source not in HUMAN_SOURCES:
        return Verified(attempt.approver, "none")
    if attempt.approver.strip() and policy.approver(attempt.approver) is None:
        raise _refuse("the reviewer is not one of the policy's approvers")
    if attempt.signed is None:
        return _unsigned(policy, record, attempt)
    signed = attempt.signed
    entry = policy.approver(signed.approver)
    if entry is None:
        raise _refuse(f"'{signed.approver}' is not one of the policy's approvers")
    if entry.public_key is None:
        raise _refuse(
            f"approver '{entry.name}' has no public_key in the policy, so cannot sign "
            "(lifecycle approver keygen)"
        )
    key = parse_public_key(entry.public_key)
    if not signed.valid_for(key):
        raise _refuse(
            f"the signature does not verify with {entry.name}'s public key "
            "(another key, or the decision was altered)"
        )
    _check_signed_fields(record, scope, attempt, signed, now or datetime.now(UTC))
    verified = Verified(entry.name, "verified", fingerprint(key))
    if entry.name.casefold() == record.requested_by.strip().casefold():
        raise DecisionRefused(
            f"{entry.name} requested this request; four-eyes needs someone else",
            verified=verified,
        )
    return verified


def _check_signed_fields(
    record: RequestRecord, scope: str, attempt: Attempt, signed: SignedDecision, now: datetime
) -> None:
    """A valid signature, but over what? This request, these plans, this decision, now."""
    if signed.request_id != record.id:
        raise _refuse(f"the decision was signed for request {signed.request_id}, not this one")
    if signed.scope != scope:
        if scope == PRE_APPROVAL:
            raise _refuse("the decision was signed for plans; this request has none yet")
        raise _refuse(
            "the decision was signed before the plans existed or for other plans; sign "
            "again for the plans as they are now (lifecycle approver sign)"
        )
    if signed.decision != attempt.decision:
        raise _refuse(f"the decision was signed as {signed.decision}, not {attempt.decision}")
    given = attempt.approver.strip().casefold()
    if given and given != signed.approver.casefold():
        raise _refuse(f"the decision was signed by {signed.approver}, not by the reviewer given")
    at = parse_time(signed.signed_at)
    if at > now + CLOCK_SKEW:
        raise _refuse("the decision's signing time lies in the future")
    if now - at > SIGNATURE_MAX_AGE:
        hours = int(SIGNATURE_MAX_AGE.total_seconds() // 3600)
        raise _refuse(f"the decision was signed more than {hours} hours ago; sign it again")


def _unsigned(policy: ApprovalPolicy, record: RequestRecord, attempt: Attempt) -> Verified:
    if attempt.source != "ui" or not policy.unverified_ui:
        raise _refuse(
            "the decision is not signed: sign it with the approver's key (lifecycle approver "
            "sign ID --key FILE, then paste the line as the signature)"
            if attempt.source == "ui"
            else "the decision is not signed (give the approver's --signing-key)"
        )
    name = attempt.approver.strip()
    entry = policy.approver(name) if name else None
    if entry is None:
        raise _refuse("the reviewer is not one of the policy's approvers")
    if entry.name.casefold() == record.requested_by.strip().casefold():
        raise _refuse(f"{entry.name} requested this request; four-eyes needs someone else")
    return Verified(entry.name, "unverified")


def decision_row(
    request_id: str,
    scope: str,
    attempt: Attempt,
    verified: Verified,
    note_sha256: str | None,
) -> dict[str, Any]:
    """The ``approval_decisions`` row of a checked attempt."""
    signed = attempt.signed if verified.verification == "verified" else None
    return {
        "request_id": request_id,
        "scope": scope,
        "decision": attempt.decision,
        "source": attempt.source,
        "approver": verified.approver,
        "verification": verified.verification,
        "key_fingerprint": verified.key_fingerprint,
        "signature": None if signed is None else signed.signature,
        "signed_at": None if signed is None else parse_time(signed.signed_at),
        "note_sha256": note_sha256,
        "decided_at": datetime.now(UTC),
    }


class ApprovalBook:
    """Reads and takes approval decisions on the ledger's database."""

    def __init__(self, ledger: Ledger, progress: RequestProgress) -> None:
        self._ledger = ledger
        self._progress = progress
        self._engine = ledger.engine

    def __repr__(self) -> str:
        return f"ApprovalBook(backend={self._engine.dialect.name!r})"

    def get(self, request_id: str, scope: str) -> StoredDecision | None:
        """The decision on ``request_id``'s plans ``scope``, or None."""
        query = select(decisions).where(
            decisions.c.request_id == request_id, decisions.c.scope == scope
        )
        with database_errors("approval", request_id), self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _stored(row)

    def all(self, request_id: str) -> list[StoredDecision]:
        """Every decision taken on the request, oldest first."""
        query = (
            select(decisions)
            .where(decisions.c.request_id == request_id)
            .order_by(decisions.c.decided_at)
        )
        with database_errors("approval", request_id), self._engine.connect() as conn:
            return [_stored(row) for row in conn.execute(query)]

    def take(self, event: NewEvent, row: Mapping[str, Any]) -> None:
        """Record the decision ``row`` with its ledger ``event``, all or nothing.

        DecisionRefused (``taken``) when the request is finished, a decision on it stands,
        or these plans were decided before; nothing is recorded then.
        """
        request_id = str(row["request_id"])
        self._progress.runs.ensure_run(request_id)
        digest = None if row["scope"] == PRE_APPROVAL else row["scope"]

        def decide(conn: Connection) -> None:
            _refuse_if_finished(conn, request_id)
            _refuse_if_decided(conn, request_id)
            try:  # a failed INSERT aborts the transaction: raising rolls it all back
                conn.execute(insert(decisions).values(**row))
            except DbIntegrityError:
                raise DecisionRefused(
                    f"request {request_id}: these plans were already decided", taken=True
                ) from None
            in_force = conn.execute(
                update(request_runs)
                .where(
                    request_runs.c.request_id == request_id,
                    request_runs.c.approval_decision.is_(None),
                )
                .values(
                    approval_decision=row["decision"],
                    approval_reviewer=row["approver"],
                    approval_source=row["source"],
                    approval_note_sha256=row["note_sha256"],
                    approved_digest=digest,
                    approved_at=row["decided_at"],
                    updated_at=row["decided_at"],
                )
            )
            if in_force.rowcount != 1:
                raise DecisionRefused(f"request {request_id} was decided meanwhile", taken=True)

        self._ledger.append_many([event], also=decide)

    def record(self, event: NewEvent) -> None:
        """Append an event about a decision (a refusal, a binding) on its own."""
        self._ledger.append_many([event])


def _refuse_if_finished(conn: Connection, request_id: str) -> None:
    status = conn.execute(select(requests.c.status).where(requests.c.id == request_id)).scalar()
    if status is None:
        raise NotFoundError(f"request {request_id} not found", request_id=request_id)
    if RequestStatus(status).terminal:
        raise DecisionRefused(
            f"request {request_id} is {status}; nothing left to decide", taken=True
        )


def _refuse_if_decided(conn: Connection, request_id: str) -> None:
    current = conn.execute(
        select(
            request_runs.c.approval_decision,
            request_runs.c.approval_reviewer,
            request_runs.c.approval_source,
            request_runs.c.approved_at,
        ).where(request_runs.c.request_id == request_id)
    ).first()
    if current is not None and current.approval_decision is not None:
        when = f" at {current.approved_at:%Y-%m-%d %H:%M:%S} UTC" if current.approved_at else ""
        raise DecisionRefused(
            f"request {request_id} was already decided: {current.approval_decision} by "
            f"{current.approval_reviewer} ({current.approval_source}){when}",
            taken=True,
        )


def _stored(row: Row[Any]) -> StoredDecision:
    return StoredDecision(
        request_id=row.request_id,
        scope=row.scope,
        decision=row.decision,
        source=row.source,
        approver=row.approver,
        verification=row.verification,
        key_fingerprint=row.key_fingerprint,
        signature=row.signature,
        signed_at=row.signed_at,
        note_sha256=row.note_sha256,
        decided_at=row.decided_at,
    )
