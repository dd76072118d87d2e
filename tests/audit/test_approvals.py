"""Approval decisions on every backend: taken once, atomically with their ledger event;
refused on a decided or finished request; checked against the policy's keys."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.events import EventStatus, NewEvent
from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from config.schema.policy import Approval
from core.approver_keys import PRE_APPROVAL, public_key_text, sign_decision
from state.approvals import (
    ApprovalBook,
    Attempt,
    DecisionRefused,
    check_attempt,
    decision_row,
)
from state.progress import RequestProgress
from state.register import RequestKind, RequestRecord, RequestRegister, RequestStatus

KEYS = {
    name: Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)
    for n, name in enumerate(("privacy-officer", "dpo", "legal", "ciso"), start=1)
}
POLICY = Approval.model_validate(
    {
        "approvers": [
            {"name": name, "public_key": public_key_text(key.public_key())}
            for name, key in KEYS.items()
        ]
    }
)
DIGEST = "cd" * 32


@dataclass
class Env:
    register: RequestRegister
    progress: RequestProgress
    book: ApprovalBook
    ledger: Ledger

    def request(self, requested_by: str = "intake-desk") -> RequestRecord:
        record = self.register.register(
            RequestKind.ERASURE, {"email": "robin@example.com"}, requested_by=requested_by
        )
        self.progress.runs.ensure_run(record.id)
        return record

    def take(self, record: RequestRecord, name: str, scope: str = PRE_APPROVAL) -> None:
        signed = sign_decision(
            KEYS[name], request_id=record.id, scope=scope, decision="approved", approver=name
        )
        attempt = Attempt("approved", "cli", name, signed)
        verified = check_attempt(POLICY, record, scope, attempt)
        event = NewEvent(
            kind="approval.decided",
            status=EventStatus.APPROVED,
            request_id=record.id,
            subject=record.subject,
            actor=verified.approver,
            detail={"approver": verified.approver},
        )
        self.book.take(event, decision_row(record.id, scope, attempt, verified, None))

    def kinds(self, record: RequestRecord) -> list[str]:
        return [e.kind for e in self.ledger.events(request_id=record.id)]


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    keys = keyring_from_settings()
    ledger = Ledger.open(db_url, keys=keys, actor="tests")
    progress = RequestProgress(ledger.engine, keys)
    yield Env(RequestRegister(ledger, keys), progress, ApprovalBook(ledger, progress), ledger)
    ledger.engine.dispose()


def test_concurrent_decisions_one_wins_the_others_are_refused(env: Env) -> None:
    record = env.request()
    barrier = threading.Barrier(len(KEYS))
    outcomes: dict[str, Any] = {}

    def decide(name: str) -> None:
        barrier.wait()
        try:
            env.take(record, name)
            outcomes[name] = "won"
        except DecisionRefused as refused:
            outcomes[name] = refused

    threads = [threading.Thread(target=decide, args=(name,)) for name in KEYS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    [winner] = [name for name, outcome in outcomes.items() if outcome == "won"]
    losers = [o for o in outcomes.values() if o != "won"]
    assert len(losers) == len(KEYS) - 1
    assert all(o.taken and "already decided: approved by " + winner in o.problem for o in losers)
    assert env.kinds(record).count("approval.decided") == 1  # the losers' events rolled back
    [stored] = env.book.all(record.id)
    assert stored.approver == winner and stored.verification == "verified"
    approval = env.progress.runs.run(record.id).approval
    assert approval is not None and approval.reviewer == winner


def test_a_finished_request_refuses_a_decision_and_keeps_none(env: Env) -> None:
    record = env.request()
    env.register.close(record.id, outcome=RequestStatus.CLOSED, actor="tests")
    with pytest.raises(DecisionRefused, match="is closed; nothing left to decide") as caught:
        env.take(record, "dpo")
    assert caught.value.taken
    assert env.book.all(record.id) == [] and "approval.decided" not in env.kinds(record)


def test_the_same_plans_are_decided_once_even_after_a_withdrawal(env: Env) -> None:
    record = env.request()
    env.take(record, "dpo", scope=DIGEST)
    env.progress.runs.clear_approval(record.id)  # a plan grew: decide again, on new plans
    with pytest.raises(DecisionRefused, match="these plans were already decided"):
        env.take(record, "legal", scope=DIGEST)
    env.take(record, "legal", scope="ef" * 32)
    assert [d.approver for d in env.book.all(record.id)] == ["dpo", "legal"]


def _attempt(
    record: RequestRecord, name: str, key: Ed25519PrivateKey | None = None, **over: Any
) -> Attempt:
    fields: dict[str, Any] = {
        "request_id": record.id,
        "scope": DIGEST,
        "decision": "approved",
        "approver": name,
    } | over
    return Attempt("approved", "ui", name, sign_decision(key or KEYS[name], **fields))


@pytest.mark.parametrize(
    ("over", "problem"),
    [
        ({"key": KEYS["legal"]}, "does not verify with dpo's public key"),
        ({"request_id": "req_ffffffffffffffff"}, "signed for request req_ffffffffffffffff"),
        ({"scope": "ef" * 32}, "for other plans"),
        ({"decision": "rejected"}, "signed as rejected, not approved"),
        ({"at": datetime.now(UTC) - timedelta(days=2)}, "more than 24 hours ago"),
        ({"at": datetime.now(UTC) + timedelta(hours=1)}, "lies in the future"),
    ],
)
def test_signed_decisions_must_match_what_is_decided_now(
    sqlite_env: Env, over: dict[str, Any], problem: str
) -> None:
    record = sqlite_env.request()
    with pytest.raises(DecisionRefused, match=problem):
        check_attempt(POLICY, record, DIGEST, _attempt(record, "dpo", **over))


def test_the_requester_cannot_approve_and_typed_names_must_agree(sqlite_env: Env) -> None:
    record = sqlite_env.request(requested_by="DPO")
    with pytest.raises(DecisionRefused, match="dpo requested this request; four-eyes"):
        check_attempt(POLICY, record, DIGEST, _attempt(record, "dpo"))
    other = _attempt(record, "legal")
    mislabelled = Attempt("approved", "ui", "ciso", other.signed)
    with pytest.raises(DecisionRefused, match="signed by legal, not by the reviewer given"):
        check_attempt(POLICY, record, DIGEST, mislabelled)
    unsigned = Attempt("approved", "ui", "legal")
    with pytest.raises(DecisionRefused, match="not signed"):
        check_attempt(POLICY, record, DIGEST, unsigned)
    relaxed = POLICY.model_copy(update={"unverified_ui": True})
    assert check_attempt(relaxed, record, DIGEST, unsigned).verification == "unverified"
    cli_unsigned = Attempt("approved", "cli", "legal")
    with pytest.raises(DecisionRefused, match="not signed"):
        check_attempt(relaxed, record, DIGEST, cli_unsigned)  # unverified: the UI path only


@pytest.fixture
def sqlite_env(tmp_path: Any) -> Iterator[Env]:
    keys = keyring_from_settings()
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'audit.db'}", keys=keys, actor="tests")
    progress = RequestProgress(ledger.engine, keys)
    yield Env(RequestRegister(ledger, keys), progress, ApprovalBook(ledger, progress), ledger)
    ledger.engine.dispose()
