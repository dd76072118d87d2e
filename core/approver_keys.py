"""Approver signing keys (Ed25519) and signed approval decisions.

An approver holds a private key (PEM, mode 0600, made by ``lifecycle approver keygen``);
the policy lists their public key (base64 of the 32 raw bytes). A decision is signed
over the request id, the scope (the digest of the plans decided on, or ``PRE_APPROVAL``
for a request whose plans do not exist yet), the decision, the approver's name and the
signing time. ``SignedDecision.token()`` is the one-line form the Prefect UI's form
takes (printed by ``lifecycle approver sign``); it holds no personal data.

Nothing here knows the policy or the register: checking a signature against the
policy's approvers, four-eyes and the current plans is ``state.approvals``' job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from core.errors import TerminalError
from core.private_files import FILE_MODE, private_dir

Decision = Literal["approved", "rejected"]
DECISIONS: tuple[Decision, ...] = ("approved", "rejected")
PRE_APPROVAL = "pre-approval"
"""The scope of a decision signed before the request's plans exist (at submission)."""

TOKEN_PREFIX = "lcap1."
_DOMAIN = b"lifecycle/approval-decision/v1"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class SigningKeyError(TerminalError):
    """A signing key or signed decision that cannot be used (unreadable, malformed)."""


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_text(key: Ed25519PublicKey) -> str:
    """The policy's form of a public key: base64 of its 32 raw bytes."""
    return base64.b64encode(raw_public(key)).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 of its 32 raw bytes; ValueError if it is not one."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("must be base64 (an Ed25519 public key: lifecycle approver keygen)") from e
    if len(raw) != 32:
        raise ValueError("must be base64 of 32 bytes (an Ed25519 public key)")
    return Ed25519PublicKey.from_public_bytes(raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: ``ed25519:`` and 32 hex digits of its SHA-256."""
    return "ed25519:" + hashlib.sha256(raw_public(key)).hexdigest()[:32]


def generate_signing_key(out: Path) -> Ed25519PublicKey:
    """Write a new Ed25519 private key to ``out`` (PEM, mode 0600; never overwrites)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_dir(out.parent)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        raise SigningKeyError(f"{out} already exists; not overwriting a key") from None
    except OSError as e:
        raise SigningKeyError(f"cannot create {out} ({e.strerror})") from None
    os.fchmod(fd, FILE_MODE)  # whatever the umask
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return private.public_key()


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path`` (PEM, as ``generate_signing_key`` writes it)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SigningKeyError(f"cannot read signing key {path} ({e.strerror})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(
            f"{path} is not an unencrypted PEM private key (lifecycle approver keygen)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 key (lifecycle approver keygen)")
    return key


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class SignedDecision:
    """A decision as signed: what, on which request and plans, by whom, when, and the
    signature (base64) over all of it."""

    request_id: str
    scope: str  # the plans' digest, or PRE_APPROVAL
    decision: Decision
    approver: str
    signed_at: str  # UTC, second precision (format_time)
    signature: str

    def message(self) -> bytes:
        """The signed bytes: a domain tag, then each field on its own line."""
        fields = (self.request_id, self.scope, self.decision, self.approver, self.signed_at)
        return b"\n".join([_DOMAIN, *(f.encode() for f in fields)])

    def token(self) -> str:
        """The one-line form to paste into the approval form (no personal data)."""
        body = {
            "r": self.request_id,
            "p": self.scope,
            "d": self.decision,
            "a": self.approver,
            "t": self.signed_at,
            "s": self.signature,
        }
        packed = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        return TOKEN_PREFIX + base64.urlsafe_b64encode(packed).decode().rstrip("=")

    def signature_sha256(self) -> str:
        """The SHA-256 of the signature: what the ledger records (hex, like every digest)."""
        return hashlib.sha256(self.signature.encode()).hexdigest()

    def valid_for(self, key: Ed25519PublicKey) -> bool:
        """Whether ``key`` made the signature over exactly these fields."""
        try:
            key.verify(base64.b64decode(self.signature, validate=True), self.message())
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True


def sign_decision(
    key: Ed25519PrivateKey,
    *,
    request_id: str,
    scope: str,
    decision: Decision,
    approver: str,
    at: datetime | None = None,
) -> SignedDecision:
    """Sign a decision with the approver's private key."""
    unsigned = SignedDecision(
        request_id=request_id,
        scope=scope,
        decision=decision,
        approver=approver,
        signed_at=format_time(at or datetime.now(UTC)),
        signature="",
    )
    signature = base64.b64encode(key.sign(unsigned.message())).decode()
    return replace(unsigned, signature=signature)


def parse_token(text: str) -> SignedDecision:
    """A signed decision back from its token; SigningKeyError naming what is wrong."""
    text = text.strip()
    if not text.startswith(TOKEN_PREFIX):
        raise SigningKeyError(
            f"the signature is not a signed decision (it starts with '{TOKEN_PREFIX}'; "
            "lifecycle approver sign prints one)"
        )
    packed = text[len(TOKEN_PREFIX) :]
    try:
        body = json.loads(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)))
        fields = {name: body[key] for key, name in _TOKEN_FIELDS.items()}
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise SigningKeyError("the signed decision is damaged (copy the whole line)") from None
    if not all(isinstance(v, str) for v in fields.values()):
        raise SigningKeyError("the signed decision is damaged (copy the whole line)")
    if fields["decision"] not in DECISIONS:
        raise SigningKeyError("the signed decision is neither approved nor rejected")
    for name, pattern in _TOKEN_SHAPES.items():
        if not pattern.match(fields[name]):
            raise SigningKeyError(f"the signed decision's {name.replace('_', ' ')} is malformed")
    try:
        parse_time(fields["signed_at"])
    except ValueError:
        raise SigningKeyError("the signed decision's time is malformed") from None
    return SignedDecision(**fields)


_TOKEN_SHAPES = {
    "request_id": re.compile(r"^req_[0-9a-f]{16}$"),
    "scope": re.compile(rf"^(?:[0-9a-f]{{64}}|{PRE_APPROVAL})$"),
    "approver": re.compile(r"^[A-Za-z][A-Za-z0-9._-]*(?: [A-Za-z0-9._-]+)*$"),
}
# Checked before anything quotes them: a token is typed or pasted by a person.

_TOKEN_FIELDS = {
    "r": "request_id",
    "p": "scope",
    "d": "decision",
    "a": "approver",
    "t": "signed_at",
    "s": "signature",
}
