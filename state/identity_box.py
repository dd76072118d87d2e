"""AES-GCM sealing of a data subject's identity (and, for rectification, the new values).

The register needs the raw identity while a request is open (to search the stores) and
must not be able to recover it afterwards. Sealing it under the key ring's identity key
means a database dump alone reveals nothing, and destroying the ciphertext when the
request closes leaves only the keyed pseudonym. The associated data binds a ciphertext
to its request id and kind, so a ciphertext copied onto another row does not open there.

Validation errors name the offending key, never a value: values are personal data.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import IntegrityError, TerminalError

NONCE_BYTES = 12  # 96 bits, the size GCM is specified for
MAX_FIELDS = 32
MAX_VALUE_CHARS = 1024
MAX_SEALED_BYTES = 16 * 1024  # keeps the ciphertext well inside a MariaDB BLOB (64 KiB)
_AAD_CONTEXT = "lifecycle/request-identity/v1"
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# A key shaped like an identifier cannot be an e-mail address or phone number, so it is
# safe to echo in an error; anything else is described by its position only.
_ECHOABLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Sealed:
    """A sealed payload as stored in the register: nonce and ciphertext (with GCM tag)."""

    nonce: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)


@dataclass(frozen=True)
class Opened:
    """What a sealed payload holds: the identity and, for rectification, the new values."""

    identity: Mapping[str, str] = field(repr=False)
    changes: Mapping[str, str] = field(repr=False)


def _describe_key(what: str, key: object, position: int) -> str:
    if isinstance(key, str) and _ECHOABLE_KEY.match(key):
        return f"{what} key '{key}'"
    return f"{what} key #{position}"


def validate_fields(what: str, values: Mapping[str, str], *, allow_empty: bool) -> dict[str, str]:
    """Check ``values`` (keys lowercase identifiers, values strings) and return a plain copy.

    ``what`` names the mapping in messages ("identity", "changes"). Empty values are
    refused unless ``allow_empty`` (a rectification may clear a field).
    """
    if not isinstance(values, Mapping) or not values:
        raise TerminalError(f"{what} must be a non-empty mapping of field name to value")
    if len(values) > MAX_FIELDS:
        raise TerminalError(f"{what} has {len(values)} fields; at most {MAX_FIELDS} are allowed")
    clean: dict[str, str] = {}
    for position, (key, value) in enumerate(values.items(), start=1):
        label = _describe_key(what, key, position)
        if not isinstance(key, str) or not _KEY.match(key):
            raise TerminalError(
                f"{label} is not a lowercase identifier (a-z, 0-9, '_', starting with a letter)"
            )
        if not isinstance(value, str):
            raise TerminalError(f"{label}: value must be a string")
        if not allow_empty and not value.strip():
            raise TerminalError(f"{label}: value must be a non-empty string")
        if len(value) > MAX_VALUE_CHARS:
            raise TerminalError(f"{label}: value is longer than {MAX_VALUE_CHARS} characters")
        clean[key] = value
    return clean


def _aad(request_id: str, kind: str) -> bytes:
    return "\x1f".join((_AAD_CONTEXT, request_id, kind)).encode()


class IdentityBox:
    """Seals and opens identities under one AES-256-GCM key (``KeyRing.identity_aes``)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "IdentityBox(<key>)"

    def seal(
        self,
        request_id: str,
        kind: str,
        identity: Mapping[str, str],
        changes: Mapping[str, str] | None = None,
    ) -> Sealed:
        """Encrypt ``identity`` (and ``changes``) for request ``request_id`` of ``kind``.

        A fresh random nonce per call: the same identity sealed twice gives unrelated
        ciphertexts, so equal identities cannot be spotted across rows.
        """
        payload = {
            "identity": validate_fields("identity", identity, allow_empty=False),
            "changes": {}
            if changes is None
            else validate_fields("changes", changes, allow_empty=True),
        }
        plaintext = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        if len(plaintext) > MAX_SEALED_BYTES:
            raise TerminalError(
                f"identity and changes together exceed {MAX_SEALED_BYTES} bytes once encoded"
            )
        nonce = os.urandom(NONCE_BYTES)
        return Sealed(nonce, self._aead.encrypt(nonce, plaintext, _aad(request_id, kind)))

    def reseal(self, request_id: str, kind: str, sealed: Sealed, into: IdentityBox) -> Sealed:
        """What ``sealed`` holds, sealed again under ``into``'s key (a key rotation).

        The plaintext never leaves this method; IntegrityError as ``open`` when it does
        not open under this box's key.
        """
        aad = _aad(request_id, kind)
        try:
            plaintext = self._aead.decrypt(sealed.nonce, sealed.ciphertext, aad)
        except (InvalidTag, ValueError) as e:
            raise IntegrityError(
                f"sealed identity of request {request_id} does not open under the current "
                "key: it was altered or sealed for another request",
                request_id=request_id,
            ) from e
        nonce = os.urandom(NONCE_BYTES)
        return Sealed(nonce, into._aead.encrypt(nonce, plaintext, aad))

    def open(self, request_id: str, kind: str, sealed: Sealed) -> Opened:
        """Decrypt what was sealed for ``request_id`` and ``kind``.

        Raises IntegrityError when the ciphertext was altered or sealed for another
        request (the associated data does not match).
        """
        try:
            plaintext = self._aead.decrypt(sealed.nonce, sealed.ciphertext, _aad(request_id, kind))
        except (InvalidTag, ValueError) as e:  # ValueError: a nonce of the wrong size
            raise IntegrityError(
                f"sealed identity of request {request_id} does not open: it was altered "
                "or sealed for another request",
                request_id=request_id,
            ) from e
        payload = json.loads(plaintext)
        return Opened(identity=dict(payload["identity"]), changes=dict(payload["changes"]))
