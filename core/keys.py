"""Key material: one master secret, one derived key per purpose (HKDF-SHA256).

Deriving every key from one secret keeps operations simple (one thing to back up and
rotate) while the purposes stay cryptographically separate: the ledger's chain key,
the pseudonym key, the identity-encryption key and the checkpoint signing key cannot be
computed from one another.

A key is identified by its *fingerprint*: SHA-256 over a non-secret "key-id" derivation,
cut to 16 hex digits. The audit database records the fingerprint of the key it was
created with (and of each key it was rotated to), so a missing or different key is
named as such instead of surfacing later as a "broken" ledger. After a rotation
(``audit.rotation``) a key ring also carries what earlier key epochs left behind: their
chain keys and checkpoint public keys (to verify the older part of the ledger) and the
first epoch's pseudonym key (pseudonyms stay stable). Those are sealed in the audit
database under the current key's wrapping key (``seal_carried``/``open_carried``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core.errors import ConfigError, IntegrityError
from core.private_files import private_dir

if TYPE_CHECKING:
    from config.settings import Settings

MIN_SECRET_BYTES = 32
FINGERPRINT_HEX = 16
_CARRIED_FORMAT = "lifecycle/key-epoch/v1"
_NONCE_BYTES = 12


class MasterKeyError(ConfigError):
    """The master key is missing or is not the key the audit database was keyed with.

    A configuration problem (exit 2): nothing was changed, and the message names the
    expected fingerprint and what to restore.
    """


def _derive(master: bytes, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"lifecycle/{purpose}".encode()
    ).derive(master)


def fingerprint_of(key_id: bytes) -> str:
    """The printable fingerprint of a key from its derived key id (nothing secret)."""
    return hashlib.sha256(key_id).hexdigest()[:FINGERPRINT_HEX]


@dataclass(frozen=True)
class EpochKey:
    """An earlier key epoch as later ones carry it: enough to verify, nothing to unseal."""

    epoch: int
    fingerprint: str
    since_seq: int  # first ledger event chained under this epoch's key
    chain_key: bytes = field(repr=False)
    checkpoint_public: bytes  # raw Ed25519 public key (not secret)


@dataclass(frozen=True)
class KeyRing:
    """The per-purpose keys derived from the master secret (and, after a rotation, carried)."""

    ledger_hmac: bytes = field(repr=False)
    pseudonym_hmac: bytes = field(repr=False)
    identity_aes: bytes = field(repr=False)
    export_aes: bytes = field(repr=False)
    checkpoint_seed: bytes = field(repr=False)
    key_id: bytes = field(repr=False)
    wrap_aes: bytes = field(repr=False)  # seals what earlier epochs carry forward
    epoch: int = 1
    since_seq: int = 1
    earlier: tuple[EpochKey, ...] = ()

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
            key_id=_derive(master, "key-id"),
            wrap_aes=_derive(master, "key-epoch-wrap"),
        )

    @property
    def fingerprint(self) -> str:
        """16 hex digits naming this master key (recorded in the audit database)."""
        return fingerprint_of(self.key_id)

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.checkpoint_seed)

    @property
    def verify_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    def as_epoch(self) -> EpochKey:
        """This ring's current key as a later epoch will carry it."""
        public = self.verify_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return EpochKey(self.epoch, self.fingerprint, self.since_seq, self.ledger_hmac, public)

    def in_epoch(
        self, epoch: int, since_seq: int, pseudonym_hmac: bytes, earlier: tuple[EpochKey, ...]
    ) -> KeyRing:
        """This key as epoch ``epoch``, with the pseudonym key and epochs it carries."""
        return replace(
            self, epoch=epoch, since_seq=since_seq, pseudonym_hmac=pseudonym_hmac, earlier=earlier
        )

    def _epoch_at(self, seq: int) -> EpochKey | None:
        """The earlier epoch in force at event ``seq``, or None for the current one."""
        if seq >= self.since_seq or not self.earlier:
            return None
        found = self.earlier[0]
        for epoch in self.earlier:
            if epoch.since_seq <= seq:
                found = epoch
        return found

    def chain_key_at(self, seq: int) -> bytes:
        """The chain key event ``seq`` was linked under (0: the first epoch's)."""
        epoch = self._epoch_at(seq)
        return self.ledger_hmac if epoch is None else epoch.chain_key

    def verify_key_at(self, seq: int) -> Ed25519PublicKey:
        """The public key a checkpoint of event ``seq`` was signed with."""
        epoch = self._epoch_at(seq)
        if epoch is None:
            return self.verify_key
        return Ed25519PublicKey.from_public_bytes(epoch.checkpoint_public)

    def rotation_keys(self) -> dict[int, bytes]:
        """Chain keys by epoch, for the ``keys.rotated`` events that switch to them."""
        keys = {e.epoch: e.chain_key for e in self.earlier}
        keys[self.epoch] = self.ledger_hmac
        return keys


def _carried_aad(epoch: int, fingerprint: str, since_seq: int) -> bytes:
    return "\x1f".join((_CARRIED_FORMAT, str(epoch), fingerprint, str(since_seq))).encode()


def seal_carried(ring: KeyRing) -> tuple[bytes, bytes]:
    """``(nonce, ciphertext)``: what ``ring`` carries from earlier epochs, under its own key."""
    payload = {
        "pseudonym": base64.b64encode(ring.pseudonym_hmac).decode(),
        "earlier": [
            {
                "epoch": e.epoch,
                "fingerprint": e.fingerprint,
                "since_seq": e.since_seq,
                "chain": base64.b64encode(e.chain_key).decode(),
                "checkpoint_public": e.checkpoint_public.hex(),
            }
            for e in ring.earlier
        ],
    }
    nonce = os.urandom(_NONCE_BYTES)
    aad = _carried_aad(ring.epoch, ring.fingerprint, ring.since_seq)
    return nonce, AESGCM(ring.wrap_aes).encrypt(nonce, json.dumps(payload).encode(), aad)


def open_carried(
    ring: KeyRing, epoch: int, since_seq: int, nonce: bytes, ciphertext: bytes
) -> KeyRing:
    """``ring`` as epoch ``epoch``, with what its sealed record carries from earlier epochs."""
    aad = _carried_aad(epoch, ring.fingerprint, since_seq)
    try:
        payload: dict[str, Any] = json.loads(
            AESGCM(ring.wrap_aes).decrypt(bytes(nonce), bytes(ciphertext), aad)
        )
        earlier = tuple(
            EpochKey(
                epoch=int(e["epoch"]),
                fingerprint=str(e["fingerprint"]),
                since_seq=int(e["since_seq"]),
                chain_key=base64.b64decode(e["chain"]),
                checkpoint_public=bytes.fromhex(e["checkpoint_public"]),
            )
            for e in payload["earlier"]
        )
        pseudonym = base64.b64decode(payload["pseudonym"])
    except (InvalidTag, ValueError, KeyError, TypeError) as e:
        raise IntegrityError(
            f"the audit database's record of key epoch {epoch} does not open under its key "
            "(the record was altered)"
        ) from e
    return ring.in_epoch(epoch, since_seq, pseudonym, earlier)


def decode_secret(text: str, where: str) -> bytes:
    """Decode a base64 master secret, naming ``where`` it came from on error."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ConfigError(f"{where}: master key is not valid base64") from e


def read_key_file(path: Path) -> bytes | None:
    """The master secret in ``path``, or None when there is no such file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the master key file ({e.strerror})") from e
    return decode_secret(text, str(path))


def write_key_file(path: Path, secret: bytes, *, exclusive: bool = False) -> None:
    """Write ``secret`` (base64, mode 0600) to ``path`` atomically and durably.

    With ``exclusive`` an existing file is never replaced (FileExistsError instead).
    """
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(secret).decode() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            os.link(tmp, path)  # fails if the file exists: never overwrite a key
            Path(tmp).unlink()
        else:
            os.replace(tmp, path)
        sync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sync_dir(folder: Path) -> None:
    """fsync a folder so a rename or new file in it survives a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_secret() -> bytes:
    """A fresh random master secret."""
    return secrets.token_bytes(MIN_SECRET_BYTES)


@dataclass(frozen=True)
class KeySource:
    """Where this process gets its master key: ``LIFECYCLE_MASTER_KEY`` or the key file."""

    path: Path
    env_secret: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeySource:
        env = settings.master_key
        secret = None
        if env is not None:
            secret = decode_secret(env.get_secret_value(), "LIFECYCLE_MASTER_KEY")
        return cls(settings.resolved_key_file(), secret)

    @property
    def from_env(self) -> bool:
        return self.env_secret is not None

    def describe(self) -> str:
        return "LIFECYCLE_MASTER_KEY" if self.from_env else str(self.path)

    def read(self) -> bytes | None:
        """The master secret, or None when the key file is missing."""
        return self.env_secret if self.env_secret is not None else read_key_file(self.path)

    def create(self) -> bytes:
        """Create the key file with a fresh secret (a new ledger only); a racing creator wins."""
        secret = new_secret()
        try:
            write_key_file(self.path, secret, exclusive=True)
        except FileExistsError:
            existing = read_key_file(self.path)
            if existing is None:
                raise
            return existing
        return secret

    @property
    def pending_path(self) -> Path:
        """Where a rotation writes the new key before the switch commits."""
        return self.path.with_name(f"{self.path.name}.new")

    def backup_path(self, fingerprint: str) -> Path:
        """Where a rotation keeps the old key until the switch committed."""
        return self.path.with_name(f"{self.path.name}.old-{fingerprint}")
