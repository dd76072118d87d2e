"""The help-desk callback: signed, identity-free, once per final state, never failing.

A tiny HTTP receiver in a thread plays the help desk; it answers with the statuses a test
gives it (200 by default) and records every delivery.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from config.settings import get_settings
from ops.intake import signing
from ops.intake.callback import EVENT, notify_help_desk
from ops.intake.models import IntakeRequest
from ops.intake.service import Intake
from state.register import RequestStatus
from tests.ops.intake_support import EMAIL, SECRET, FakeRuns, configure, context

NO_WAIT = (0.0, 0.0)  # retry at once: three attempts, no sleeping in tests


class Receiver:
    """The help desk's end: records (headers, body) of each POST, answers from ``replies``."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.replies: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.deliveries.append((dict(self.headers.items()), body))
                self.send_response(receiver.replies.pop(0) if receiver.replies else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tickets/hook"

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.deliveries]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def _config(isolated_settings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(tmp_path, isolated_settings, monkeypatch)
    monkeypatch.setenv(signing.SECRET_ENV, SECRET.decode())
    get_settings.cache_clear()


def _callback_to(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFECYCLE_HELPDESK_CALLBACK_URL", url)
    get_settings.cache_clear()


def _register(ticket: str | None = "ZD-4711") -> str:
    req = IntakeRequest(kind="erasure", identity={"email": EMAIL}, ticket=ticket)
    return Intake(start_run=FakeRuns()).register(req).request_id


def _complete(request_id: str) -> None:
    register = context().register
    for status in ("planned", "approved", "executing", "verifying", "completed"):
        register.transition(request_id, RequestStatus(status), actor="flow:subject-request")


def _notified(request_id: str) -> list[Any]:
    return list(context().ledger.events(request_id=request_id, kinds=[EVENT]))


def test_a_completed_request_is_reported_to_its_ticket_signed_without_identity(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _callback_to(receiver.url, monkeypatch)
    request_id = _register()
    _complete(request_id)
    notify_help_desk(request_id, delays=NO_WAIT)

    [(headers, body)] = receiver.deliveries
    signing.verify(SECRET, _ci(headers), body, tolerance=60)  # raises if not signed right
    payload = json.loads(body)
    closed_at = context().register.get(request_id).closed_at
    assert closed_at is not None
    assert payload == {
        "ticket": "ZD-4711",
        "request_id": request_id,
        "kind": "erasure",
        "status": "completed",
        "completed_at": closed_at.isoformat(),
    }
    assert b"example.com" not in body
    [event] = _notified(request_id)
    assert (event.status.value, event.detail) == (
        "succeeded",
        {"status": "completed", "attempts": 1, "http_status": 200},
    )

    notify_help_desk(request_id, delays=NO_WAIT)  # a rerun of the finished request
    assert len(receiver.deliveries) == 1


def _ci(headers: dict[str, str]) -> dict[str, str]:
    """The receiver's headers under the names the verifier looks up."""
    lower = {k.lower(): v for k, v in headers.items()}
    return {
        name: lower[name.lower()] for name in (signing.TIMESTAMP_HEADER, signing.SIGNATURE_HEADER)
    }


@pytest.mark.parametrize("final", ["rejected", "cancelled"])
def test_rejected_and_cancelled_requests_are_reported_too(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, final: str
) -> None:
    _callback_to(receiver.url, monkeypatch)
    request_id = _register()
    register = context().register
    if final == "cancelled":
        register.cancel(request_id, reason="withdrawn by the subject", actor="operator")
    else:
        register.transition(request_id, RequestStatus.REJECTED, actor="operator")
    notify_help_desk(request_id, delays=NO_WAIT)
    assert [p["status"] for p in receiver.payloads()] == [final]


def test_nothing_is_sent_without_a_ticket_a_url_or_a_final_state(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_request, no_ticket = _register(), _register(ticket=None)
    _complete(no_ticket)
    notify_help_desk(no_ticket, delays=NO_WAIT)
    notify_help_desk(open_request, delays=NO_WAIT)
    _complete(open_request)
    notify_help_desk(open_request, delays=NO_WAIT)  # no callback URL set yet
    assert receiver.deliveries == []
    assert _notified(open_request) == [] and _notified(no_ticket) == []

    _callback_to(receiver.url, monkeypatch)
    notify_help_desk(no_ticket, delays=NO_WAIT)
    assert receiver.deliveries == []


def test_a_failing_help_desk_is_retried_logged_and_fails_nothing(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _callback_to(receiver.url + "?token=not-for-logs", monkeypatch)
    request_id = _register()
    _complete(request_id)
    receiver.replies = [503, 500, 502]
    with caplog.at_level(logging.ERROR, logger="lifecycle.intake"):
        notify_help_desk(request_id, delays=NO_WAIT)  # returns: nothing raised
    assert len(receiver.deliveries) == 3
    assert "failed after 3 attempt(s) (HTTP 502)" in caplog.text
    assert "not-for-logs" not in caplog.text
    [event] = _notified(request_id)
    assert event.status.value == "failed"
    assert event.detail == {"status": "completed", "attempts": 3, "http_status": 502}
    assert context().register.get(request_id).status is RequestStatus.COMPLETED

    receiver.replies = [200]  # a later call (a rerun) still reports it
    notify_help_desk(request_id, delays=NO_WAIT)
    assert len(receiver.deliveries) == 4


def test_a_refusing_help_desk_is_not_retried(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _callback_to(receiver.url, monkeypatch)
    request_id = _register()
    _complete(request_id)
    receiver.replies = [401]
    notify_help_desk(request_id, delays=NO_WAIT)
    assert len(receiver.deliveries) == 1
    assert _notified(request_id)[0].detail["http_status"] == 401


def test_an_unreachable_help_desk_fails_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    closed = Receiver()  # bound, then closed: nothing listens on its port
    closed.server.server_close()
    _callback_to(closed.url, monkeypatch)
    request_id = _register()
    _complete(request_id)
    with caplog.at_level(logging.ERROR, logger="lifecycle.intake"):
        notify_help_desk(request_id, delays=NO_WAIT)
    assert "failed after 3 attempt(s) (HTTP none)" in caplog.text
    assert _notified(request_id)[0].detail == {"status": "completed", "attempts": 3}


def test_an_unknown_request_is_logged_not_raised(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _callback_to(receiver.url, monkeypatch)
    with caplog.at_level(logging.ERROR, logger="lifecycle.intake"):
        notify_help_desk("req_0000000000000000", delays=NO_WAIT)
        notify_help_desk(EMAIL, delays=NO_WAIT)  # not a request id: named as such, not echoed
    assert "callback for req_0000000000000000 not sent (request req_0000000000000000 not" in (
        caplog.text
    )
    assert "callback for (not a request id) not sent" in caplog.text
    assert "example.com" not in caplog.text
    assert receiver.deliveries == []
