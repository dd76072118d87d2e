"""``lifecycle server``: credentials, environments, pid files, and one real start-to-stop run.

The unit tests cover the pure parts (``ops.serve_env``) and the process primitives
(``ops.procs``) on short-lived ``python`` children. The integration test starts the real
thing (Prefect server, local S3 and provider, deployments, worker) in an isolated state
folder on free ports, checks what the issue promises, starts it again, and stops it. Its
``lifecycle server`` commands run as ``python -m cli.main`` would, in children forked from
a process that imported the CLI once (``tests.forked_cli``): five fresh interpreters cost
seconds of CPU each on a machine the stack's own processes keep busy.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT
from core.errors import ConfigError
from demo.provider import ping
from ops import procs, unresponsive_runs
from ops import serve_env as se
from ops.prefect_api import request
from ops.server import PROCS, stop
from tests import forked_cli
from tests.ops.test_intake_server import check_signed_webhook_through_the_served_stack

# -- credentials ------------------------------------------------------------------------------


def test_credentials_are_generated_once_owner_only_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "credentials"
    first, created = se.ensure_credentials(path)
    assert created
    assert path.stat().st_mode & 0o777 == 0o600
    assert first.user == "admin"
    assert len(first.password) >= 32  # token_urlsafe(24): 32 characters, 192 bits
    assert path.read_text() == f"{first.auth_string}\n"
    assert first.password not in repr(first)

    again, created = se.ensure_credentials(path)
    assert not created
    assert again == first


def test_credentials_file_readable_by_others_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text("ops:s3cret-value\n")
    path.chmod(0o644)
    creds, created = se.ensure_credentials(path)
    assert not created
    assert (creds.user, creds.password) == ("ops", "s3cret-value")
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("content", ["no-colon\n", ":nouser\n", "user:\n", "a:b c\n"])
def test_malformed_credentials_are_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "credentials"
    path.write_text(content)
    with pytest.raises(ConfigError, match="user:password"):
        se.read_credentials(path)


# -- environments -----------------------------------------------------------------------------


def _creds(tmp_path: Path) -> se.Credentials:
    return se.Credentials(user="admin", password="pw", path=tmp_path / "credentials")


def test_state_folder_and_ports_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert se.serve_paths({}).root == tmp_path.resolve() / "var" / "prefect-serve"
    data = tmp_path / "data"
    assert se.serve_paths({"LIFECYCLE_DATA_DIR": str(data)}).root == data / "prefect-serve"
    assert se.serve_paths({se.SERVE_DIR_ENV: str(tmp_path)}).root == tmp_path.resolve()
    assert se.port_setting({}, se.PORT_ENV, 4200) == 4200
    assert se.port_setting({se.PORT_ENV: " 4300 "}, se.PORT_ENV, 4200) == 4300
    for bad in ("http", "0", "70000", "-1"):
        with pytest.raises(ConfigError, match=se.PORT_ENV):
            se.port_setting({se.PORT_ENV: bad}, se.PORT_ENV, 4200)


def test_server_env_binds_loopback_with_auth_and_own_home(tmp_path: Path) -> None:
    paths = se.ServePaths(tmp_path)
    caller = {
        "PATH": "/usr/bin",
        "PREFECT_API_URL": "http://elsewhere:4200/api",  # a stray client setting
        "PREFECT_API_KEY": "cloud-key",  # would take precedence over basic auth
        "PREFECT_PROFILE": "other",
    }
    env = se.server_env(caller, paths, 4300, _creds(tmp_path))
    assert env["PATH"] == "/usr/bin"
    assert env["PREFECT_HOME"] == str(tmp_path / "home")
    assert env["PREFECT_SERVER_API_HOST"] == "127.0.0.1"
    assert env["PREFECT_SERVER_API_PORT"] == "4300"
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == "admin:pw"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PREFECT_LOGGING_LEVEL"] == "WARNING"
    # Not the default port: the UI must be told where the API is.
    assert env["PREFECT_UI_API_URL"] == "http://127.0.0.1:4300/api"
    for stray in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
        assert stray not in env
    assert "127.0.0.1" in env["NO_PROXY"].split(",")
    # SQLite in home/ unless a database URL is given
    assert not any("DATABASE" in name for name in env)


def test_server_env_passes_the_database_url_through(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://prefect:pw@127.0.0.1:5432/prefect"
    caller = {"PREFECT_API_DATABASE_CONNECTION_URL": url, "PREFECT_UI_API_URL": "http://x/api"}
    env = se.server_env(caller, se.ServePaths(tmp_path), 4200, _creds(tmp_path))
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"] == url
    assert env["PREFECT_UI_API_URL"] == "http://x/api"  # a proxy's URL is kept


def test_client_env_points_at_the_server_with_absolute_product_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    caller = {
        "LIFECYCLE_DATA_DIR": "data",
        "LIFECYCLE_ACTOR": "ops",
        "LIFECYCLE_SERVE_PORT": "4300",
        "PREFECT_API_KEY": "cloud-key",
        "NO_PROXY": "internal.example",
    }
    s3 = {"LIFECYCLE_S3_ENDPOINT": "http://127.0.0.1:4566", "AWS_ACCESS_KEY_ID": "demo"}
    env = se.client_env(caller, se.ServePaths(tmp_path), 4300, _creds(tmp_path), s3)
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4300/api"
    assert env["PREFECT_API_AUTH_STRING"] == "admin:pw"
    assert env["PREFECT_HOME"] == str(tmp_path / "home")
    assert env["LIFECYCLE_DATA_DIR"] == str(tmp_path / "data")
    assert env["LIFECYCLE_ACTOR"] == "ops"
    assert env["LIFECYCLE_S3_ENDPOINT"] == "http://127.0.0.1:4566"
    assert env["NO_PROXY"] == "internal.example,127.0.0.1,localhost"
    assert "PREFECT_API_KEY" not in env
    assert "LIFECYCLE_SERVE_PORT" not in env

    assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(se.HEARTBEAT_SECONDS)  # for crashes
    default = se.client_env({}, se.ServePaths(tmp_path), 4200, _creds(tmp_path))
    assert default["LIFECYCLE_DATA_DIR"] == str(tmp_path.resolve() / "var")  # the cwd's var/


def test_env_file_is_sourceable_and_holds_no_caller_secrets(tmp_path: Path) -> None:
    caller = {"LIFECYCLE_MASTER_KEY": "secret-master", "AWS_SECRET_ACCESS_KEY": "real-aws"}
    client = se.client_env(caller, se.ServePaths(tmp_path), 4300, _creds(tmp_path))
    path = tmp_path / "env"
    se.write_private(path, se.env_file_text(se.shell_env(client)))
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert "secret-master" not in text
    assert "real-aws" not in text
    show = 'printf "%s %s %s" "$PREFECT_API_URL" "$PREFECT_API_AUTH_STRING" '
    show += '"$PREFECT_FLOWS_HEARTBEAT_FREQUENCY"'  # shell-started runs beat as the worker's
    shell = f". {shlex.quote(str(path))} && {show}"
    out = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=True)
    assert out.stdout == f"http://127.0.0.1:4300/api admin:pw {se.HEARTBEAT_SECONDS}"


# -- pid files and processes ------------------------------------------------------------------


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A detached ``python`` child in a session of its own, ignoring SIGTERM once ready."""
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(3600)"
    )
    log = tmp_path / "sleeper.log"
    child = procs.spawn(
        [sys.executable, "-c", code, "sleeper-marker"],
        dict(os.environ),
        tmp_path,
        log,
        tmp_path / "sleeper.pid",
    )
    deadline = time.monotonic() + 300  # only a stuck start waits this long
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "ready" in log.read_text(), "the sleeper never started"
    yield child
    if child.poll() is None:
        child.kill()
    child.wait()


def test_live_pid_keeps_a_running_process_and_drops_stale_files(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    pid_file = tmp_path / "sleeper.pid"
    assert procs.read_pid(pid_file) == sleeper.pid
    assert procs.live_pid(pid_file, ("sleeper-marker",)) == sleeper.pid
    assert pid_file.exists()

    # A live pid whose arguments do not match (a reused pid) is not ours: file removed.
    assert procs.live_pid(pid_file, ("prefect-server-marker",)) is None
    assert not pid_file.exists()

    # A pid that is gone, and a file that holds no pid.
    sleeper.kill()
    sleeper.wait()
    procs.write_pid(pid_file, sleeper.pid)
    assert procs.live_pid(pid_file, ("sleeper-marker",)) is None
    assert not pid_file.exists()
    pid_file.write_text("not a pid\n")
    assert procs.live_pid(pid_file, ()) is None
    assert not pid_file.exists()


def test_terminate_escalates_to_sigkill_for_the_whole_group(
    sleeper: subprocess.Popen[bytes],
) -> None:
    assert os.getpgid(sleeper.pid) == sleeper.pid  # its own session and group
    procs.terminate(sleeper.pid, grace=0.5)  # SIGTERM is ignored: SIGKILL after the grace
    # Killed by SIGKILL (-9), not SIGTERM: the escalation happened. No wall-clock bound:
    # a busy machine may take seconds to reap it.
    assert sleeper.wait(timeout=300) == -9
    assert not procs.group_alive(sleeper.pid)


def test_stop_is_harmless_when_nothing_runs(tmp_path: Path) -> None:
    assert stop({se.SERVE_DIR_ENV: str(tmp_path / "never-started")}) == {}
    state = tmp_path / "stale"
    state.mkdir()
    (state / "server.pid").write_text("999999999\n")
    assert stop({se.SERVE_DIR_ENV: str(state)}) == {}
    assert not (state / "server.pid").exists()


def test_port_free_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not procs.port_free("127.0.0.1", sock.getsockname()[1])


# -- the real thing ---------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """Free ports below Linux's ephemeral range (32768-60999): a port from bind(0) can be
    taken a moment later as the source port of one of the many local connections a start
    makes (seen once with the S3 port)."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(20000, 32000)
        if port not in ports and procs.port_free("127.0.0.1", port):
            ports.append(port)
    return ports


def _listeners(port: int) -> list[str]:
    """Local addresses listening on ``port`` (from /proc/net/tcp and tcp6), hex as the kernel."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


def _lifecycle(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m cli.main server ARGS``, in a child forked from a warm process."""
    return forked_cli.run("cli.main", ["server", *args], env=env, cwd=PROJECT_ROOT, timeout=240)


def _check_the_webhook(
    env: dict[str, str], port: int, intake_port: int, output: str, creds: se.Credentials
) -> None:
    """The intake's signed webhook through the stack (``tests.ops.test_intake_server``); then
    the flow run it created is deleted: nothing here asserts what the worker makes of it, and
    a run executing beside the second start only slows that down."""
    check_signed_webhook_through_the_served_stack(env, port, intake_port, output, creds)
    api = f"http://127.0.0.1:{port}/api"
    ours = {"deployments": {"name": {"any_": ["subject-request"]}}}  # not the scheduled ones
    status, runs = request(f"{api}/flow_runs/filter", creds.auth_string, ours)
    assert status == 200 and len(runs) == 1, (status, runs)
    deleted = request(f"{api}/flow_runs/{runs[0]['id']}", creds.auth_string, method="DELETE")
    assert deleted[0] == 204


def _check_deployments(api: str, auth: str) -> None:
    """Every deployment of prefect.yaml, schema-enforced, on the local pool; one sweep at a time."""
    status, deployments = request(f"{api}/deployments/filter", auth, {})
    assert status == 200
    by_name = {d["name"]: d for d in deployments}
    assert set(by_name) == {
        "subject-request",
        "subject-batch",
        "cancel-request",
        "audit-verify",
        "retention-sweep",
        "transfer-check",
        "request-register",
        "inventory-drift",
        "incident-report",
        "incident-assessment",
        "incident-deadlines",
    }
    assert all(d["enforce_parameter_schema"] for d in by_name.values())
    assert all(d["work_pool_name"] == "lifecycle-local" for d in by_name.values())
    sweep = by_name["retention-sweep"]  # one sweep at a time; a second run queues
    assert sweep["global_concurrency_limit"]["limit"] == 1
    assert sweep["concurrency_options"]["collision_strategy"] == "ENQUEUE"


_AUTOMATION = {"automations": {"name": {"any_": [unresponsive_runs.NAME]}}}


def _automation_windows(api: str, auth: str) -> list[int]:
    found = request(f"{api}/automations/filter", auth, _AUTOMATION)[1]
    return [a["trigger"]["within"] for a in found]


def _age_the_automation(api: str, auth: str) -> None:
    """Make the unresponsive-runs automation look like an older version's (shorter window)."""
    (made,) = request(f"{api}/automations/filter", auth, _AUTOMATION)[1]
    old = unresponsive_runs.automation()
    old["trigger"]["within"] = 150
    assert request(f"{api}/automations/{made['id']}", auth, old, method="PUT")[0] == 204
    assert _automation_windows(api, auth) == [150]


def _check_the_demo_provider(state: Path, port: int, output: str) -> None:
    """The demo's provider: loopback only, its secret owner-only in the state folder and
    given to flow runs (and the env file), never printed."""
    assert _listeners(port) == ["0100007F"]
    secret = (state / "provider-secret").read_text().strip()
    assert (state / "provider-secret").stat().st_mode & 0o777 == 0o600
    assert secret not in output
    env_file = (state / "env").read_text()
    assert f"LIFECYCLE_NEWSLETTER_ENDPOINT=http://127.0.0.1:{port}" in env_file
    assert f"LIFECYCLE_NEWSLETTER_SECRET={secret}" in env_file
    assert ping(f"http://127.0.0.1:{port}", secret)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux /proc")
def test_start_twice_then_stop(tmp_path: Path) -> None:
    state = tmp_path / "serve"
    port, s3_port, intake_port, provider_port = _free_ports(4)
    # Without the session's stub provider (tests/conftest.py): the stack starts its own.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "LIFECYCLE_NEWSLETTER_"))
    }
    env.update(
        LIFECYCLE_SERVE_DIR=str(state),
        LIFECYCLE_SERVE_PORT=str(port),
        LIFECYCLE_SERVE_S3_PORT=str(s3_port),
        LIFECYCLE_INTAKE_PORT=str(intake_port),
        LIFECYCLE_SERVE_PROVIDER_PORT=str(provider_port),
        COLUMNS="200",
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        first = _lifecycle(env, "start")
        assert first.returncode == 0, first.stdout + first.stderr
        creds = se.read_credentials(state / "credentials")
        assert (state / "credentials").stat().st_mode & 0o777 == 0o600
        assert f"http://127.0.0.1:{port}" in first.stdout
        assert str(state / "credentials") in first.stdout
        assert creds.password not in first.stdout + first.stderr
        pids = {p.name: procs.read_pid(state / f"{p.name}.pid") for p in PROCS}
        assert all(pids.values()), pids

        # Basic auth: refused without the credentials, accepted with them.
        assert request(f"{api}/deployments/filter", body={})[0] == 401
        assert request(f"{api}/deployments/filter", "admin:wrong", {})[0] == 401
        _check_deployments(api, creds.auth_string)

        url = f"{api}/work_pools/lifecycle-local/workers/filter"
        workers = request(url, creds.auth_string, {})[1]
        assert any(w["status"] == "ONLINE" for w in workers), workers

        _check_the_webhook(env, port, intake_port, first.stdout, creds)

        # Loopback only: 0100007F is 127.0.0.1; nothing on 0.0.0.0 or IPv6.
        assert _listeners(port) == ["0100007F"]
        assert _listeners(s3_port) == ["0100007F"]
        _check_the_demo_provider(state, provider_port, first.stdout + first.stderr)

        _age_the_automation(api, creds.auth_string)
        second = _lifecycle(env, "start")
        assert second.returncode == 0, second.stdout + second.stderr
        assert "already running" in second.stdout
        assert f"updated the {unresponsive_runs.NAME} automation" in second.stdout
        assert {p.name: procs.read_pid(state / f"{p.name}.pid") for p in PROCS} == pids
        # Runs whose process dies are marked Crashed: one automation, not one per start.
        assert _automation_windows(api, creds.auth_string) == [unresponsive_runs.SILENCE_SECONDS]

        status_run = _lifecycle(env, "status", "--json")
        assert status_run.returncode == 0, status_run.stdout + status_run.stderr
        info = json.loads(status_run.stdout)
        assert info["running"] is True
        assert (info["intake"], info["processes"]["intake"]["alive"]) == ("ok", True)
    finally:
        stopped = _lifecycle(env, "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "intake: stopped" in stopped.stdout
    assert procs.port_free("127.0.0.1", intake_port)
    for proc in PROCS:
        pid = pids[proc.name]
        assert pid is not None
        assert not procs.process_alive(pid, ())
        assert not procs.group_alive(pid)
        assert not (state / f"{proc.name}.pid").exists()
    assert _listeners(port) == []
    assert _lifecycle(env, "status").returncode == 3
