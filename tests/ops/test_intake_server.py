"""The intake service under ``lifecycle server``: port, secret, its process, start to stop.

The unit tests run the intake process alone (``_intake``, no Prefect server: a signed
request is registered and its flow run reported as not created). The slow test runs
``lifecycle server start`` for real and sends a signed webhook through it: the flow run
Prefect holds has the request id as its only parameter.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.errors import ConfigError
from ops import procs, server
from ops import serve_env as se
from ops.intake.signing import SECRET_ENV, read_secret_file, signed_headers
from tests.ops.intake_support import EMAIL, PAGE_AUTH, basic, erasure


def test_the_intake_port_comes_from_the_environment(tmp_path: Path) -> None:
    assert server.instance({}).intake_port == 4210
    inst = server.instance({server.INTAKE_PORT_ENV: "4300"})
    assert inst.intake_url == "http://127.0.0.1:4300"
    with pytest.raises(ConfigError, match=server.INTAKE_PORT_ENV):
        server.instance({server.INTAKE_PORT_ENV: "http"})


def test_the_webhook_secret_is_generated_once_owner_only(tmp_path: Path) -> None:
    env = {"LIFECYCLE_DATA_DIR": str(tmp_path / "data")}
    where, created = server.webhook_secret(env)
    path = Path(where)
    assert created and path == tmp_path / "data" / "intake-webhook.secret"
    assert path.stat().st_mode & 0o777 == 0o600
    secret = read_secret_file(path)
    assert secret is not None and len(secret) >= 40
    assert server.webhook_secret(env) == (where, False)
    assert read_secret_file(path) == secret

    given = {**env, SECRET_ENV: "from-the-environment"}
    assert server.webhook_secret(given) == (SECRET_ENV, False)


def test_status_shows_the_intake_when_nothing_runs(tmp_path: Path) -> None:
    env = {se.SERVE_DIR_ENV: str(tmp_path / "serve"), "LIFECYCLE_DATA_DIR": str(tmp_path)}
    info = server.status(env)
    assert info["processes"]["intake"]["alive"] is False
    assert (info["intake"], info["running"]) == ("down", False)
    assert info["intake_url"] == "http://127.0.0.1:4210"
    assert info["webhook_secret"] == str(tmp_path / "intake-webhook.secret")


def _free_ports(count: int) -> list[int]:
    """Free ports below Linux's ephemeral range (see tests/ops/test_server.py for why)."""
    free = [p for p in range(24210, 24410) if procs.port_free("127.0.0.1", p)][:count]
    assert len(free) == count, "no free ports"
    return free


def _free_port() -> int:
    return _free_ports(1)[0]


def _setup(tmp_path: Path, port: int) -> tuple[server.Instance, se.Credentials, dict[str, str]]:
    paths = se.ServePaths(tmp_path / "serve")
    paths.root.mkdir(parents=True)
    inst = server.Instance(paths=paths, port=1, s3_port=1, intake_port=port)
    user, _, password = PAGE_AUTH.partition(":")
    creds = se.Credentials(user=user, password=password, path=paths.credentials)
    paths.credentials.write_text(PAGE_AUTH + "\n")
    paths.credentials.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return inst, creds, env


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        inst, creds, env = _setup(tmp_path, taken.getsockname()[1])
        report = server.StartReport(inst=inst, credentials=creds, new_credentials=False)
        with pytest.raises(server.ServeError, match=server.INTAKE_PORT_ENV):
            server._intake(inst, creds, env, report, lambda _: None)


@pytest.fixture
def intake_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[server.Instance, server.StartReport]]:
    """The intake process started as ``lifecycle server start`` does, without Prefect."""
    inst, creds, env = _setup(tmp_path, _free_port())
    report = server.StartReport(inst=inst, credentials=creds, new_credentials=False)
    spawned: list[subprocess.Popen[bytes]] = []
    spawn = procs.spawn

    def keep(*args: Any) -> subprocess.Popen[bytes]:  # reaped below, as the CLI's exit does
        spawned.append(spawn(*args))
        return spawned[-1]

    monkeypatch.setattr(procs, "spawn", keep)
    try:
        server._intake(inst, creds, env, report, lambda _: None)
        yield inst, report
    finally:
        server._stop_one(inst, server.INTAKE)
        for child in spawned:
            child.wait()


def test_the_intake_process_serves_on_loopback_and_stops(
    intake_alone: tuple[server.Instance, server.StartReport],
) -> None:
    inst, report = intake_alone
    pid = report.pids["intake"]
    assert procs.process_alive(pid, server.INTAKE.marker)
    secret = read_secret_file(Path(report.webhook_secret))
    assert secret is not None and report.new_webhook_secret
    with httpx.Client(base_url=inst.intake_url, trust_env=False, timeout=60) as http:
        assert http.get("/").status_code == 401
        assert http.get("/", headers=basic()).status_code == 200
        body = json.dumps(erasure(ticket="ZD-1")).encode()
        forged = http.post(
            "/webhook/requests", content=body, headers=signed_headers(b"forged", body)
        )
        assert forged.status_code == 401
        signed = http.post("/webhook/requests", content=body, headers=signed_headers(secret, body))
    assert signed.status_code == 201, signed.text
    answer = signed.json()
    assert answer["flow_run_id"] is None  # no PREFECT_API_URL here: refused, not improvised
    assert "PREFECT_API_URL" in (inst.paths.log_file("intake").read_text())
    assert EMAIL not in inst.paths.log_file("intake").read_text()

    server._stop_one(inst, server.INTAKE)
    assert not procs.process_alive(pid, ())
    assert not inst.paths.pid_file("intake").exists()


# -- the real thing ---------------------------------------------------------------------------


def _flow_run(api: str, auth: str, flow_run_id: str) -> dict[str, Any]:
    from ops.prefect_api import request

    status, run = request(f"{api}/flow_runs/{flow_run_id}", auth)
    assert status == 200
    return dict(run)


def check_signed_webhook_through_the_served_stack(
    env: dict[str, str], port: int, intake_port: int, start_output: str, creds: Any
) -> None:
    """What ``lifecycle server start`` serves: the secret generated and never printed, a
    signed webhook registered and its run created with the request id alone, named after
    it. Called by ``tests/ops/test_server.py`` inside its one real start of the stack (a
    start costs a minute; one per suite is enough)."""
    secret_file = Path(env["LIFECYCLE_DATA_DIR"]) / "intake-webhook.secret"
    assert f"signed with the secret in {secret_file}, generated now" in start_output
    secret = read_secret_file(secret_file)
    assert secret is not None and secret.decode() not in start_output

    body = json.dumps(erasure(ticket="ZD-4711", requested_by="help-desk")).encode()
    url = f"http://127.0.0.1:{intake_port}"
    with httpx.Client(base_url=url, trust_env=False, timeout=120) as http:
        answer = http.post("/webhook/requests", content=body, headers=signed_headers(secret, body))
    assert answer.status_code == 201, answer.text
    created = answer.json()
    run = _flow_run(f"http://127.0.0.1:{port}/api", creds.auth_string, created["flow_run_id"])
    assert run["parameters"] == {"request_id": created["request_id"]}
    assert run["name"] == created["request_id"]
    assert "example.com" not in json.dumps(run)
