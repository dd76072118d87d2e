"""A local Prefect API that commands start once and share until it has been idle a while.

Without ``PREFECT_API_URL`` and without a running ``lifecycle server`` (``make serve``),
each command that runs a flow used to get Prefect's temporary server: 10-60 s of start-up
per command. Instead the first such command starts ``prefect server start`` detached, in a
state folder of its own (``prefect-local/`` in the data folder: ``var/prefect-local/`` by
default), on a free loopback port with basic authentication (the same pieces as the served
stack: ``ops.serve_env`` builds the server's command and environment, ``ops.procs`` starts
and stops it), and later commands reuse it (``ops.api_target``).

It stops itself: beside it runs a small watchdog (``python -m ops.local_api watch ROOT
MINUTES PID PORT``) that stops the server once no command has used it for
``LIFECYCLE_LOCAL_API_IDLE_MINUTES`` (default 15; ``0`` turns the local API off: each
command gets Prefect's temporary server again). "Used" is two things: every command touches
``last-used`` when it starts and when it ends, and holds a shared lock on ``in-use`` while it
runs (its flow runs run in it); the watchdog stops the server only when ``last-used`` is
stale and it can take ``in-use`` exclusively, under the start lock (``local.lock``), so a
command either reuses a server that will keep running or waits and starts a new one. A lock
dies with its process, so a killed command never keeps the server alive. When the state
folder (or the server's pid file) is deleted, the watchdog stops the server it was started
for, which nothing could find any more.

State it keeps and recovers from: ``server.pid`` and ``watchdog.pid`` (trusted only while
the process is ours with matching arguments: ``ops.procs``), ``state.json`` (port, idle
minutes), ``credentials`` (mode 0600), ``home/`` (PREFECT_HOME, its SQLite database) and
the logs. A dead pid means start again on a fresh free port; a live server that does not
answer with its credentials within a few seconds is stopped and replaced, never waited on.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from config.settings import data_dir_from
from core.errors import ConfigError, LifecycleError
from ops import procs
from ops import serve_env as se
from ops.prefect_api import api_state, request

Say = Callable[[str], None]

LOCAL_DIR_NAME = "prefect-local"
IDLE_ENV = "LIFECYCLE_LOCAL_API_IDLE_MINUTES"
DEFAULT_IDLE_MINUTES = 15.0
START_TIMEOUT_S = 120.0
HUNG_GRACE_S = 5.0
"""How long a live server that does not answer gets before it is replaced."""
READY_POLL_S = 0.1
SERVER = "server"
WATCHDOG = "watchdog"
_held: list[IO[str]] = []  # this process's shared locks on ``in-use``: held until it exits
_spawned: list[subprocess.Popen[bytes]] = []
"""Detached children started here: they outlive this process; kept referenced so none is
collected (and warned about as still running) while it runs."""


class LocalApiError(LifecycleError):
    """The local API could not be started; ``details`` holds its log's last lines."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class LocalPaths(se.ServePaths):
    """The local API's state folder (the served stack's layout, plus what sharing needs)."""

    @property
    def lock_file(self) -> Path:
        return self.root / "local.lock"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def last_used(self) -> Path:
        return self.root / "last-used"

    @property
    def in_use(self) -> Path:
        return self.root / "in-use"


@dataclass(frozen=True)
class LocalApi:
    """A running local API: where it answers, with which credentials, and its pid."""

    paths: LocalPaths
    port: int
    pid: int
    credentials: se.Credentials
    started: bool  # by this call

    @property
    def api_url(self) -> str:
        return se.api_url(self.port)


def local_paths(environ: Mapping[str, str]) -> LocalPaths:
    """``prefect-local/`` in the data folder ``environ`` selects, as an absolute path."""
    return LocalPaths((data_dir_from(environ) / LOCAL_DIR_NAME).resolve())


def idle_minutes(environ: Mapping[str, str]) -> float:
    """``LIFECYCLE_LOCAL_API_IDLE_MINUTES`` (default 15; 0: no local API)."""
    raw = environ.get(IDLE_ENV, "").strip()
    if not raw:
        return DEFAULT_IDLE_MINUTES
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 7 * 24 * 60:
        raise ConfigError(f"{IDLE_ENV}={raw!r} is not a number of minutes (0 turns it off)")
    return value


def server_marker(port: int) -> tuple[str, ...]:
    """Arguments the local server's process must have (guards against pid reuse)."""
    return ("server", "start", "--host", se.HOST, "--port", str(port))


def watchdog_marker(paths: LocalPaths) -> tuple[str, ...]:
    return ("ops.local_api", "watch", str(paths.root))


def read_state(paths: LocalPaths) -> dict[str, Any]:
    try:
        state = json.loads(paths.state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def server_pid(paths: LocalPaths) -> tuple[int | None, int | None]:
    """(pid, port) of the recorded server if it still runs as ours; else (None, port)."""
    port = read_state(paths).get("port")
    port = port if isinstance(port, int) else None
    pid = procs.read_pid(paths.pid_file(SERVER))
    if pid is None or port is None or not procs.process_alive(pid, server_marker(port)):
        return None, port
    return pid, port


def idle_seconds(paths: LocalPaths) -> float | None:
    """Seconds since a command last used the local API (None: never)."""
    try:
        return max(0.0, time.time() - paths.last_used.stat().st_mtime)
    except OSError:
        return None


def touch(paths: LocalPaths) -> None:
    """Mark the local API used now."""
    paths.last_used.touch()
    os.utime(paths.last_used)


def touch_at_exit(paths: LocalPaths) -> None:
    """``touch``, at this process's exit: idle time counts from the end of the last use."""
    import atexit

    def quietly() -> None:
        with suppress(OSError):  # the folder is gone (deleted, a test's): nothing to mark
            touch(paths)

    atexit.register(quietly)


def hold(paths: LocalPaths) -> None:
    """Take a shared lock on ``in-use`` for the rest of this process (see the module doc)."""
    if _held:
        return
    handle = paths.in_use.open("a")
    fcntl.flock(handle, fcntl.LOCK_SH)
    _held.append(handle)


@contextmanager
def _unused(paths: LocalPaths) -> Iterator[bool]:
    """Whether no command holds ``in-use`` now; held exclusively while the block runs."""
    with paths.in_use.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def in_use(paths: LocalPaths) -> bool:
    """Whether a command using the local API runs now."""
    if not paths.in_use.exists():
        return False
    with _unused(paths) as unused:
        return not unused


# -- start ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((se.HOST, 0))
        return int(sock.getsockname()[1])


def answers(url: str, creds: se.Credentials) -> bool:
    """Whether the API at ``url`` accepts ``creds`` (one request: the server is ours, on the
    port recorded beside its pid, and started with authentication)."""
    try:
        return bool(request(f"{url}/admin/version", creds.auth_string, timeout=2.0)[0] == 200)
    except (OSError, ValueError):
        return False


def _answers(url: str, creds: se.Credentials, within: float) -> bool:
    deadline = time.monotonic() + within
    while not answers(url, creds):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _without_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment less what a Prefect server or the watchdog has no use for:
    Prefect's settings (a stray API URL or database), the product's (master key, served
    stack) and AWS credentials."""
    return {
        k: v for k, v in environ.items() if not k.startswith(("PREFECT_", "LIFECYCLE_", "AWS_"))
    }


def _spawn_server(
    paths: LocalPaths, creds: se.Credentials, environ: Mapping[str, str], minutes: float
) -> tuple[int, int]:
    """Start the server on a free port and wait until it answers; (pid, port)."""
    log = paths.log_file(SERVER)
    for attempt in (1, 2):  # a port taken between choosing and binding it: once more
        port = _free_port()
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        state = {"port": port, "idle_minutes": minutes, "started": stamp}
        se.write_private(paths.state_file, json.dumps(state) + "\n")
        args = se.server_command(sys.executable, port)
        # Its own SQLite database: none of the caller's Prefect, product or AWS settings.
        own = _without_secrets(environ)
        env = se.server_env(own, paths, port, creds)
        child = procs.spawn(args, env, paths.home, log, paths.pid_file(SERVER))
        _spawned.append(child)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(se.api_url(port), creds):
            if child.poll() is not None:
                break
            if time.monotonic() > deadline:
                procs.terminate(child.pid)
                paths.pid_file(SERVER).unlink(missing_ok=True)
                raise LocalApiError(
                    f"the local Prefect API did not answer in {START_TIMEOUT_S:.0f} s (see {log})",
                    procs.tail(log),
                )
            time.sleep(READY_POLL_S)
        else:
            return child.pid, port
        paths.pid_file(SERVER).unlink(missing_ok=True)
        if attempt == 1 and "address already in use" in procs.tail(log, 10).lower():
            continue
        break
    raise LocalApiError(f"the local Prefect API exited during start (see {log})", procs.tail(log))


def _ensure_watchdog(
    paths: LocalPaths, environ: Mapping[str, str], minutes: float, server: tuple[int, int]
) -> None:
    if procs.live_pid(paths.pid_file(WATCHDOG), watchdog_marker(paths)) is not None:
        return
    args = [sys.executable, "-m", "ops.local_api", "watch", str(paths.root), f"{minutes:g}"]
    args += [str(n) for n in server]  # the server's pid and port, should its record vanish
    env = _without_secrets(environ)
    _spawned.append(
        procs.spawn(args, env, paths.root, paths.log_file(WATCHDOG), paths.pid_file(WATCHDOG))
    )


def ensure(say: Say, environ: Mapping[str, str] | None = None) -> LocalApi:
    """The running local API, started first when none answers (saying so); marks it used by
    this process until it exits (``touch`` now and at exit, ``hold``)."""
    environ = os.environ if environ is None else environ
    paths, minutes = local_paths(environ), idle_minutes(environ)
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with procs.locked(paths.lock_file):
        paths.home.mkdir(exist_ok=True)
        creds, _ = se.ensure_credentials(paths.credentials)
        pid, port = server_pid(paths)
        if pid is not None and port is not None:
            if _answers(se.api_url(port), creds, HUNG_GRACE_S):
                touch(paths)
                hold(paths)
                kept = read_state(paths).get("idle_minutes")
                minutes = kept if isinstance(kept, int | float) else minutes
                _ensure_watchdog(paths, environ, minutes, (pid, port))
                return LocalApi(paths, port, pid, creds, started=False)
            procs.terminate(pid)  # ours, alive, but not answering: replace it
        paths.pid_file(SERVER).unlink(missing_ok=True)
        say(
            "starting a local Prefect API for this and later commands (stops after "
            f"{minutes:g} min idle; `lifecycle server status` shows it) ..."
        )
        pid, port = _spawn_server(paths, creds, environ, minutes)
        touch(paths)
        hold(paths)
        _ensure_watchdog(paths, environ, minutes, (pid, port))
        return LocalApi(paths, port, pid, creds, started=True)


# -- stop, status, watchdog --------------------------------------------------------------------


def _stop_locked(paths: LocalPaths) -> dict[str, int]:
    stopped: dict[str, int] = {}
    pid, _ = server_pid(paths)
    if pid is not None:
        procs.terminate(pid)
        stopped[SERVER] = pid
    paths.pid_file(SERVER).unlink(missing_ok=True)
    return stopped


def stop(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """Stop the local API and its watchdog (even while a command uses it); the pids stopped."""
    paths = local_paths(os.environ if environ is None else environ)
    if not paths.root.is_dir():
        return {}
    with procs.locked(paths.lock_file):
        stopped = _stop_locked(paths)
        dog = procs.live_pid(paths.pid_file(WATCHDOG), watchdog_marker(paths))
        if dog is not None:
            procs.terminate(dog)
            paths.pid_file(WATCHDOG).unlink(missing_ok=True)
            stopped[WATCHDOG] = dog
    return stopped


def status(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The local API: url, pid, alive, API state, idle for / stops in (seconds), in use."""
    paths = local_paths(os.environ if environ is None else environ)
    pid, port = server_pid(paths)
    state = read_state(paths)
    minutes = state.get("idle_minutes")
    result: dict[str, Any] = {
        "state_dir": str(paths.root),
        "url": None if port is None else se.ui_url(port),
        "api_url": None if port is None else se.api_url(port),
        "pid": pid,
        "alive": pid is not None,
        "api": "down",
        "idle_minutes": minutes,
        "idle_for_s": None,
        "stops_in_s": None,
        "in_use": False,
        "watchdog": procs.read_pid(paths.pid_file(WATCHDOG)),
        "log": str(paths.log_file(SERVER)),
    }
    if pid is None or port is None:
        return result
    if paths.credentials.is_file():
        result["api"] = api_state(
            se.api_url(port), se.read_credentials(paths.credentials).auth_string
        )
    idle = idle_seconds(paths)
    result["in_use"] = in_use(paths)
    result["idle_for_s"] = None if idle is None else round(idle)
    if not result["in_use"] and idle is not None and isinstance(minutes, int | float):
        result["stops_in_s"] = round(max(0.0, minutes * 60 - idle))
    return result


def _poll_seconds(idle_s: float) -> float:
    return min(30.0, max(0.5, idle_s / 5))


def _stop_unrecorded(seen: tuple[int, int] | None) -> None:
    """Stop the server last seen running when its record is gone (its pid file or the whole
    state folder deleted): nothing else could find it to stop it."""
    if seen is not None and procs.process_alive(seen[0], server_marker(seen[1])):
        procs.terminate(seen[0])


def watch(root: Path, minutes: float, server: tuple[int, int] | None = None) -> int:
    """The watchdog: stop the server once unused for ``minutes``; end when it is gone.
    ``server``: the pid and port of the server it was started for."""
    paths = LocalPaths(root)
    idle_s = minutes * 60
    seen = server
    while True:
        time.sleep(_poll_seconds(idle_s))
        if not paths.root.is_dir():
            _stop_unrecorded(seen)
            return 0
        pid, port = server_pid(paths)
        if pid is not None and port is not None:
            seen = (pid, port)
        idle = idle_seconds(paths)
        if pid is not None and (idle is None or idle < idle_s):
            continue
        with procs.locked(paths.lock_file):  # decided under the lock commands start under
            if server_pid(paths)[0] is not None:
                idle = idle_seconds(paths)
                if idle is not None and idle < idle_s:
                    continue
                with _unused(paths) as unused:
                    if not unused:
                        continue
                    _stop_locked(paths)
            else:
                _stop_unrecorded(seen)
            paths.pid_file(WATCHDOG).unlink(missing_ok=True)
            return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ops.local_api watch ROOT MINUTES [PID PORT]`` (started by ``ensure``)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 5) or args[0] != "watch":
        sys.stderr.write("usage: python -m ops.local_api watch ROOT MINUTES [PID PORT]\n")
        return 2
    server = (int(args[3]), int(args[4])) if len(args) == 5 else None
    return watch(Path(args[1]), float(args[2]), server)


if __name__ == "__main__":
    sys.exit(main())
