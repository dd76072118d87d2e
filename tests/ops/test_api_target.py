"""Which Prefect API a command uses (``ops.api_target``) and the shared local API
(``ops.local_api``): resolution order, start once (when Prefect is first imported), reuse,
concurrency, recovery, idle stop.

The local API's machinery (lock, pid and state files, watchdog, idle stop, status, stop) is
exercised with a stand-in for ``prefect server start``: a few lines of ``http.server`` that
answer like Prefect with basic auth (``/api/health`` open, the rest needing the
credentials), started through the real ``ops.procs`` with the same arguments. Commands are
separate processes (``_resolve_in_child``), as two shell commands would be. The last test,
marked slow, runs ``lifecycle request submit`` twice against one real local API.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from config.settings import PROJECT_ROOT
from core.errors import ConfigError
from ops import api_target, local_api, procs
from ops import serve_env as se

FAKE_SERVER = r"""
import base64, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port = int(sys.argv[sys.argv.index("--port") + 1])
auth = "Basic " + base64.b64encode(os.environ["PREFECT_SERVER_API_AUTH_STRING"].encode()).decode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/api/health" or self.headers.get("Authorization") == auth
        body = b'"ok"'
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

CHILD = r"""
import json, os, sys

import ops.serve_env as se

fake = sys.argv[1]
se.server_command = lambda python, port: [
    python, "-c", fake, "server", "start", "--host", se.HOST, "--port", str(port)
]
from ops.api_target import resolve

said = []
target = resolve(said.append)
if target.kind == "local":  # started when Prefect is first imported: find it, as import does
    import importlib.util

    importlib.util.find_spec("prefect")
print(json.dumps({
    "kind": target.kind,
    "url": os.environ.get("PREFECT_API_URL"),
    "said": said,
    "marker": os.environ.get("LIFECYCLE_LOCAL_API"),
    "home": os.environ.get("PREFECT_HOME"),
}))
"""


def fake_command(python: str, port: int) -> list[str]:
    return [python, "-c", FAKE_SERVER, "server", "start", "--host", se.HOST, "--port", str(port)]


@pytest.fixture
def env(isolated_settings: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A command's environment: this test's data folder, no Prefect configuration, no
    profile, the local API on (2 minutes idle); whatever it started is stopped after."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    environ |= {
        "PREFECT_PROFILES_PATH": str(tmp_path / "no-profiles.toml"),
        local_api.IDLE_ENV: "2",
    }
    yield environ
    local_api.stop(environ)
    for child in local_api._spawned:  # started in this process (ensure called in-process)
        child.wait(timeout=30)
    local_api._spawned.clear()


def _resolve_in_child(environ: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, FAKE_SERVER],
        env=environ,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _wait_for(condition: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# -- resolution order ------------------------------------------------------------------------


def test_an_explicit_api_url_wins_and_nothing_is_started(env: dict[str, str]) -> None:
    env["PREFECT_API_URL"] = "http://prefect.example.com/api"
    target = api_target.resolve(pytest.fail, env)
    assert target == api_target.Target("explicit", "http://prefect.example.com/api")
    assert not local_api.local_paths(env).root.exists()
    assert api_target.reviewer_reachable(env)


def test_the_active_profile_api_url_counts_as_explicit(env: dict[str, str], tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        'active = "work"\n[profiles.work]\nPREFECT_API_URL = "http://10.0.0.5:4200/api"\n'
    )
    env["PREFECT_PROFILES_PATH"] = str(profiles)
    target = api_target.resolve(pytest.fail, env)
    assert target.kind == "explicit"
    assert env["PREFECT_API_URL"] == "http://10.0.0.5:4200/api"  # where the CLI's checks look


def test_idle_minutes_zero_means_prefects_temporary_server(env: dict[str, str]) -> None:
    env[local_api.IDLE_ENV] = "0"
    assert api_target.resolve(pytest.fail, env) == api_target.Target("temporary", None)
    assert "PREFECT_API_URL" not in env
    assert not api_target.reviewer_reachable(env)


@pytest.mark.parametrize("value", ["soon", "-1", "99999999"])
def test_invalid_idle_minutes_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=local_api.IDLE_ENV):
        local_api.idle_minutes({local_api.IDLE_ENV: value})


def test_the_env_file_is_read_back_as_sourcing_it_would() -> None:
    values = {"PREFECT_API_URL": "http://127.0.0.1:4200/api", "X_PATH": "/a b/it's"}
    assert api_target.parse_env_file(se.env_file_text(values)) == values


class _PrefectLike(http.server.BaseHTTPRequestHandler):
    auth = ""

    def do_GET(self) -> None:
        import base64

        expected = "Basic " + base64.b64encode(self.auth.encode()).decode()
        ok = self.path.endswith("/health") or self.headers.get("Authorization") == expected
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b'"ok"')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(env: dict[str, str]) -> Iterator[se.ServePaths]:
    """A served stack's state folder as ``lifecycle server start`` leaves it: its env file,
    credentials and a live server pid, and an API answering with those credentials."""
    paths = se.serve_paths(env)
    paths.root.mkdir(parents=True)
    creds, _ = se.ensure_credentials(paths.credentials)
    handler = type("Handler", (_PrefectLike,), {"auth": creds.auth_string})
    httpd = http.server.ThreadingHTTPServer((se.HOST, 0), handler)
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    client = se.client_env(env, paths, port, creds, {"LIFECYCLE_CONFIG_DIR": "/served/config"})
    se.write_private(paths.env_file, se.env_file_text(se.shell_env(client)))
    args = [sys.executable, "-c", "import time; time.sleep(120)", "server", "start", "--host"]
    sleeper = subprocess.Popen([*args, se.HOST])
    procs.write_pid(paths.pid_file("server"), sleeper.pid)
    try:
        yield paths
    finally:
        sleeper.kill()
        sleeper.wait()
        httpd.shutdown()
        httpd.server_close()


def test_the_served_stack_is_used_without_sourcing_its_env_file(
    env: dict[str, str], served: se.ServePaths
) -> None:
    env["LIFECYCLE_CONFIG_DIR"] = "/my/config"  # set by the caller: kept
    env[api_target.LOCAL_MARKER_ENV] = "1"  # a stray marker: dropped
    target = api_target.resolve(pytest.fail, env)

    file = api_target.parse_env_file(served.env_file.read_text())
    assert target == api_target.Target("served", file["PREFECT_API_URL"])
    for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_HOME"):
        assert env[name] == file[name]
    assert env["LIFECYCLE_CONFIG_DIR"] == "/my/config"
    assert "127.0.0.1" in env["NO_PROXY"].split(",")
    assert api_target.reviewer_reachable(env)  # approvals happen in its UI
    assert not local_api.local_paths(env).root.exists()


def test_a_served_stack_whose_server_is_gone_is_passed_over(
    env: dict[str, str], served: se.ServePaths
) -> None:
    procs.write_pid(served.pid_file("server"), 2**22 + 7)  # no such process
    env[local_api.IDLE_ENV] = "0"
    assert api_target.resolve(pytest.fail, env).kind == "temporary"
    assert "PREFECT_API_URL" not in env


# -- the local API ---------------------------------------------------------------------------


def test_the_first_command_starts_the_local_api_and_the_next_reuses_it(
    env: dict[str, str],
) -> None:
    first = _resolve_in_child(env)
    assert first["kind"] == "local" and first["marker"] == "1"
    assert len(first["said"]) == 1 and "starting a local Prefect API" in first["said"][0]
    paths = local_api.local_paths(env)
    assert first["home"] == str(paths.home)
    pid, port = local_api.server_pid(paths)
    assert pid is not None and first["url"] == se.api_url(port or 0)
    assert paths.credentials.stat().st_mode & 0o777 == 0o600

    second = _resolve_in_child(env)
    assert second["url"] == first["url"] and second["said"] == []  # reused, silently
    assert local_api.server_pid(paths)[0] == pid
    as_the_command = {"PREFECT_API_URL": first["url"], api_target.LOCAL_MARKER_ENV: "1"}
    assert not api_target.reviewer_reachable(as_the_command)  # nobody answers a pause there


def test_a_command_that_stops_before_running_a_flow_starts_nothing(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "request", "submit", "--kind", "erasure"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr  # no --identity: a usage error
    assert "local Prefect API" not in done.stderr
    assert local_api.server_pid(local_api.local_paths(env)) == (None, None)


def test_two_commands_at_once_start_one_local_api(env: dict[str, str]) -> None:
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(_resolve_in_child, [env, env]))
    assert results[0]["url"] == results[1]["url"]
    assert sum(len(r["said"]) for r in results) == 1


def test_a_dead_or_foreign_pid_is_recovered_on_a_fresh_port(env: dict[str, str]) -> None:
    first = _resolve_in_child(env)
    paths = local_api.local_paths(env)
    pid, _ = local_api.server_pid(paths)
    assert pid is not None
    os.killpg(pid, 9)  # kill -9: the pid file stays behind
    assert _wait_for(lambda: local_api.server_pid(paths)[0] is None)
    # ... and the pid is given to a process that is not ours to signal
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        procs.write_pid(paths.pid_file("server"), stranger.pid)
        second = _resolve_in_child(env)
        assert second["said"] and second["kind"] == "local"
        assert stranger.poll() is None  # untouched
        assert local_api.server_pid(paths)[0] not in (None, pid, stranger.pid)
        creds = se.read_credentials(paths.credentials)
        assert first["url"] and local_api.answers(second["url"], creds)
    finally:
        stranger.kill()
        stranger.wait()


def test_a_live_server_that_does_not_answer_is_replaced(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(se, "server_command", fake_command)
    monkeypatch.setattr(local_api, "HUNG_GRACE_S", 0.5)
    monkeypatch.setattr(local_api, "_held", [])  # this test process holds nothing afterwards
    paths = local_api.local_paths(env)
    paths.root.mkdir(parents=True)
    port = local_api._free_port()
    se.write_private(paths.state_file, json.dumps({"port": port, "idle_minutes": 2}))
    hung = subprocess.Popen(  # ours, with the arguments, but never answering
        [sys.executable, "-c", "import time; time.sleep(60)", *local_api.server_marker(port)],
        start_new_session=True,
    )
    try:
        procs.write_pid(paths.pid_file("server"), hung.pid)
        said: list[str] = []
        api = local_api.ensure(said.append, env)
        assert api.started and said
        assert hung.wait(timeout=30) is not None  # stopped
        assert local_api.answers(api.api_url, api.credentials)
    finally:
        if hung.poll() is None:
            hung.kill()
        hung.wait()
        for handle in local_api._held:
            handle.close()


def test_status_shows_the_local_api_and_stop_ends_it(env: dict[str, str]) -> None:
    first = _resolve_in_child(env)
    info = local_api.status(env)
    assert info["alive"] and info["api"] == "ok" and info["api_url"] == first["url"]
    assert not info["in_use"]  # the command has ended
    assert 0 <= info["idle_for_s"] <= 120 and 0 < info["stops_in_s"] <= 120
    assert info["watchdog"] is not None

    stopped = local_api.stop(env)
    assert set(stopped) == {"server", "watchdog"}
    assert not procs.process_alive(stopped["server"], ())
    assert local_api.status(env)["alive"] is False


def test_the_local_api_stops_itself_once_idle_but_not_while_in_use(env: dict[str, str]) -> None:
    env[local_api.IDLE_ENV] = "0.02"  # 1.2 s; the watchdog looks every 0.5 s
    _resolve_in_child(env)
    paths = local_api.local_paths(env)
    pid, _ = local_api.server_pid(paths)
    assert pid is not None
    with paths.in_use.open("a") as handle:  # a command running: never stopped under it
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_SH)
        time.sleep(4)
        assert local_api.server_pid(paths)[0] == pid
        assert local_api.status(env)["in_use"]
    assert _wait_for(lambda: local_api.server_pid(paths)[0] is None, timeout=60)
    assert _wait_for(lambda: not paths.pid_file("watchdog").exists(), timeout=30)
    assert not procs.process_alive(pid, ())

    again = _resolve_in_child(env)  # the next command starts a new one
    assert again["said"]


def test_a_deleted_state_folder_does_not_leave_the_server_running(env: dict[str, str]) -> None:
    env[local_api.IDLE_ENV] = "0.5"  # idle stop after 30 s; the watchdog looks every 6 s
    _resolve_in_child(env)
    paths = local_api.local_paths(env)
    pid, port = local_api.server_pid(paths)
    assert pid is not None and port is not None
    import shutil

    shutil.rmtree(paths.root)  # e.g. a test's temporary folder, or `make clean`
    try:
        assert _wait_for(lambda: not procs.process_alive(pid, local_api.server_marker(port)), 25)
    finally:
        if procs.process_alive(pid, local_api.server_marker(port)):
            procs.terminate(pid)


# -- a real local API, used by two requests -------------------------------------------------


def _servers_in(home: Path) -> list[int]:
    """Pids of ``python -m ops.prefect_sqlite`` processes working in ``home``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = (proc / "cwd").resolve()
        except OSError:
            continue
        if args[1:3] == [b"-m", b"ops.prefect_sqlite"] and cwd == home:
            found.append(int(proc.name))
    return found


@pytest.mark.slow
def test_requests_reuse_one_real_local_api(
    env: dict[str, str], isolated_settings: Path, local_s3: Any
) -> None:
    from demo.seed_sql import seed_crm

    data = seed_crm(f"sqlite:///{isolated_settings / 'crm.db'}", customers=20)
    env |= {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "LIFECYCLE_"))}
    env.pop("LIFECYCLE_CONFIG_DIR", None)  # the demo configuration
    env[local_api.IDLE_ENV] = "5"
    lifecycle = [sys.executable, "-m", "cli.main"]

    def submit(email: str) -> subprocess.CompletedProcess[str]:
        args = [*lifecycle, "request", "submit", "--kind", "erasure"]
        return subprocess.run(
            [*args, "--identity", f"email={email}", "--json"],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=280,
            check=False,
        )

    first = submit(data.subject.email.lower())
    assert first.returncode == 0, first.stderr[-3000:]
    assert "starting a local Prefect API" in first.stderr
    paths = local_api.local_paths(env)
    pid, _ = local_api.server_pid(paths)
    assert pid is not None

    second = submit("nobody@example.com")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "starting a local Prefect API" not in second.stderr
    assert json.loads(second.stdout)["status"] == "completed"
    assert local_api.server_pid(paths)[0] == pid
    assert _servers_in(paths.home) == [pid]  # no second server process

    status = subprocess.run(
        [*lifecycle, "server", "status", "--json"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    local = json.loads(status.stdout)["local_api"]
    assert local["alive"] and local["pid"] == pid and local["api"] == "ok"
    assert data.subject.email.lower() not in (first.stdout + first.stderr).lower()
