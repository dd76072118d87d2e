"""Who may register a request: basic auth for the page, signatures for the webhook.

The page takes the local Prefect server's credentials (``user:password`` from the
credentials file ``lifecycle server start`` writes), compared in constant time. Its form
posts are refused when a browser says they come from another site: a browser sends
cached basic-auth credentials along with a cross-site form post (CSRF). The webhook's
signature is checked by ``signing.verify``; a delivery sent twice is registered once by
``idempotency``, which remembers deliveries in the audit database (so across restarts).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
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
