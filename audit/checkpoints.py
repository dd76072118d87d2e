"""Signed checkpoints of the chain head, and their export as anchor files.

A checkpoint says "the ledger had ``count`` events ending in ``head_hash``", signed with
the Ed25519 checkpoint key. Kept in the database it catches a truncated tail (which the
chain alone cannot see); exported to a file kept elsewhere it also catches an attacker
who rewrites the database tables wholesale.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Connection, insert, select

from audit.canonical import checkpoint_content, format_time
from audit.events import Checkpoint
from audit.tables import audit_checkpoints
from core.errors import ConfigError, IntegrityError
from core.keys import KeyRing
from core.private_files import private_dir

ANCHOR_FORMAT = "lifecycle-audit-checkpoint/v1"
_HASH_LEN = 64


def sign_checkpoint(
    keys: KeyRing, seq: int, head_hash: str, count: int, created_at: datetime
) -> Checkpoint:
    """A checkpoint of the given head, signed with the key ring's checkpoint key."""
    signature = keys.signing_key.sign(checkpoint_content(seq, head_hash, count, created_at))
    return Checkpoint(
        seq=seq,
        head_hash=head_hash,
        count=count,
        created_at=created_at,
        signature=base64.b64encode(signature).decode("ascii"),
    )


def signature_valid(public_key: Ed25519PublicKey, checkpoint: Checkpoint) -> bool:
    """True when ``checkpoint``'s signature verifies under ``public_key``."""
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
        content = checkpoint_content(
            checkpoint.seq, checkpoint.head_hash, checkpoint.count, checkpoint.created_at
        )
        public_key.verify(signature, content)
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return True


def public_key_hex(public_key: Ed25519PublicKey) -> str:
    """The raw 32-byte Ed25519 public key as hex."""
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def anchor_document(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The JSON object written to an anchor file."""
    return {
        "format": ANCHOR_FORMAT,
        "seq": checkpoint.seq,
        "head_hash": checkpoint.head_hash,
        "count": checkpoint.count,
        "created_at": format_time(checkpoint.created_at),
        "signature": checkpoint.signature,
        "public_key": public_key_hex(public_key),
    }


def write_anchor(path: Path, checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> None:
    """Write the anchor file atomically (a reader never sees half a file)."""
    text = json.dumps(anchor_document(checkpoint, public_key), indent=2) + "\n"
    private_dir(path.parent)  # created folders: mode 0700; mkstemp makes the file 0600
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _field(doc: dict[str, Any], name: str, kind: type, path: Path) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{path}: anchor field '{name}' is missing or not a {kind.__name__}")
    return value


def load_anchor(path: Path) -> Checkpoint:
    """Read an anchor file written by ``export_checkpoint``.

    Raises ConfigError when the file is unreadable or malformed, and IntegrityError
    when its signature does not verify under the public key it carries (altered file).
    Whether that key is this ledger's key is checked by ``Ledger.verify``.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read anchor file ({e.strerror})") from e
    except (UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path}: anchor file is not valid JSON") from e
    if not isinstance(doc, dict) or doc.get("format") != ANCHOR_FORMAT:
        raise ConfigError(f"{path}: not an audit checkpoint file ({ANCHOR_FORMAT})")
    seq = _field(doc, "seq", int, path)
    count = _field(doc, "count", int, path)
    head_hash = _field(doc, "head_hash", str, path)
    if seq < 0 or count < 0 or len(head_hash) != _HASH_LEN:
        raise ConfigError(f"{path}: anchor seq, count or head_hash is out of range")
    try:
        created_at = datetime.fromisoformat(_field(doc, "created_at", str, path))
        public_key = Ed25519PublicKey.from_public_bytes(
            bytes.fromhex(_field(doc, "public_key", str, path))
        )
    except ValueError as e:
        raise ConfigError(f"{path}: anchor created_at or public_key is malformed") from e
    if created_at.tzinfo is None:
        raise ConfigError(f"{path}: anchor created_at has no time zone")
    checkpoint = Checkpoint(
        seq=seq,
        head_hash=head_hash,
        count=count,
        created_at=created_at,
        signature=_field(doc, "signature", str, path),
    )
    if not signature_valid(public_key, checkpoint):
        raise IntegrityError(f"{path}: anchor signature does not verify (file altered)")
    return checkpoint


def _from_row(row: Any) -> Checkpoint:
    return Checkpoint(
        seq=int(row.seq),
        head_hash=row.head_hash,
        count=int(row.count),
        created_at=row.created_at,
        signature=row.signature,
    )


def load_checkpoints(conn: Connection) -> list[Checkpoint]:
    """Every stored checkpoint, oldest first (few: one per day or per run)."""
    t = audit_checkpoints
    rows = conn.execute(select(t).order_by(t.c.id)).all()
    return [_from_row(r) for r in rows]


def latest_checkpoint(conn: Connection) -> Checkpoint | None:
    """The most recently recorded checkpoint, or None."""
    t = audit_checkpoints
    row = conn.execute(select(t).order_by(t.c.id.desc()).limit(1)).one_or_none()
    return None if row is None else _from_row(row)


def insert_checkpoint(conn: Connection, checkpoint: Checkpoint) -> None:
    """Store ``checkpoint`` (the caller commits)."""
    conn.execute(
        insert(audit_checkpoints).values(
            seq=checkpoint.seq,
            head_hash=checkpoint.head_hash,
            count=checkpoint.count,
            created_at=checkpoint.created_at,
            signature=checkpoint.signature,
        )
    )
