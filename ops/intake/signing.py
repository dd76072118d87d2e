"""HMAC-SHA256 signatures of webhooks and callbacks, and the shared secret they use.

A signature covers ``<timestamp>.<raw body>``: the timestamp (Unix seconds, its own
header) is signed too, so a captured delivery cannot be replayed with a fresh one, and a
stale one is refused. Headers: ``X-Lifecycle-Timestamp`` and
``X-Lifecycle-Signature: sha256=<hex>``. Comparison is constant-time.

The secret is ``LIFECYCLE_INTAKE_WEBHOOK_SECRET`` or else the file
``intake-webhook.secret`` in the data folder, which ``lifecycle server start`` generates
(mode 0600) when neither exists.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path

from config.settings import Settings

TIMESTAMP_HEADER = "X-Lifecycle-Timestamp"
SIGNATURE_HEADER = "X-Lifecycle-Signature"
SCHEME = "sha256="
SECRET_ENV = "LIFECYCLE_INTAKE_WEBHOOK_SECRET"
SECRET_FILE = "intake-webhook.secret"


class SignatureRefused(Exception):
    """Why a delivery's signature was refused (a short reason, never the body)."""


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>``."""
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return SCHEME + digest.hexdigest()


def signed_headers(secret: bytes, body: bytes, now: float | None = None) -> dict[str, str]:
    """The two headers that sign ``body`` now (what a sender adds)."""
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float,
    now: float | None = None,
) -> str:
    """The verified signature of ``body``; SignatureRefused (missing, stale, forged) if not.

    ``headers`` is looked up case-insensitively by the caller's mapping (Starlette's is).
    """
    timestamp = headers.get(TIMESTAMP_HEADER)
    given = headers.get(SIGNATURE_HEADER)
    if not timestamp or not given:
        raise SignatureRefused("missing signature or timestamp header")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureRefused("malformed timestamp (expected Unix seconds)")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        raise SignatureRefused("timestamp outside the allowed window (stale or replayed)")
    expected = signature(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode("ascii"), given.strip().encode("utf-8")):
        raise SignatureRefused("signature does not match")
    return expected


# -- the shared secret ---------------------------------------------------------------------


def secret_file(data_dir: Path) -> Path:
    return data_dir / SECRET_FILE


def load_secret(settings: Settings) -> bytes | None:
    """The shared secret: the setting, else the data folder's file; None when neither."""
    if settings.intake_webhook_secret is not None:
        value = settings.intake_webhook_secret.get_secret_value().strip()
        return value.encode() if value else None
    return read_secret_file(secret_file(settings.data_dir))


def read_secret_file(path: Path) -> bytes | None:
    """The secret in ``path`` (mode narrowed to 0600 if others could read it), or None."""
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return value.encode() if value else None


def ensure_secret_file(path: Path) -> bool:
    """Generate the secret in ``path`` (mode 0600, O_EXCL) unless it exists; True if made."""
    from core.private_files import private_dir

    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
    return True
