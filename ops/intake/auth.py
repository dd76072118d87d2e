"""Who may register a request: basic auth for the page, signatures for the webhook.

The page takes the local Prefect server's credentials (``user:password`` from the
credentials file ``lifecycle server start`` writes), compared in constant time. Its form
posts are refused when a browser says they come from another site: a browser sends
cached basic-auth credentials along with a cross-site form post (CSRF). The webhook's
signature is checked by ``signing.verify``; ``ReplayGuard`` remembers each accepted
signature for the tolerance window, so a delivery is registered once even when sent twice.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

REALM = 'Basic realm="lifecycle intake", charset="UTF-8"'


def basic_auth_ok(authorization: str | None, expected: str) -> bool:
    """Whether an ``Authorization: Basic`` header carries exactly ``expected`` (user:password)."""
    if not authorization or not expected:
        return False
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic" or not token:
        return False
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, expected.encode("utf-8"))


def cross_site(headers: Mapping[str, str]) -> bool:
    """Whether a browser marked the request as sent from another site (or origin).

    Clients that are not browsers (curl, a help desk) send neither header and pass.
    """
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc != headers.get("host", "")


@dataclass
class ReplayGuard:
    """Signatures accepted within the last ``window`` seconds, with the request each became.

    A signature's timestamp may be up to ``window`` old or ahead, so one is remembered
    for twice that; expired ones leave in arrival order (a deque), in constant time.
    """

    window: float
    _seen: dict[str, str | None] = field(default_factory=dict)
    _order: deque[tuple[float, str]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self, signature: str, now: float | None = None) -> tuple[bool, str | None]:
        """(True, None) for a first delivery; (False, request id or None) for a repeat."""
        current = time.monotonic() if now is None else now
        with self._lock:
            while self._order and current - self._order[0][0] > 2 * self.window:
                self._seen.pop(self._order.popleft()[1], None)
            if signature in self._seen:
                return False, self._seen[signature]
            self._seen[signature] = None
            self._order.append((current, signature))
            return True, None

    def settle(self, signature: str, request_id: str | None) -> None:
        """Record what a claimed delivery became; forget it if nothing was registered."""
        with self._lock:
            if request_id is None:
                self._seen.pop(signature, None)  # its deque entry expires harmlessly
            elif signature in self._seen:
                self._seen[signature] = request_id
