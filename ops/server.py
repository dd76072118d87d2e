"""Run the product as a service: a local Prefect server, work pool, deployments and a worker.

``start`` brings up, each only if it is not already running: the Prefect server on
127.0.0.1 with basic authentication (SQLite in the state folder unless
``PREFECT_API_DATABASE_CONNECTION_URL`` says otherwise), the demo's local S3 when the demo
configuration needs one (``ops.demo_setup``), the audit database's migrations, the
``lifecycle-local`` process work pool, every deployment in ``prefect.yaml`` (re-deployed on
each start: cheap, and picks up edits) and a process worker. Their pids are recorded in the
state folder and ``stop`` ends exactly those process groups (``ops.procs``). A lock file
serializes concurrent starts and stops. What each process gets is in ``ops.serve_env``.

Deployments need no pull step: ``prefect deploy`` records a ``set_working_directory`` step
with the directory it ran in, the repository root, so flow runs import ``flows.*`` in place.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from config.settings import PROJECT_ROOT
from core.errors import LifecycleError
from ops import demo_setup, procs
from ops import serve_env as se
from ops.prefect_api import api_state, deployments, request, worker_online

Say = Callable[[str], None]

SERVER_START_TIMEOUT_S = 120.0
WORKER_ONLINE_TIMEOUT_S = 60.0
S3_START_TIMEOUT_S = 30.0
DEPLOYMENTS = (
    "subject-request",
    "cancel-request",
    "audit-verify",
    "retention-sweep",
    "transfer-check",
)


@dataclass(frozen=True)
class Proc:
    """A process ``start`` runs: its name (pid and log file), label, and argv marker."""

    name: str
    label: str
    marker: tuple[str, ...]  # arguments it must have, so a reused pid is never signalled


SERVER = Proc("server", "the Prefect server", ("server", "start", "--host", se.HOST))
S3 = Proc("s3", "the local S3", ("ops.local_s3",))
WORKER = Proc("worker", "the worker", ("worker", "start", "--pool", se.POOL))
PROCS = (SERVER, S3, WORKER)  # start order; stop goes the other way


class ServeError(LifecycleError):
    """Starting failed; ``details`` holds the log lines that say why."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class Instance:
    """One local service: its state folder, ports and the repository it deploys."""

    paths: se.ServePaths
    port: int
    s3_port: int
    repo: Path = PROJECT_ROOT

    @property
    def api_url(self) -> str:
        return se.api_url(self.port)

    @property
    def ui_url(self) -> str:
        return se.ui_url(self.port)

    @property
    def s3_endpoint(self) -> str:
        return f"http://{se.HOST}:{self.s3_port}"


def instance(environ: Mapping[str, str]) -> Instance:
    return Instance(
        paths=se.serve_paths(environ),
        port=se.port_setting(environ, se.PORT_ENV, se.DEFAULT_PORT),
        s3_port=se.port_setting(environ, se.S3_PORT_ENV, se.DEFAULT_S3_PORT),
    )


@dataclass
class StartReport:
    """What ``start`` did and where everything is."""

    inst: Instance
    credentials: se.Credentials
    new_credentials: bool
    pids: dict[str, int] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    deployments: list[str] = field(default_factory=list)
    s3_endpoint: str | None = None


# -- start --------------------------------------------------------------------------------------


def _prefect(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("prefect")
    return [*([str(exe)] if exe.exists() else [sys.executable, "-m", "prefect"]), *args]


def _run(inst: Instance, args: list[str], env: dict[str, str], name: str, what: str) -> str:
    log = inst.paths.log_file(name)
    code, output = procs.run(args, env, inst.repo, log)
    if code != 0:
        raise ServeError(f"{what} failed (exit {code}; see {log})", procs.tail(log))
    return output


def _ensure(
    inst: Instance,
    proc: Proc,
    report: StartReport,
    say: Say,
    launch: tuple[list[str], dict[str, str], Path, int | None],
    *,
    ready: Callable[[], bool],
    timeout: float,
) -> int:
    """Start ``proc`` unless its recorded pid still runs, then wait until ``ready()``."""
    args, env, cwd, port = launch
    pid_file, log = inst.paths.pid_file(proc.name), inst.paths.log_file(proc.name)
    pid = procs.live_pid(pid_file, proc.marker)
    child = None
    if pid is None:
        if port is not None and not procs.port_free(se.HOST, port):
            variable = se.PORT_ENV if proc is SERVER else se.S3_PORT_ENV
            raise ServeError(f"port {port} on {se.HOST} is taken: set {variable} to a free port")
        say(f"starting {proc.label} ...")
        child = procs.spawn(args, env, cwd, log, pid_file)
        pid = child.pid
        report.started.append(proc.name)
    deadline = time.monotonic() + timeout
    while not ready():
        if child is not None and child.poll() is not None:
            raise ServeError(f"{proc.label} exited during start (see {log})", procs.tail(log))
        if time.monotonic() > deadline:
            raise ServeError(
                f"{proc.label} not ready in {timeout:.0f} s (see {log})", procs.tail(log)
            )
        time.sleep(0.5)
    report.pids[proc.name] = pid
    return pid


def _server(
    inst: Instance, creds: se.Credentials, environ: Mapping[str, str], report: StartReport, say: Say
) -> None:
    running = procs.live_pid(inst.paths.pid_file(SERVER.name), SERVER.marker)
    if running is not None and not procs.process_alive(running, ("--port", str(inst.port))):
        raise ServeError(f"the Prefect server (pid {running}) uses another port: stop it first")
    args = _prefect("server", "start", "--host", se.HOST, "--port", str(inst.port))
    env = se.server_env(environ, inst.paths, inst.port, creds)
    launch = (args, env, inst.paths.home, inst.port)

    def answering() -> bool:
        return api_state(inst.api_url, creds.auth_string) not in ("down", "starting")

    pid = _ensure(
        inst, SERVER, report, say, launch, ready=answering, timeout=SERVER_START_TIMEOUT_S
    )
    state = api_state(inst.api_url, creds.auth_string)
    if state != "ok":
        why = {"open": "answers without credentials", "refused": "refuses the credentials"}
        raise ServeError(
            f"the Prefect server (pid {pid}) {why.get(state, 'stopped answering')}: "
            "run `lifecycle server stop`, then start again",
            procs.tail(inst.paths.log_file(SERVER.name)),
        )


def _s3(
    inst: Instance, environ: Mapping[str, str], report: StartReport, say: Say
) -> dict[str, str]:
    from ops.local_s3 import ready

    args = [sys.executable, "-m", "ops.local_s3", "--port", str(inst.s3_port)]
    env = {k: v for k, v in environ.items() if not k.startswith("PREFECT_")}
    launch = (args, env, inst.repo, inst.s3_port)
    _ensure(
        inst,
        S3,
        report,
        say,
        launch,
        ready=lambda: ready(inst.s3_endpoint),
        timeout=S3_START_TIMEOUT_S,
    )
    report.s3_endpoint = inst.s3_endpoint
    return demo_setup.s3_env(inst.s3_endpoint)


def _pool(inst: Instance, creds: se.Credentials, env: dict[str, str], say: Say) -> None:
    status, pool = request(f"{inst.api_url}/work_pools/{se.POOL}", creds.auth_string)
    if status == 200:
        if pool.get("type") != "process":
            raise ServeError(f"work pool {se.POOL} exists with type {pool.get('type')!r}")
        return
    say(f"creating the process work pool {se.POOL}")
    args = _prefect("work-pool", "create", se.POOL, "--type", "process")
    _run(inst, args, env, "work-pool", "creating the work pool")


def _worker(
    inst: Instance, creds: se.Credentials, env: dict[str, str], report: StartReport, say: Say
) -> None:
    args = _prefect("worker", "start", "--pool", se.POOL, "--type", "process")
    launch = ([*args, "--name", se.WORKER_NAME], env, inst.repo, None)
    running = procs.live_pid(inst.paths.pid_file(WORKER.name), WORKER.marker)
    since = None if running else datetime.now(UTC) - timedelta(seconds=1)

    def online() -> bool:  # a new worker: its own heartbeat, not a stopped one's record
        return worker_online(inst.api_url, creds.auth_string, since)

    _ensure(inst, WORKER, report, say, launch, ready=online, timeout=WORKER_ONLINE_TIMEOUT_S)


def start(say: Say, environ: Mapping[str, str] | None = None) -> StartReport:
    """Bring everything up, keeping what already runs; what runs and where."""
    environ = os.environ if environ is None else environ
    inst = instance(environ)
    with procs.locked(inst.paths.lock_file):
        inst.paths.home.mkdir(parents=True, exist_ok=True)
        creds, created = se.ensure_credentials(inst.paths.credentials)
        report = StartReport(inst=inst, credentials=creds, new_credentials=created)
        _server(inst, creds, environ, report, say)
        s3_env: dict[str, str] = {}
        if demo_setup.needs_local_s3(environ):
            s3_env = _s3(inst, environ, report, say)
        else:  # a local S3 of an earlier start is no longer wanted
            _stop_one(inst, S3)
        env = se.client_env(environ, inst.paths, inst.port, creds, s3_env)
        se.write_private(inst.paths.env_file, se.env_file_text(se.shell_env(env, s3_env)))
        migrate = [sys.executable, "-m", "cli.main", "db", "upgrade"]
        say(
            " ".join(_run(inst, migrate, env, "db-upgrade", "migrating the audit database").split())
        )
        demo_setup.seed_demo_crm(say)
        _pool(inst, creds, env, say)
        say("deploying everything in prefect.yaml")
        _run(inst, _prefect("--no-prompt", "deploy", "--all"), env, "deploy", "prefect deploy")
        report.deployments = deployments(inst.api_url, creds.auth_string)
        missing = sorted(set(DEPLOYMENTS) - set(report.deployments))
        if missing:
            raise ServeError(f"not deployed by prefect deploy: {', '.join(missing)}")
        _worker(inst, creds, env, report, say)
    return report


# -- stop and status ----------------------------------------------------------------------------


def _stop_one(inst: Instance, proc: Proc) -> int | None:
    pid_file = inst.paths.pid_file(proc.name)
    pid = procs.live_pid(pid_file, proc.marker)  # a stale pid file goes too
    if pid is not None:
        procs.terminate(pid)
        pid_file.unlink(missing_ok=True)
    return pid


def stop(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """Stop every recorded process (worker, S3, server); the pids that were stopped."""
    inst = instance(os.environ if environ is None else environ)
    if not inst.paths.root.is_dir():
        return {}
    stopped: dict[str, int] = {}
    with procs.locked(inst.paths.lock_file):
        for proc in reversed(PROCS):
            pid = _stop_one(inst, proc)
            if pid is not None:
                stopped[proc.name] = pid
    return stopped


def status(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What runs (pid, alive), where, and whether the API, deployments and worker are up."""
    inst = instance(os.environ if environ is None else environ)
    processes: dict[str, dict[str, Any]] = {}
    for proc in PROCS:
        pid = procs.read_pid(inst.paths.pid_file(proc.name))
        alive = pid is not None and procs.process_alive(pid, proc.marker)
        log = str(inst.paths.log_file(proc.name))
        processes[proc.name] = {"pid": pid, "alive": alive, "log": log}
    result: dict[str, Any] = {
        "url": inst.ui_url,
        "api_url": inst.api_url,
        "user": None,
        "credentials": str(inst.paths.credentials),
        "env_file": str(inst.paths.env_file),
        "processes": processes,
        "api": "down",
        "deployments": [],
        "worker_online": False,
    }
    if processes[SERVER.name]["alive"] and inst.paths.credentials.is_file():
        creds = se.read_credentials(inst.paths.credentials)
        result["user"] = creds.user
        result["api"] = api_state(inst.api_url, creds.auth_string)
        if result["api"] == "ok":
            result["deployments"] = deployments(inst.api_url, creds.auth_string)
            result["worker_online"] = worker_online(inst.api_url, creds.auth_string)
    result["running"] = bool(result["worker_online"] and processes[WORKER.name]["alive"])
    return result
