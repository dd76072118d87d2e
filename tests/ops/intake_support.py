"""Shared setup of the intake tests: the test inventory, a served app, signed deliveries.

The configuration is the flows' test inventory and policy (``tests.flows.support``) with
the fake SQL connector; flow runs are recorded by a fake ``start_run`` unless a test
needs Prefect (``tests/flows/test_intake_prefect.py``). The app is served by uvicorn on a
free loopback port in a thread (Starlette's TestClient warns about httpx) and called
with httpx, as a help desk would. Addresses are example.com only.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from config.settings import get_settings
from engine.request_support import RequestContext, request_context
from ops.intake.app import IntakeConfig, create_app
from ops.intake.service import Intake
from ops.intake.signing import signed_headers

SECRET = b"test-webhook-secret-not-a-real-one"
PAGE_AUTH = "admin:page-password-for-tests"
EMAIL = "robin.quill@example.com"


def configure(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The flows' test inventory and policy, served by the fake connector; the folder."""
    from tests.flows import fakes, support

    fakes.install(monkeypatch)
    folder = support.write_config(tmp_path / "config")
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(folder))
    get_settings.cache_clear()
    support.seed_stores(data_dir)
    return folder


class FakeRuns:
    """Stands in for Prefect: records the request ids flow runs were asked for."""

    def __init__(self, fail: bool = False) -> None:
        self.requested: list[str] = []
        self.fail = fail

    def __call__(self, request_id: str) -> str:
        self.requested.append(request_id)
        if self.fail:
            raise ConnectionError("the Prefect API is not reachable")
        return str(uuid.uuid4())


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` on a free 127.0.0.1 port in a thread; its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # generous: only a broken server takes this long
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


@contextmanager
def client(
    runs: FakeRuns, *, secret: bytes | None = SECRET, tolerance: float = 300
) -> Iterator[httpx.Client]:
    """An HTTP client of a served intake app (``.app`` set on it for tests to extend)."""
    config = IntakeConfig(page_auth=PAGE_AUTH, webhook_secret=secret, tolerance=tolerance)
    app = create_app(config, Intake(start_run=runs))
    with served(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=60) as http:
        http.app = app  # type: ignore[attr-defined]
        yield http


def context() -> RequestContext:
    return request_context()


def body_of(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def post_signed(
    test_client: httpx.Client,
    payload: Any,
    *,
    secret: bytes = SECRET,
    now: float | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST ``payload`` to the webhook, signed with ``secret`` at ``now``."""
    body = body_of(payload)
    sent = {"Content-Type": "application/json", **signed_headers(secret, body, now)}
    sent.update(headers or {})
    return test_client.post("/webhook/requests", content=body, headers=sent)


def basic(auth: str = PAGE_AUTH) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


def erasure(**extra: Any) -> dict[str, Any]:
    return {"kind": "erasure", "identity": {"email": EMAIL}, **extra}
