"""Report a request's result back to the help-desk ticket it came from.

``notify_help_desk(request_id)`` POSTs ``{ticket, request_id, kind, status, completed_at}``
(no identity, no counts) to ``LIFECYCLE_HELPDESK_CALLBACK_URL``, signed like the webhook
(``signing``: ``X-Lifecycle-Timestamp`` and ``X-Lifecycle-Signature`` over
``<timestamp>.<body>`` with the shared secret). Only for a request with a ticket, in a
final state (completed, rejected, cancelled, closed, failed), and once per state: the
ledger's "request.helpdesk_notified" events say what was sent. Network errors, 408, 429
and 5xx answers are retried; it never raises, a failure is logged and recorded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from audit.events import EventStatus
from audit.ledger import Ledger
from core.errors import LifecycleError
from state.register import RequestRecord, RequestRegister, RequestStatus

log = logging.getLogger("lifecycle.intake")

EVENT = "request.helpdesk_notified"
ACTOR = "service:helpdesk-callback"
FINAL = frozenset(
    {
        RequestStatus.COMPLETED,
        RequestStatus.REJECTED,
        RequestStatus.CANCELLED,
        RequestStatus.CLOSED,
        RequestStatus.FAILED,
    }
)
RETRY_DELAYS = (2.0, 10.0)  # three attempts in all
TIMEOUT_S = 10.0


def notify_help_desk(
    request_id: str, *, delays: Sequence[float] = RETRY_DELAYS, timeout: float = TIMEOUT_S
) -> None:
    """Send the request's result to its help-desk ticket, if it has one; never raises."""
    from state.register_model import check_request_id

    try:
        shown = check_request_id(request_id)
    except LifecycleError:  # anything pasted in the wrong place: never logged
        shown = "(not a request id)"
    try:
        _notify(request_id, delays, timeout)
    except Exception as e:  # the request's own outcome must not depend on the help desk
        what = e.message if isinstance(e, LifecycleError) else type(e).__name__
        log.error("help-desk callback for %s not sent (%s)", shown, what)


def _notify(request_id: str, delays: Sequence[float], timeout: float) -> None:
    from audit.keystore import keyring_from_settings
    from config.settings import get_settings
    from ops.intake.reference import get_reference
    from ops.intake.signing import load_secret

    settings = get_settings()
    if settings.helpdesk_callback_url is None:
        return
    keys = keyring_from_settings()
    ledger = Ledger.open(keys=keys, actor=ACTOR)
    register = RequestRegister(ledger, keys)
    record = register.get(request_id)
    ticket = get_reference(ledger.engine, request_id)
    if record.status not in FINAL or ticket is None or _sent(ledger, record):
        return
    secret = load_secret(settings)
    if secret is None:
        log.error("help-desk callback for %s not sent: no shared secret", request_id)
        return
    body = json.dumps(payload(register, record, ticket), separators=(",", ":")).encode()
    url = settings.helpdesk_callback_url.get_secret_value()
    attempts, http_status = post_signed(url, secret, body, delays, timeout)
    ok = http_status is not None and 200 <= http_status < 300
    if not ok:
        host = urlsplit(url).hostname or "?"
        log.error(
            "help-desk callback for %s to %s failed after %d attempt(s) (HTTP %s)",
            request_id,
            host,
            attempts,
            http_status or "none",
        )
    detail: dict[str, Any] = {"status": record.status.value, "attempts": attempts}
    if http_status is not None:
        detail["http_status"] = http_status
    ledger.append(
        EVENT,
        status=EventStatus.SUCCEEDED if ok else EventStatus.FAILED,
        request_id=request_id,
        subject=record.subject,
        detail=detail,
    )


def payload(register: RequestRegister, record: RequestRecord, ticket: str) -> dict[str, Any]:
    """What the help desk gets: the ticket, the request's id, kind, status and when."""
    entered = [e.at for e in register.history(record.id) if e.to_status is record.status]
    at = entered[-1] if entered else record.closed_at
    return {
        "ticket": ticket,
        "request_id": record.id,
        "kind": record.kind.value,
        "status": record.status.value,
        "completed_at": None if at is None else at.isoformat(),
    }


def _sent(ledger: Ledger, record: RequestRecord) -> bool:
    """Whether this state was already reported (a rerun of a finished request)."""
    return any(
        e.status is EventStatus.SUCCEEDED and e.detail.get("status") == record.status.value
        for e in ledger.events(request_id=record.id, kinds=[EVENT])
    )


def _retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


def post_signed(
    url: str, secret: bytes, body: bytes, delays: Sequence[float], timeout: float
) -> tuple[int, int | None]:
    """POST ``body`` signed, retrying after each of ``delays``; (attempts, last HTTP status)."""
    import httpx

    from ops.intake.signing import signed_headers

    attempts, status = 0, None
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for delay in (*delays, None):
            attempts += 1
            headers = {"Content-Type": "application/json", **signed_headers(secret, body)}
            try:
                status = client.post(url, content=body, headers=headers).status_code
            except httpx.HTTPError:
                status = None
            if status is not None and not _retryable(status):
                break
            if delay is not None:
                time.sleep(delay)
    return attempts, status
