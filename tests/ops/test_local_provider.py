"""``python -m ops.local_provider``, the served demo's stub provider: its own process, its
subscribers read from the demo CRM file, requests signed with the secret from a 0600 file;
and how ``lifecycle server start`` hands flow runs its endpoint and secret."""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.provider import ENDPOINT_ENV, ping
from demo.seed_sql import seed_crm
from ops import demo_setup, local_provider, procs, server
from ops import serve_env as se


def _free_port() -> int:
    rng = random.Random()
    while not procs.port_free("127.0.0.1", port := rng.randrange(20000, 32000)):
        pass
    return port


def test_the_secret_is_made_once_owner_only(tmp_path: Path) -> None:
    path = se.ServePaths(tmp_path / "serve").provider_secret
    secret, created = local_provider.ensure_secret(path)
    assert created and len(secret) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert local_provider.ensure_secret(path) == (secret, False)
    path.chmod(0o644)
    assert local_provider.read_secret(path) == secret
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_command_holds_no_secret(tmp_path: Path) -> None:
    args = local_provider.command("py", 4580, tmp_path / "provider-secret", tmp_path / "crm.db")
    assert args == [
        *("py", "-m", "ops.local_provider", "--port", "4580"),
        *("--secret-file", str(tmp_path / "provider-secret"), "--crm", str(tmp_path / "crm.db")),
    ]
    assert all(a in args for a in server.PROVIDER.marker)


def test_the_served_demo_gets_its_endpoint_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)
    assert demo_setup.needs_local_provider({})  # the demo configuration, nothing set
    assert not demo_setup.needs_local_provider({ENDPOINT_ENV: "https://mail.example.com"})
    env = demo_setup.provider_env("http://127.0.0.1:4580", "s3cret")
    assert env == {ENDPOINT_ENV: "http://127.0.0.1:4580", "LIFECYCLE_NEWSLETTER_SECRET": "s3cret"}
    # The inventory's default endpoint is the served provider's default port.
    inst = server.instance({se.SERVE_DIR_ENV: "/tmp/x"})
    assert inst.provider_endpoint == f"http://127.0.0.1:{se.DEFAULT_PROVIDER_PORT}"
    config = demo_setup.demo_config()
    assert config is not None
    assert getattr(config.store("newsletter"), "endpoint", None) == inst.provider_endpoint
    moved = server.instance({se.SERVE_DIR_ENV: "/tmp/x", se.PROVIDER_PORT_ENV: "4999"})
    assert moved.provider_endpoint == "http://127.0.0.1:4999"
    assert se.PROVIDER_PORT_ENV not in se.client_env(
        {se.PROVIDER_PORT_ENV: "4999"},
        se.ServePaths(Path("/tmp/x")),
        4200,
        se.Credentials("admin", "pw", Path("/tmp/x/credentials")),
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """The local provider as ``lifecycle server start`` runs it: endpoint, secret, log."""
    crm = tmp_path / "crm.db"
    seed_crm(f"sqlite:///{crm}", customers=30)
    secret, _created = local_provider.ensure_secret(tmp_path / "provider-secret")
    port = _free_port()
    log = tmp_path / "provider.log"
    args = local_provider.command(sys.executable, port, tmp_path / "provider-secret", crm)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    child = procs.spawn(args, env, tmp_path, log, tmp_path / "provider.pid")
    url = local_provider.endpoint(port)
    try:
        deadline = time.monotonic() + 60
        while not local_provider.ready(url, secret):
            assert child.poll() is None, procs.tail(log)
            assert time.monotonic() < deadline, procs.tail(log)
            time.sleep(0.1)
        yield url, secret, log
    finally:
        procs.terminate(child.pid, grace=10)
        child.wait(timeout=30)
    assert "local provider stopped" in log.read_text()


def test_the_served_provider_answers_signed_requests_only(
    served: tuple[str, str, Path],
) -> None:
    url, secret, log = served
    assert url.startswith("http://127.0.0.1:")
    assert ping(url, secret)
    assert not ping(url, "another-secret")  # 401: refused
    text = log.read_text()
    assert f"local provider serving on {url}: 12 subscriptions of 11 demo customers" in text
    assert secret not in text and "@example.com" not in text.lower()


def test_without_the_crm_it_says_so(tmp_path: Path) -> None:
    local_provider.ensure_secret(tmp_path / "secret")
    args = ["--port", "1", "--secret-file", str(tmp_path / "secret"), "--crm", str(tmp_path / "x")]
    assert local_provider.main(args) == 2
