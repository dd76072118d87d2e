"""Approver keys and signed decisions: what a signature covers, tokens, key files."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.approver_keys import (
    PRE_APPROVAL,
    SigningKeyError,
    fingerprint,
    generate_signing_key,
    load_signing_key,
    parse_public_key,
    parse_token,
    public_key_text,
    sign_decision,
)

KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
OTHER = Ed25519PrivateKey.from_private_bytes(b"\x08" * 32)
RID = "req_0123456789abcdef"
DIGEST = "ab" * 32


def test_a_signature_covers_request_plans_decision_approver_and_time() -> None:
    signed = sign_decision(KEY, request_id=RID, scope=DIGEST, decision="approved", approver="dpo")
    assert signed.valid_for(KEY.public_key())
    assert not signed.valid_for(OTHER.public_key())
    altered = [
        replace(signed, request_id="req_fedcba9876543210"),
        replace(signed, scope=PRE_APPROVAL),
        replace(signed, decision="rejected"),
        replace(signed, approver="privacy-officer"),
        replace(signed, signed_at="2030-01-01T00:00:00Z"),
    ]
    assert not any(a.valid_for(KEY.public_key()) for a in altered)


def test_the_token_round_trips_and_holds_no_key_material() -> None:
    signed = sign_decision(KEY, request_id=RID, scope=DIGEST, decision="rejected", approver="dpo")
    token = signed.token()
    assert token.startswith("lcap1.") and "\n" not in token
    assert parse_token(f"  {token}\n") == signed
    assert public_key_text(KEY.public_key()) not in token


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("abc", "not a signed decision"),
        ("lcap1.!!!", "damaged"),
        ("lcap1.eyJ4IjoxfQ", "damaged"),
    ],
)
def test_unreadable_tokens_are_refused_clearly(token: str, problem: str) -> None:
    with pytest.raises(SigningKeyError, match=problem):
        parse_token(token)


def test_token_fields_are_checked_before_anything_quotes_them() -> None:
    signed = sign_decision(KEY, request_id=RID, scope=DIGEST, decision="approved", approver="dpo")
    bad = replace(signed, approver="robin.quill@example.com").token()
    with pytest.raises(SigningKeyError, match="approver is malformed") as caught:
        parse_token(bad)
    assert "robin" not in str(caught.value)


def test_keygen_writes_a_private_file_once(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "dpo.key"
    public = generate_signing_key(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    loaded = load_signing_key(out)
    assert public_key_text(loaded.public_key()) == public_key_text(public)
    assert fingerprint(public).startswith("ed25519:") and len(fingerprint(public)) == 40
    assert parse_public_key(public_key_text(public)) == public
    with pytest.raises(SigningKeyError, match="already exists"):
        generate_signing_key(out)


def test_unusable_key_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="cannot read"):
        load_signing_key(tmp_path / "missing.key")
    junk = tmp_path / "junk.key"
    junk.write_text("not a key")
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM"):
        load_signing_key(junk)


def test_public_keys_must_be_32_bytes_of_base64() -> None:
    with pytest.raises(ValueError, match="base64"):
        parse_public_key("not base64!")
    with pytest.raises(ValueError, match="32 bytes"):
        parse_public_key("AAAA")
