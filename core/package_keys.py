"""Recipients of encrypted access packages: passphrase or X25519 key, and key files.

The package's random content key is wrapped for one recipient: under a key derived from
a passphrase with scrypt (n=2**15, r=8, p=1), or for an X25519 public key with an
ephemeral-static exchange and HKDF-SHA256. ``core.package`` writes the wrapped key into
the package header; ``unwrap_key`` gets it back with the passphrase or private key.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from core.errors import TerminalError
from core.private_files import FILE_MODE, private_dir

_NONCE = 12
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}
_WRAP_AAD = b"lcpkg/v1/content-key"
_HKDF_INFO = b"lcpkg/v1/x25519"


class PackageError(TerminalError):
    """A package cannot be written, opened or trusted (wrong secret, altered, truncated)."""


# -- recipients ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PassphraseRecipient:
    """Wrap the content key under a key derived from a passphrase (scrypt n=2**15 r=8 p=1)."""

    passphrase: bytes = field(repr=False)


@dataclass(frozen=True)
class X25519Recipient:
    """Wrap the content key for the holder of an X25519 private key."""

    public_key: X25519PublicKey


Recipient = PassphraseRecipient | X25519Recipient
Secret = str | bytes | X25519PrivateKey
"""What opens a package: the passphrase, or the recipient's X25519 private key."""


def b64(data: bytes) -> str:
    """Base64 text of ``data`` (header fields)."""
    return base64.b64encode(data).decode()


def unb64(text: object, what: str) -> bytes:
    """Bytes of a base64 header field; PackageError naming ``what`` when malformed."""
    try:
        return base64.b64decode(str(text), validate=True)
    except ValueError as e:
        raise PackageError(f"package header: {what} is not valid base64") from e


def _scrypt(passphrase: bytes, salt: bytes, params: Mapping[str, int]) -> bytes:
    return Scrypt(salt=salt, length=32, n=params["n"], r=params["r"], p=params["p"]).derive(
        passphrase
    )


def _x25519_kek(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    # Both public keys in the salt bind the wrapping key to this exchange.
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_HKDF_INFO
    ).derive(shared)


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def wrap_key(content_key: bytes, recipient: Recipient) -> dict[str, Any]:
    """The header block holding ``content_key`` wrapped for ``recipient``."""
    nonce = os.urandom(_NONCE)
    if isinstance(recipient, PassphraseRecipient):
        if not recipient.passphrase:
            raise PackageError("the passphrase is empty")
        salt = os.urandom(16)
        kek = _scrypt(recipient.passphrase, salt, _SCRYPT)
        block: dict[str, Any] = {"type": "passphrase", "kdf": "scrypt", **_SCRYPT}
        block["salt"] = b64(salt)
    else:
        ephemeral = X25519PrivateKey.generate()
        ephemeral_raw = _raw_public(ephemeral.public_key())
        recipient_raw = _raw_public(recipient.public_key)
        kek = _x25519_kek(ephemeral.exchange(recipient.public_key), ephemeral_raw, recipient_raw)
        block = {
            "type": "x25519",
            "ephemeral_public": b64(ephemeral_raw),
            "recipient_public": b64(recipient_raw),
        }
    block["nonce"] = b64(nonce)
    block["wrapped_key"] = b64(AESGCM(kek).encrypt(nonce, content_key, _WRAP_AAD))
    return block


def unwrap_key(block: Mapping[str, Any], secret: Secret) -> bytes:
    """The content key from a header block; PackageError when ``secret`` does not open it."""
    kind = block.get("type")
    if kind == "passphrase":
        if isinstance(secret, X25519PrivateKey):
            raise PackageError("this package opens with a passphrase, not a private key")
        passphrase = secret.encode() if isinstance(secret, str) else secret
        params = {k: int(block[k]) for k in ("n", "r", "p")}
        if params["n"] > 2**20 or params["r"] > 16 or params["p"] > 4:
            raise PackageError("package header: scrypt parameters out of range")
        kek = _scrypt(passphrase, unb64(block["salt"], "salt"), params)
    elif kind == "x25519":
        if not isinstance(secret, X25519PrivateKey):
            raise PackageError("this package opens with an X25519 private key, not a passphrase")
        ephemeral_raw = unb64(block["ephemeral_public"], "ephemeral key")
        recipient_raw = _raw_public(secret.public_key())
        try:
            shared = secret.exchange(X25519PublicKey.from_public_bytes(ephemeral_raw))
        except ValueError as e:
            raise PackageError("package header: invalid ephemeral key") from e
        kek = _x25519_kek(shared, ephemeral_raw, recipient_raw)
    else:
        raise PackageError("package header: unknown recipient type")
    try:
        return AESGCM(kek).decrypt(
            unb64(block["nonce"], "nonce"), unb64(block["wrapped_key"], "key"), _WRAP_AAD
        )
    except InvalidTag as e:
        raise PackageError("the secret does not open this package") from e


# -- key files ----------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError as e:
        raise PackageError(f"{path} already exists; not overwriting a key") from e
    os.fchmod(fd, FILE_MODE)  # whatever the umask
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def generate_keypair(out: Path) -> tuple[Path, str]:
    """Write a new X25519 private key to ``out`` (PEM, mode 0600) and its public key beside it.

    Returns the public key file (``out`` + ``.pub``, base64 of the raw 32 bytes) and the
    public key text. Existing files are never overwritten.
    """
    private = X25519PrivateKey.generate()
    public_text = b64(_raw_public(private.public_key()))
    public_path = out.with_name(out.name + ".pub")
    if public_path.exists():
        raise PackageError(f"{public_path} already exists; not overwriting a key")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(out, pem)
    public_path.write_text(public_text + "\n")
    return public_path, public_text


def parse_public_key(text: str) -> X25519PublicKey:
    """An X25519 public key from base64 of its 32 raw bytes, or from PEM."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, X25519PublicKey):
                raise PackageError("the public key is not an X25519 key")
            return key
        return X25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except ValueError as e:
        raise PackageError("not an X25519 public key (base64 of 32 bytes, or PEM)") from e


def load_public_key(path: Path) -> X25519PublicKey:
    """The X25519 public key in ``path`` (as written by ``generate_keypair``)."""
    try:
        return parse_public_key(path.read_text())
    except OSError as e:
        raise PackageError(f"cannot read public key {path} ({e.strerror})") from e


def load_private_key(path: Path) -> X25519PrivateKey:
    """The X25519 private key in the PEM file ``path``."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise PackageError(f"cannot read private key {path} ({e.strerror})") from e
    except ValueError as e:
        raise PackageError(f"{path} is not a PEM private key") from e
    if not isinstance(key, X25519PrivateKey):
        raise PackageError(f"{path} is not an X25519 private key")
    return key
