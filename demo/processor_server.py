"""A local stand-in for a processor's privacy API: tests and the demo use it, never production.

``StubProvider`` serves the API ``connectors.processor.client`` describes on 127.0.0.1
(``http.server.ThreadingHTTPServer`` in a thread): it verifies every request's signature
(401 otherwise), honours idempotency keys (a repeated erasure is answered with the first
request's state and erases nothing again) and confirms an erasure after a configurable
number of status polls. Knobs inject the failures a real provider has: answers delayed
past the client's timeout, 429/5xx before a real answer, refusals, holds, confirmations
that never come, and a latency every answer waits (benchmarks). Records live in memory.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from connectors.processor.client import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)

MAX_SKEW_SECONDS = 300


@dataclass
class StubRecord:
    """One record the provider holds: the identities it is found by, and its data."""

    ref: str
    identities: dict[str, str]
    data: dict[str, Any] = field(default_factory=dict)
    hold: str | None = None  # a hold code: the provider refuses to erase it
    hold_until: str | None = None


@dataclass
class StubRequest:
    """An erasure or rectification the provider took, by idempotency key."""

    kind: str
    refs: list[str]
    reference: str
    polls_left: int
    changes: dict[str, str] = field(default_factory=dict)
    state: str = "pending"


@dataclass
class Knobs:
    """Failures to inject, consumed in order (each list entry is used once)."""

    delays: list[float] = field(default_factory=list)  # seconds before answering
    latency: float = 0.0  # seconds before every answer (a provider far away), always
    statuses: list[int] = field(default_factory=list)  # answered instead of the real answer
    refuse: dict[str, int] = field(default_factory=dict)  # operation -> 4xx, always
    confirm_after_polls: int = 0  # status polls before a request is confirmed
    never_confirm: bool = False
    fail: bool = False  # requests end "failed"


class StubProvider:
    """The provider's state and its HTTP server (``start``/``stop`` or ``running()``)."""

    def __init__(self, secret: bytes, records: list[StubRecord] | None = None) -> None:
        self.secret = secret
        self.records: dict[str, StubRecord] = {r.ref: r for r in records or []}
        self.requests: dict[str, StubRequest] = {}
        self.knobs = Knobs()
        self.calls: list[tuple[str, str | None]] = []  # (operation, idempotency key)
        self.erased: list[str] = []  # every record reference erased, in order
        self.rejected_signatures = 0
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._scheme = "http"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> StubProvider:
        """Serve on 127.0.0.1 (``port`` 0: any free port) in a daemon thread; HTTPS with
        ``tls`` (a server context, e.g. ``demo.local_tls.TlsFiles.server_context()``)."""
        provider = self

        class Handler(_Handler):
            stub = provider

        self._server = _Server(("127.0.0.1", port), Handler)
        self._scheme = "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._thread = threading.Thread(
            target=partial(self._server.serve_forever, poll_interval=0.05),
            name="stub-provider",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @contextmanager
    def running(self) -> Iterator[StubProvider]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    # -- the API ------------------------------------------------------------------------

    def confirm_all(self) -> None:
        """Confirm every pending request now (the provider caught up)."""
        with self.lock:
            for request in self.requests.values():
                if request.state == "pending":
                    self._finish(request)

    def _finish(self, request: StubRequest) -> None:
        if self.knobs.fail:
            request.state = "failed"
            return
        request.state = "confirmed"
        for ref in request.refs:
            record = self.records.get(ref)
            if record is None:
                continue
            if request.kind == "erasures":
                del self.records[ref]
                self.erased.append(ref)
            else:
                record.data.update(request.changes)
                for name, value in request.changes.items():
                    if name in record.identities:
                        record.identities[name] = value

    def _state(self, request: StubRequest) -> dict[str, Any]:
        return {"reference": request.reference, "status": request.state}

    def answer(self, operation: str, body: dict[str, Any], key: str | None) -> dict[str, Any]:
        """The JSON answer to one verified request (``self.lock`` held)."""
        if operation == "ping":
            return {"ok": True}
        if operation == "locate":
            asked = body.get("identities", {})
            found = [
                {"ref": r.ref}
                for r in self.records.values()
                if any(r.identities.get(kind) in values for kind, values in asked.items())
            ]
            return {"records": found}
        return self._by_refs(operation, body, key)

    def _by_refs(self, operation: str, body: dict[str, Any], key: str | None) -> dict[str, Any]:
        refs = [str(ref) for ref in body.get("refs", [])]
        if operation == "export":
            return {
                "records": [
                    {"ref": ref, "data": self.records[ref].data}
                    for ref in refs
                    if ref in self.records
                ]
            }
        if operation == "holds":
            held = [self.records[r] for r in refs if r in self.records and self.records[r].hold]
            return {
                "holds": [{"ref": r.ref, "reason": r.hold, "until": r.hold_until} for r in held]
            }
        if operation == "status":
            request = self.requests.get(str(body.get("idempotency_key")))
            if request is None:
                return {"status": "unknown"}
            if request.state == "pending" and not self.knobs.never_confirm:
                request.polls_left -= 1
                if request.polls_left <= 0:
                    self._finish(request)
            return self._state(request)
        return self._take(operation, refs, body, key)

    def _take(
        self, operation: str, refs: list[str], body: dict[str, Any], key: str | None
    ) -> dict[str, Any]:
        if key is None:
            raise _Refuse(400)
        existing = self.requests.get(key)
        if existing is not None:
            return self._state(existing)  # a repeat: the first request's state
        request = StubRequest(
            operation,
            refs,
            reference=f"REQ-{len(self.requests) + 1:04d}",
            polls_left=self.knobs.confirm_after_polls,
            changes={str(k): str(v) for k, v in body.get("changes", {}).items()},
        )
        self.requests[key] = request
        if request.polls_left <= 0 and not self.knobs.never_confirm:
            self._finish(request)
        return self._state(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that gave up (timeout) leaves a broken pipe, nothing more."""


class _Refuse(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    stub: StubProvider
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test's output stays clean."""

    def _send(self, status: int, data: dict[str, Any]) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        stub = self.stub
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        operation = self.path.rsplit("/", 1)[-1]
        key = self.headers.get(IDEMPOTENCY_HEADER)
        timestamp = self.headers.get(TIMESTAMP_HEADER, "")
        signature = self.headers.get(SIGNATURE_HEADER, "")
        with stub.lock:
            stub.calls.append((operation, key))
            delay = stub.knobs.delays.pop(0) if stub.knobs.delays else 0.0
            # A delayed call's client has gone: the injected statuses are for later calls.
            injected = stub.knobs.statuses.pop(0) if stub.knobs.statuses and not delay else None
            latency = stub.knobs.latency
        if delay:
            time.sleep(delay)  # the client has given up by now: its retry comes next
        if latency:
            time.sleep(latency)  # outside the lock: concurrent calls wait side by side
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= MAX_SKEW_SECONDS
        if not fresh or not verify_signature(stub.secret, timestamp, raw, signature):
            with stub.lock:
                stub.rejected_signatures += 1
            self._send(401, {"error": "bad signature"})
            return
        if injected is not None:
            # A provider's error body may echo the request: the client must never show it.
            self._send(injected, {"error": "injected", "echo": raw.decode()})
            return
        with stub.lock:
            refused = stub.knobs.refuse.get(operation)
            try:
                if refused is not None:
                    raise _Refuse(refused)
                status, data = 200, stub.answer(operation, json.loads(raw or b"{}"), key)
            except _Refuse as e:
                status, data = e.status, {"error": "refused", "echo": raw.decode()}
        self._send(status, data)
