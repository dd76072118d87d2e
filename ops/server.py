"""Run the product as a service: a local Prefect server, work pool, deployments and a worker.

``start`` brings up, each only if it is not already running: the Prefect server on
127.0.0.1 with basic authentication (SQLite in the state folder unless
``LIFECYCLE_SERVE_DATABASE`` or ``PREFECT_API_DATABASE_CONNECTION_URL`` names a PostgreSQL
database), the demo's local S3 and its local stub provider (``ops.local_provider``, after
the demo CRM it reads is seeded) when the demo configuration needs them
(``ops.demo_setup``), the audit database's migrations, the ``lifecycle-local`` process
work pool (its concurrency limit set from ``LIFECYCLE_SERVE_RUN_LIMIT``, none when unset),
every deployment in ``prefect.yaml`` (re-deployed on each start: cheap, and picks up
edits), ``LIFECYCLE_SERVE_WORKERS`` process workers (default 1; each its own name, pid file
and log) and the intake service
(``ops.intake``: the help-desk webhook and intake page, on 127.0.0.1, with the worker's
environment; its webhook secret is generated in the data folder when none is set). Their
pids are recorded in the state folder and ``stop`` ends exactly those process groups
(``ops.procs``). A lock file serializes concurrent starts and stops. What each process
gets is in ``ops.serve_env``.

Deployments need no pull step: ``prefect deploy`` records a ``set_working_directory`` step
with the directory it ran in, the repository root, so flow runs import ``flows.*`` in place.
So ``start`` needs the project's checkout (``prefect.yaml`` beside the code): an installed
wheel has none and ``start`` says so before doing anything (``lifecycle demo`` and the
other commands run installed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from config.settings import PROJECT_ROOT, Settings, data_dir_from
from core.errors import LifecycleError
from ops import demo_setup, local_provider, local_s3, procs, unresponsive_runs
from ops import serve_env as se
from ops.prefect_api import api_state, deployments, request, worker_online

Say = Callable[[str], None]

SERVER_START_TIMEOUT_S = 120.0
WORKER_ONLINE_TIMEOUT_S = 60.0
S3_START_TIMEOUT_S = 30.0
PROVIDER_START_TIMEOUT_S = 30.0
INTAKE_START_TIMEOUT_S = 60.0
READY_POLL_S = 0.1
"""Between readiness checks of a process being started (each a local request or two): a
start waits for five processes in turn, and a coarse poll added up to seconds of idling."""
INTAKE_PORT_ENV = "LIFECYCLE_INTAKE_PORT"
PREFECT_YAML = "prefect.yaml"
DEFAULT_INTAKE_PORT: int = Settings.model_fields["intake_port"].default
DEPLOYMENTS = (
    "subject-request",
    "subject-batch",
    "cancel-request",
    "audit-verify",
    "retention-sweep",
    "transfer-check",
    "request-register",
)


@dataclass(frozen=True)
class Proc:
    """A process ``start`` runs: its name (pid and log file), label, and argv marker."""

    name: str
    label: str
    marker: tuple[str, ...]  # arguments it must have, so a reused pid is never signalled
    port_env: str = ""  # the variable that moves its port, named when the port is taken


def worker_proc(n: int) -> Proc:
    """Worker ``n`` (from 1): its pid and log file, and its name in Prefect as the marker."""
    label = "the worker" if n == 1 else f"worker {n}"
    marker = ("worker", "start", "--pool", se.POOL, "--name", se.worker_name(n))
    return Proc(se.worker_proc(n), label, marker)


SERVER = Proc("server", "the Prefect server", ("server", "start", "--host", se.HOST), se.PORT_ENV)
S3 = Proc("s3", "the local S3", ("ops.local_s3",), se.S3_PORT_ENV)
PROVIDER = Proc("provider", "the local provider", ("ops.local_provider",), se.PROVIDER_PORT_ENV)
WORKER = worker_proc(1)
INTAKE = Proc("intake", "the intake service", ("ops.intake",), INTAKE_PORT_ENV)
PROCS = (SERVER, S3, PROVIDER, WORKER, INTAKE)  # start order; stop goes the other way
"""One of each; ``LIFECYCLE_SERVE_WORKERS`` adds workers 2, 3 ... (``worker_procs``)."""


class ServeError(LifecycleError):
    """Starting failed; ``details`` holds the log lines that say why."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class Instance:
    """One local service: its state folder, ports and the repository it deploys (the
    checkout holding ``prefect.yaml``)."""

    paths: se.ServePaths
    port: int
    s3_port: int
    intake_port: int = DEFAULT_INTAKE_PORT
    provider_port: int = se.DEFAULT_PROVIDER_PORT
    repo: Path = PROJECT_ROOT

    @property
    def api_url(self) -> str:
        return se.api_url(self.port)

    @property
    def ui_url(self) -> str:
        return se.ui_url(self.port)

    @property
    def s3_endpoint(self) -> str:
        return local_s3.endpoint(self.s3_port)  # HTTPS, with a CA of its own

    @property
    def intake_url(self) -> str:
        return f"http://{se.HOST}:{self.intake_port}"

    @property
    def provider_endpoint(self) -> str:
        return local_provider.endpoint(self.provider_port)


def instance(environ: Mapping[str, str]) -> Instance:
    return Instance(
        paths=se.serve_paths(environ),
        port=se.port_setting(environ, se.PORT_ENV, se.DEFAULT_PORT),
        s3_port=se.port_setting(environ, se.S3_PORT_ENV, se.DEFAULT_S3_PORT),
        intake_port=se.port_setting(environ, INTAKE_PORT_ENV, DEFAULT_INTAKE_PORT),
        provider_port=se.port_setting(environ, se.PROVIDER_PORT_ENV, se.DEFAULT_PROVIDER_PORT),
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
    provider_endpoint: str | None = None
    webhook_secret: str = ""  # where the intake's webhook secret is: a file or a variable
    new_webhook_secret: bool = False


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


Launch = tuple[list[str], dict[str, str], Path, int | None]  # argv, env, cwd, port


def _launch(
    inst: Instance, proc: Proc, report: StartReport, say: Say, launch: Launch
) -> tuple[int, subprocess.Popen[bytes] | None]:
    """Start ``proc`` unless its recorded pid still runs: its pid, and the child if new."""
    args, env, cwd, port = launch
    pid_file, log = inst.paths.pid_file(proc.name), inst.paths.log_file(proc.name)
    pid = procs.live_pid(pid_file, proc.marker)
    if pid is not None:
        return pid, None
    if port is not None and not procs.port_free(se.HOST, port):
        raise ServeError(f"port {port} on {se.HOST} is taken: set {proc.port_env} to a free port")
    say(f"starting {proc.label} ...")
    child = procs.spawn(args, env, cwd, log, pid_file)
    report.started.append(proc.name)
    return child.pid, child


def _ensure(
    inst: Instance,
    proc: Proc,
    report: StartReport,
    say: Say,
    launch: Launch,
    *,
    ready: Callable[[], bool],
    timeout: float,
) -> int:
    """Start ``proc`` unless its recorded pid still runs, then wait until ``ready()``."""
    pid, child = _launch(inst, proc, report, say, launch)
    _await(inst, proc, child, ready=ready, timeout=timeout)
    report.pids[proc.name] = pid
    return pid


def _await(
    inst: Instance,
    proc: Proc,
    child: subprocess.Popen[bytes] | None,
    *,
    ready: Callable[[], bool],
    timeout: float,
) -> None:
    """Wait until ``ready()``; a ServeError with the log's tail when ``child`` exits first
    or ``timeout`` passes."""
    log = inst.paths.log_file(proc.name)
    deadline = time.monotonic() + timeout
    while not ready():
        if child is not None and child.poll() is not None:
            raise ServeError(f"{proc.label} exited during start (see {log})", procs.tail(log))
        if time.monotonic() > deadline:
            raise ServeError(
                f"{proc.label} not ready in {timeout:.0f} s (see {log})", procs.tail(log)
            )
        time.sleep(READY_POLL_S)


def _server(
    inst: Instance, creds: se.Credentials, environ: Mapping[str, str], report: StartReport, say: Say
) -> None:
    running = procs.live_pid(inst.paths.pid_file(SERVER.name), SERVER.marker)
    if running is not None and not procs.process_alive(running, ("--port", str(inst.port))):
        raise ServeError(f"the Prefect server (pid {running}) uses another port: stop it first")
    args = se.server_command(sys.executable, inst.port)  # SQLite with secure_delete
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


def _unresponsive_runs(inst: Instance, creds: se.Credentials, say: Say) -> None:
    try:
        done = unresponsive_runs.ensure(inst.api_url, creds.auth_string)
        if done is not None:
            say(f"{done} the {unresponsive_runs.NAME} automation (runs whose process died)")
    except (OSError, RuntimeError) as e:
        name = unresponsive_runs.NAME
        raise ServeError(f"the Prefect server refused the {name} automation: {e}") from e


def _s3(
    inst: Instance, environ: Mapping[str, str], report: StartReport, say: Say
) -> dict[str, str]:
    tls = local_s3.tls_dir(inst.paths.root)
    old = procs.live_pid(inst.paths.pid_file(S3.name), S3.marker)
    if old is not None and not procs.process_alive(old, ("--tls-dir", "--state-dir")):
        procs.terminate(old)  # a plain-HTTP or in-memory local S3 of an older start
    args = local_s3.command(sys.executable, inst.s3_port, tls, local_s3.state_dir(inst.paths.root))
    env = {k: v for k, v in environ.items() if not k.startswith("PREFECT_")}
    launch = (args, env, inst.repo, inst.s3_port)
    _ensure(
        inst,
        S3,
        report,
        say,
        launch,
        ready=lambda: local_s3.ready(inst.s3_endpoint, ca=local_s3.ca_file(tls)),
        timeout=S3_START_TIMEOUT_S,
    )
    report.s3_endpoint = inst.s3_endpoint
    return demo_setup.s3_env(inst.s3_endpoint, local_s3.ca_file(tls))


def _provider_env(inst: Instance) -> tuple[dict[str, str], str]:
    """The local provider's variables for flow runs, and its secret (made once, mode 0600)."""
    secret, created = local_provider.ensure_secret(inst.paths.provider_secret)
    if created:  # a provider of an earlier start signs with a secret nobody has any more
        _stop_one(inst, PROVIDER)
    return demo_setup.provider_env(inst.provider_endpoint, secret), secret


def _provider(
    inst: Instance, environ: Mapping[str, str], secret: str, report: StartReport, say: Say
) -> None:
    """Start the local provider: after the demo CRM is seeded, since it reads it at start."""
    crm = demo_setup.demo_crm_file()
    if crm is None:
        raise ServeError("the demo configuration's CRM is not a SQLite file")
    args = local_provider.command(
        sys.executable, inst.provider_port, inst.paths.provider_secret, crm
    )
    env = {k: v for k, v in environ.items() if not k.startswith("PREFECT_")}
    launch = (args, env, inst.repo, inst.provider_port)
    _ensure(
        inst,
        PROVIDER,
        report,
        say,
        launch,
        ready=lambda: local_provider.ready(inst.provider_endpoint, secret),
        timeout=PROVIDER_START_TIMEOUT_S,
    )
    report.provider_endpoint = inst.provider_endpoint


def _pool(
    inst: Instance, creds: se.Credentials, env: dict[str, str], limit: int | None, say: Say
) -> None:
    """Create the process work pool if missing; give it ``limit`` as its concurrency limit
    (None: none), which the server applies over every worker on every machine."""
    url = f"{inst.api_url}/work_pools/{se.POOL}"
    status, pool = request(url, creds.auth_string)
    if status == 200:
        if pool.get("type") != "process":
            raise ServeError(f"work pool {se.POOL} exists with type {pool.get('type')!r}")
    else:
        say(f"creating the process work pool {se.POOL}")
        args = _prefect("work-pool", "create", se.POOL, "--type", "process")
        _run(inst, args, env, "work-pool", "creating the work pool")
        pool = {}
    if pool.get("concurrency_limit") != limit:
        body = {"concurrency_limit": limit}
        if request(url, creds.auth_string, body, method="PATCH")[0] != 204:
            raise ServeError(f"the Prefect server refused the concurrency limit of {se.POOL}")
        say(
            f"work pool {se.POOL}: "
            + (f"at most {limit} flow runs at once" if limit else "no run limit")
        )


def _store_limits(inst: Instance, creds: se.Credentials, limit: int | None, say: Say) -> None:
    """A tag concurrency limit of ``limit`` task runs per inventory store (``store:<name>``),
    so many runs on many workers do not overrun one database; None removes them."""
    from config.loader import load_config

    stores = [store.name for store in load_config().inventory.stores]
    for store in stores:
        tag = f"{se.STORE_TAG_PREFIX}{store}"
        if limit is None:
            request(
                f"{inst.api_url}/concurrency_limits/tag/{tag}", creds.auth_string, method="DELETE"
            )
            continue
        body = {"tag": tag, "concurrency_limit": limit}
        if request(f"{inst.api_url}/concurrency_limits/", creds.auth_string, body)[0] not in (
            200,
            201,
        ):
            raise ServeError(f"the Prefect server refused the concurrency limit of store {store}")
    if limit is not None:
        say(f"stores {', '.join(stores)}: at most {limit} task runs at once each")


def workers_online(
    api_url: str, auth: str, names: Collection[str], since: datetime | None = None
) -> set[str]:
    """Which of the workers ``names`` the server has ONLINE, with a heartbeat after
    ``since`` if given (so a record left by a worker just stopped does not count)."""
    status, workers = request(f"{api_url}/work_pools/{se.POOL}/workers/filter", auth, {})
    online = set()
    for worker in workers if status == 200 and workers else []:
        beat = worker.get("last_heartbeat_time")
        if worker.get("name") not in names or worker.get("status") != "ONLINE" or not beat:
            continue
        when = datetime.fromisoformat(beat.replace("Z", "+00:00"))
        if since is None or when.replace(tzinfo=when.tzinfo or UTC) >= since:
            online.add(worker["name"])
    return online


def worker_procs(environ: Mapping[str, str]) -> list[Proc]:
    """Every worker ``status`` should show: those ``LIFECYCLE_SERVE_WORKERS`` asks for and
    any other with a pid file (started with a larger count), in order."""
    inst = instance(environ)
    wanted = range(1, se.worker_count(environ) + 1)
    return [worker_proc(n) for n in sorted({*wanted, *se.recorded_workers(inst.paths)})]


def _workers(
    inst: Instance,
    creds: se.Credentials,
    env: dict[str, str],
    report: StartReport,
    say: Say,
    *,
    count: int,
) -> None:
    """Run workers 1 to ``count`` (each with its own name, pid file and log) and wait until
    each is online; workers above ``count`` left from an earlier start are stopped."""
    for n in se.recorded_workers(inst.paths):
        if n > count:
            _stop_one(inst, worker_proc(n))
    base = _prefect("worker", "start", "--pool", se.POOL, "--type", "process")
    since = datetime.now(UTC) - timedelta(seconds=1)
    started: list[tuple[Proc, subprocess.Popen[bytes] | None]] = []
    for n in range(1, count + 1):  # all launched, then awaited: they start side by side
        proc = worker_proc(n)
        launch = ([*base, "--name", se.worker_name(n)], env, inst.repo, None)
        pid, child = _launch(inst, proc, report, say, launch)
        report.pids[proc.name] = pid
        started.append((proc, child))
    for proc, child in started:
        name = proc.marker[-1]
        after = None if child is None else since  # a new one: its own heartbeat

        def online(name: str = name, after: datetime | None = after) -> bool:
            return name in workers_online(inst.api_url, creds.auth_string, {name}, after)

        _await(inst, proc, child, ready=online, timeout=WORKER_ONLINE_TIMEOUT_S)


def secret_location(environ: Mapping[str, str]) -> tuple[str, Path | None]:
    """Where the webhook secret comes from: its variable, or its file (and that path)."""
    from ops.intake.signing import SECRET_ENV, secret_file

    if environ.get(SECRET_ENV, "").strip():
        return SECRET_ENV, None
    path = secret_file(data_dir_from(environ))
    return str(path), path


def webhook_secret(env: Mapping[str, str]) -> tuple[str, bool]:
    """Where the webhook secret is (its file generated when missing); made now or not."""
    from ops.intake.signing import ensure_secret_file

    where, path = secret_location(env)
    return where, path is not None and ensure_secret_file(path)


def intake_answers(url: str) -> bool:
    """Whether the intake service answers its health check."""
    try:
        return bool(request(f"{url}/healthz", timeout=2.0)[0] == 200)
    except (OSError, ValueError):
        return False


def _intake(
    inst: Instance, creds: se.Credentials, env: dict[str, str], report: StartReport, say: Say
) -> None:
    report.webhook_secret, report.new_webhook_secret = webhook_secret(env)
    running = procs.live_pid(inst.paths.pid_file(INTAKE.name), INTAKE.marker)
    if running is not None and not procs.process_alive(running, ("--port", str(inst.intake_port))):
        raise ServeError(f"the intake service (pid {running}) uses another port: stop it first")
    port = str(inst.intake_port)
    args = [sys.executable, "-m", "ops.intake", "--port", port, "--credentials", str(creds.path)]
    launch = (args, env, inst.repo, inst.intake_port)
    _ensure(
        inst,
        INTAKE,
        report,
        say,
        launch,
        ready=lambda: intake_answers(inst.intake_url),
        timeout=INTAKE_START_TIMEOUT_S,
    )


def _require_checkout(inst: Instance) -> None:
    """Refuse to start without the project's checkout: ``prefect deploy`` needs prefect.yaml."""
    if not (inst.repo / PREFECT_YAML).is_file():
        raise ServeError(
            f"`lifecycle server start` needs the project's checkout ({PREFECT_YAML} and the "
            f"code beside it; this installation at {inst.repo} has none): run it, or "
            "`make serve`, from a clone of the repository"
        )


def _without_own_endpoints(environ: Mapping[str, str], inst: Instance) -> dict[str, str]:
    """``environ`` less the local S3's and local provider's endpoints of this service.

    The sourceable env file sets them; an operator who sourced it and runs ``make stop`` /
    ``make serve`` in that shell still wants the local S3 and provider started, not taken
    for external ones that a stopped service no longer answers.
    """
    from demo.provider import ENDPOINT_ENV

    own = {"LIFECYCLE_S3_ENDPOINT": inst.s3_endpoint, ENDPOINT_ENV: inst.provider_endpoint}
    return {
        k: v
        for k, v in environ.items()
        if k not in own or v.strip().rstrip("/") != own[k].rstrip("/")
    }


def start(say: Say, environ: Mapping[str, str] | None = None) -> StartReport:
    """Bring everything up, keeping what already runs; what runs and where."""
    environ = os.environ if environ is None else environ
    inst = instance(environ)
    kept = _without_own_endpoints(environ, inst)
    if environ is os.environ:  # the configuration is read from it (``${LIFECYCLE_S3_ENDPOINT}``)
        for name in set(environ) - set(kept):
            del os.environ[name]
    environ = kept
    _require_checkout(inst)
    # Checked before anything starts: a bad value changes nothing.
    workers, run_limit = se.worker_count(environ), se.run_limit(environ)
    store_limit = se.store_limit(environ)
    se.database_url(environ)
    with procs.locked(inst.paths.lock_file):
        inst.paths.home.mkdir(parents=True, exist_ok=True)
        creds, created = se.ensure_credentials(inst.paths.credentials)
        report = StartReport(inst=inst, credentials=creds, new_credentials=created)
        _server(inst, creds, environ, report, say)
        _unresponsive_runs(inst, creds, say)
        s3_env: dict[str, str] = {}
        if demo_setup.needs_local_s3(environ):
            s3_env = _s3(inst, environ, report, say)
        else:  # a local S3 of an earlier start is no longer wanted
            _stop_one(inst, S3)
        provider_env: dict[str, str] = {}
        provider_secret = None
        if demo_setup.needs_local_provider(environ):
            provider_env, provider_secret = _provider_env(inst)
        else:  # a local provider of an earlier start is no longer wanted
            _stop_one(inst, PROVIDER)
        # The demo's served configuration: its policy makes erasures wait for an approver.
        demo_env = {**s3_env, **provider_env, **demo_setup.served_env(inst.paths.root)}
        env = se.client_env(environ, inst.paths, inst.port, creds, demo_env)
        se.write_private(inst.paths.env_file, se.env_file_text(se.shell_env(env, demo_env)))
        migrate = [sys.executable, "-m", "cli.main", "db", "upgrade"]
        say(
            " ".join(_run(inst, migrate, env, "db-upgrade", "migrating the audit database").split())
        )
        demo_setup.seed_demo_crm(say, s3_env)  # and the local S3's objects, once, with it
        if provider_secret is not None:
            _provider(inst, environ, provider_secret, report, say)
        _pool(inst, creds, env, run_limit, say)
        _store_limits(inst, creds, store_limit, say)
        say("deploying everything in prefect.yaml")
        _run(inst, _prefect("--no-prompt", "deploy", "--all"), env, "deploy", "prefect deploy")
        report.deployments = deployments(inst.api_url, creds.auth_string)
        missing = sorted(set(DEPLOYMENTS) - set(report.deployments))
        if missing:
            raise ServeError(f"not deployed by prefect deploy: {', '.join(missing)}")
        _workers(inst, creds, env, report, say, count=workers)
        _intake(inst, creds, env, report, say)
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
    """Stop every recorded process (intake, worker, provider, S3, server); the pids stopped."""
    inst = instance(os.environ if environ is None else environ)
    if not inst.paths.root.is_dir():
        return {}
    stopped: dict[str, int] = {}
    with procs.locked(inst.paths.lock_file):
        for proc in reversed(PROCS):
            every = [worker_proc(n) for n in se.recorded_workers(inst.paths)]
            for one in every if proc is WORKER else [proc]:
                pid = _stop_one(inst, one)
                if pid is not None:
                    stopped[one.name] = pid
    return stopped


def status(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What runs (pid, alive), where, and whether the API, deployments, worker and intake
    are up."""
    environ = os.environ if environ is None else environ
    inst = instance(environ)
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
        "intake_url": inst.intake_url,
        "intake": "down",
        "webhook_secret": secret_location(environ)[0],
    }
    if processes[INTAKE.name]["alive"] and intake_answers(inst.intake_url):
        result["intake"] = "ok"
    if processes[SERVER.name]["alive"] and inst.paths.credentials.is_file():
        creds = se.read_credentials(inst.paths.credentials)
        result["user"] = creds.user
        result["api"] = api_state(inst.api_url, creds.auth_string)
        if result["api"] == "ok":
            result["deployments"] = deployments(inst.api_url, creds.auth_string)
            result["worker_online"] = worker_online(inst.api_url, creds.auth_string)
    worker_up = result["worker_online"] and processes[WORKER.name]["alive"]
    result["running"] = bool(worker_up and result["intake"] == "ok")
    from ops import local_api  # the API commands share when this service is not up

    result["local_api"] = local_api.status(environ)
    return result
