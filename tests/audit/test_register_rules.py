"""Pure rules of the request register: sealing, transitions, deadlines (no database)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import IntegrityError, NotFoundError, TerminalError
from core.keys import KeyRing
from core.pseudonym import Pseudonymizer
from state.identity_box import IdentityBox, Sealed
from state.register_model import (
    TERMINAL,
    TRANSITIONS,
    DeadlinePolicy,
    HistoryEntry,
    RequestKind,
    RequestRecord,
    RequestStatus,
    check_request_id,
    check_transition,
    new_request_id,
    text_fingerprint,
)

KEYS = KeyRing.from_master(b"r" * 32)
IDENTITY = {"email": "Jo.Tester@Example.com", "name": "Jo Tester"}
T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
S = RequestStatus


def _record(**overrides: object) -> RequestRecord:
    fields: dict[str, object] = {
        "id": "req_0123456789abcdef",
        "kind": RequestKind.ERASURE,
        "subject": Pseudonymizer(KEYS.pseudonym_hmac).of_identity(IDENTITY),
        "status": S.RECEIVED,
        "received_at": T0,
        "due_at": T0 + timedelta(days=30),
        "extended": False,
        "extension_reason": None,
        "closed_at": None,
        "requested_by": "operator",
        "identity_destroyed": False,
    }
    fields.update(overrides)
    return RequestRecord(**fields)  # type: ignore[arg-type]


# -- identity box ------------------------------------------------------------------------


def test_sealed_identity_round_trips_with_changes() -> None:
    box = IdentityBox(KEYS.identity_aes)
    sealed = box.seal("req_0123456789abcdef", "rectification", IDENTITY, {"name": "Jo T."})
    opened = box.open("req_0123456789abcdef", "rectification", sealed)
    assert dict(opened.identity) == IDENTITY
    assert dict(opened.changes) == {"name": "Jo T."}
    assert b"Tester" not in sealed.ciphertext
    assert len(sealed.nonce) == 12


def test_same_identity_seals_to_unrelated_ciphertexts() -> None:
    box = IdentityBox(KEYS.identity_aes)
    a = box.seal("req_0123456789abcdef", "erasure", IDENTITY)
    b = box.seal("req_0123456789abcdef", "erasure", IDENTITY)
    assert a.nonce != b.nonce
    assert a.ciphertext != b.ciphertext


@pytest.mark.parametrize(
    ("request_id", "kind"),
    [("req_fedcba9876543210", "erasure"), ("req_0123456789abcdef", "access")],
)
def test_sealed_identity_is_bound_to_request_id_and_kind(request_id: str, kind: str) -> None:
    box = IdentityBox(KEYS.identity_aes)
    sealed = box.seal("req_0123456789abcdef", "erasure", IDENTITY)
    with pytest.raises(IntegrityError, match="does not open") as info:
        box.open(request_id, kind, sealed)
    assert "Tester" not in str(info.value)


def test_altered_ciphertext_or_other_key_does_not_open() -> None:
    box = IdentityBox(KEYS.identity_aes)
    sealed = box.seal("req_0123456789abcdef", "erasure", IDENTITY)
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(IntegrityError):
        box.open("req_0123456789abcdef", "erasure", Sealed(sealed.nonce, flipped))
    other = IdentityBox(KeyRing.from_master(b"x" * 32).identity_aes)
    with pytest.raises(IntegrityError):
        other.open("req_0123456789abcdef", "erasure", sealed)


def test_box_repr_and_sealed_repr_hide_secrets() -> None:
    box = IdentityBox(KEYS.identity_aes)
    sealed = box.seal("req_0123456789abcdef", "erasure", IDENTITY)
    assert repr(box) == "IdentityBox(<key>)"
    assert sealed.ciphertext.hex() not in repr(sealed)


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        ({}, "non-empty mapping"),
        ({"email": ""}, "identity key 'email': value must be a non-empty string"),
        ({"email": "   "}, "identity key 'email': value must be a non-empty string"),
        ({"Email": "jo@example.com"}, "identity key 'Email' is not a lowercase identifier"),
        ({"jo@example.com": "x"}, "identity key #1 is not a lowercase identifier"),
        ({"email": "jo@example.com", "+1 555 0100": "x"}, "identity key #2 is not"),
        ({"email": 5}, "identity key 'email': value must be a string"),
        ({"email": "j" * 2000}, "longer than 1024"),
    ],
)
def test_invalid_identity_names_the_key_never_the_value(
    identity: dict[str, object], message: str
) -> None:
    box = IdentityBox(KEYS.identity_aes)
    with pytest.raises(TerminalError, match="identity") as info:
        box.seal("req_0123456789abcdef", "erasure", identity)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert "@example.com" not in str(info.value)
    assert "555" not in str(info.value)
    assert "jjjj" not in str(info.value)


def test_changes_may_clear_a_field_but_identity_may_not() -> None:
    box = IdentityBox(KEYS.identity_aes)
    sealed = box.seal("req_0123456789abcdef", "rectification", IDENTITY, {"middle_name": ""})
    assert box.open("req_0123456789abcdef", "rectification", sealed).changes == {"middle_name": ""}


# -- ids and transitions -----------------------------------------------------------------


def test_request_ids_are_short_unguessable_and_checked_without_echo() -> None:
    ids = {new_request_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(check_request_id(i) == i for i in ids)
    with pytest.raises(NotFoundError) as info:
        check_request_id("jo@example.com")
    assert "example" not in str(info.value)


def test_the_whole_happy_path_is_allowed() -> None:
    path = [S.RECEIVED, S.PLANNED, S.AWAITING_APPROVAL, S.APPROVED, S.EXECUTING]
    path += [S.VERIFYING, S.COMPLETED]
    for current, nxt in itertools.pairwise(path):
        check_transition("req_0123456789abcdef", current, nxt)


def test_failed_resumes_to_executing() -> None:
    check_transition("req_0123456789abcdef", S.EXECUTING, S.FAILED)
    check_transition("req_0123456789abcdef", S.FAILED, S.EXECUTING)


def test_every_open_or_failed_request_can_be_cancelled() -> None:
    for status in set(RequestStatus) - TERMINAL:
        check_transition("req_0123456789abcdef", status, S.CANCELLED)


def test_a_grown_plan_goes_back_to_approval() -> None:
    check_transition("req_0123456789abcdef", S.EXECUTING, S.AWAITING_APPROVAL)


def test_terminal_statuses_have_no_way_out_and_every_status_has_a_rule() -> None:
    assert set(TRANSITIONS) == set(RequestStatus)
    assert {S.COMPLETED, S.REJECTED, S.CLOSED, S.CANCELLED} == TERMINAL
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()
        assert status.terminal
    for status in set(RequestStatus) - TERMINAL:
        assert TRANSITIONS[status], f"{status} is a dead end"


@pytest.mark.parametrize(
    ("current", "to"),
    [
        (S.RECEIVED, S.EXECUTING),
        (S.AWAITING_APPROVAL, S.EXECUTING),
        (S.EXECUTING, S.COMPLETED),
        (S.COMPLETED, S.EXECUTING),
        (S.CLOSED, S.RECEIVED),
        (S.PLANNED, S.PLANNED),
    ],
)
def test_invalid_transition_names_both_statuses(current: S, to: S) -> None:
    with pytest.raises(TerminalError) as info:
        check_transition("req_0123456789abcdef", current, to)
    assert f"'{current}'" in str(info.value)
    assert f"'{to}'" in str(info.value)


# -- deadlines ---------------------------------------------------------------------------


def test_default_deadline_is_30_days_after_receipt() -> None:
    assert DeadlinePolicy().due(T0) == T0 + timedelta(days=30)


def test_deadline_policy_must_be_consistent() -> None:
    with pytest.raises(TerminalError):
        DeadlinePolicy(0, 90)
    with pytest.raises(TerminalError):
        DeadlinePolicy(100, 90)


def test_one_extension_up_to_90_days_in_total() -> None:
    policy = DeadlinePolicy()
    assert policy.extended_due(_record(), 60) == T0 + timedelta(days=90)
    with pytest.raises(TerminalError, match="at most 60 days"):
        policy.extended_due(_record(), 61)
    with pytest.raises(TerminalError, match="already extended"):
        policy.extended_due(_record(extended=True), 1)
    with pytest.raises(TerminalError, match="positive"):
        policy.extended_due(_record(), 0)
    with pytest.raises(TerminalError, match="cannot be extended"):
        policy.extended_due(_record(status=S.COMPLETED, closed_at=T0), 1)


def test_days_left_floors_and_goes_negative_when_overdue() -> None:
    record = _record()
    assert record.days_left(T0) == 30
    assert record.days_left(T0 + timedelta(days=29, hours=12)) == 0
    assert not record.overdue(T0 + timedelta(days=30))
    assert record.overdue(T0 + timedelta(days=30, seconds=1))
    assert record.days_left(T0 + timedelta(days=30, seconds=1)) == -1
    assert record.days_left(T0 + timedelta(days=33)) == -3


def test_closed_request_is_never_overdue_and_its_clock_stopped() -> None:
    record = _record(status=S.COMPLETED, closed_at=T0 + timedelta(days=32))
    assert not record.overdue(T0 + timedelta(days=100))
    assert record.days_left(T0 + timedelta(days=100)) == -2


def test_naive_now_is_refused() -> None:
    with pytest.raises(TerminalError, match="timezone-aware"):
        _record().days_left(datetime(2025, 3, 2))  # naive on purpose


def test_free_text_is_hidden_from_reprs_and_fingerprinted() -> None:
    record = _record(extended=True, extension_reason="Jo Tester asked by phone")
    entry = HistoryEntry("req_0123456789abcdef", T0, "extended", S.RECEIVED, S.RECEIVED, "op", "Jo")
    assert "Jo Tester" not in repr(record)
    assert "'Jo'" not in repr(entry)
    fp = text_fingerprint("Jo Tester asked by phone")
    assert fp["chars"] == 24
    assert len(str(fp["sha256"])) == 64
