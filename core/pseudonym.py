"""Keyed pseudonyms: the only way a data subject may appear outside its own stores.

A pseudonym is HMAC-SHA256 over a normalized identity value under the pseudonym key.
It is stable (the same person gets the same pseudonym in every request and sweep) and
useless without the key. ``Pseudonym`` instances can only be made here, so APIs that
accept one (the audit ledger) cannot be handed a raw identity by mistake.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

PREFIX = "psn_"
_PATTERN = re.compile(r"^psn_[0-9a-f]{32}$")


class Pseudonym(str):
    """A keyed pseudonym string (``psn_`` + 32 hex digits)."""

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> Pseudonym:
        """Accept a stored pseudonym back (for example read from the ledger)."""
        if not _PATTERN.match(text):
            raise ValueError("not a pseudonym")
        return cls(text)


def normalize(kind: str, value: str) -> str:
    """Normalize an identity value so trivially different spellings pseudonymize alike."""
    value = value.strip()
    if kind == "email":
        return value.lower()
    if kind == "phone":
        return re.sub(r"[^0-9+]", "", value)
    return value


class Pseudonymizer:
    """Makes pseudonyms under one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "Pseudonymizer(<key>)"

    def of_value(self, kind: str, value: str) -> Pseudonym:
        """Pseudonym of one identity value, e.g. ``("email", "a@example.com")``."""
        message = f"{kind}\x1f{normalize(kind, value)}".encode()
        return Pseudonym(PREFIX + hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32])

    def of_identity(self, identity: Mapping[str, str]) -> Pseudonym:
        """Pseudonym of a subject identified by several values (order-independent)."""
        parts = sorted(f"{k}\x1f{normalize(k, v)}" for k, v in identity.items())
        message = "\x1e".join(parts).encode()
        return Pseudonym(PREFIX + hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32])
