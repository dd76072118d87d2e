"""Key material: one master secret, one derived key per purpose (HKDF-SHA256).

Deriving every key from one secret keeps operations simple (one thing to back up and
rotate) while the purposes stay cryptographically separate: the ledger's chain key,
the pseudonym key, the identity-encryption key and the checkpoint signing key cannot be
computed from one another.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import ConfigError

MIN_SECRET_BYTES = 32


def _derive(master: bytes, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"lifecycle/{purpose}".encode()
    ).derive(master)


@dataclass(frozen=True)
class KeyRing:
    """The per-purpose keys derived from the master secret."""

    ledger_hmac: bytes = field(repr=False)
    pseudonym_hmac: bytes = field(repr=False)
    identity_aes: bytes = field(repr=False)
    export_aes: bytes = field(repr=False)
    checkpoint_seed: bytes = field(repr=False)

    @classmethod
    def from_master(cls, master: bytes) -> KeyRing:
        if len(master) < MIN_SECRET_BYTES:
            raise ConfigError(f"master key must be at least {MIN_SECRET_BYTES} bytes")
        return cls(
            ledger_hmac=_derive(master, "ledger-chain"),
            pseudonym_hmac=_derive(master, "pseudonym"),
            identity_aes=_derive(master, "identity-aes-gcm"),
            export_aes=_derive(master, "export-aes-gcm"),
            checkpoint_seed=_derive(master, "checkpoint-ed25519"),
        )

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.checkpoint_seed)

    @property
    def verify_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()


def decode_secret(text: str, where: str) -> bytes:
    """Decode a base64 master secret, naming ``where`` it came from on error."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ConfigError(f"{where}: master key is not valid base64") from e


def load_or_create_key_file(path: Path) -> bytes:
    """Read the master secret from ``path``; create it (mode 0600) when missing."""
    if path.exists():
        return decode_secret(path.read_text(), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(MIN_SECRET_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(secret).decode() + "\n")
    return secret


def keyring_from_settings() -> KeyRing:
    """The key ring for this process, from ``LIFECYCLE_MASTER_KEY`` or the key file."""
    from config.settings import get_settings

    settings = get_settings()
    if settings.master_key is not None:
        master = decode_secret(settings.master_key.get_secret_value(), "LIFECYCLE_MASTER_KEY")
    else:
        master = load_or_create_key_file(settings.resolved_key_file())
    return KeyRing.from_master(master)
