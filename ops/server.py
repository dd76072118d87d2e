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
gets is in ``ops.serve_env``; how one is started and awaited in ``ops.serve_launch``; the
work pool, its limits and workers in ``ops.serve_pool``; the demo's local S3 and provider
in ``ops.serve_demo_services``; the intake's secret and health check in
``ops.serve_intake``.

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
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ops import demo_setup, procs, unresponsive_runs
from ops import serve_demo_services as demo_services
from ops import serve_env as se
from ops.prefect_api import api_state, deployments, worker_online
from ops.serve_instance import (
    INTAKE_PORT_ENV,
    Instance,
    Proc,
    Say,
    ServeError,
    StartReport,
    instance,
)
from ops.serve_intake import intake_answers, secret_location, webhook_secret
from ops.serve_launch import prefect_command, run_step, start_and_wait, start_proc, wait_ready
from ops.serve_pool import ensure_pool, store_limits, worker_proc, worker_procs, workers_online

__all__ = [  # what callers and tests know from here (the service's parts live beside it)
    "DEPLOYMENTS",
    "INTAKE",
    "INTAKE_PORT_ENV",
    "PROCS",
    "PROVIDER",
    "S3",
    "SERVER",
    "WORKER",
    "Instance",
    "ServeError",
    "StartReport",
    "instance",
    "intake_answers",
    "secret_location",
    "start",
    "status",
    "stop",
    "webhook_secret",
    "worker_proc",
    "worker_procs",
]

SERVER_START_TIMEOUT_S = 120.0
WORKER_ONLINE_TIMEOUT_S = 60.0
INTAKE_START_TIMEOUT_S = 60.0
PREFECT_YAML = "prefect.yaml"
DEPLOYMENTS = (
    "subject-request",
    "subject-batch",
    "cancel-request",
    "audit-verify",
    "retention-sweep",
    "transfer-check",
    "inventory-drift",
    "request-register",
    "incident-report",
    "incident-assessment",
    "incident-deadlines",
)


SERVER = Proc("server", "the Prefect server", ("server", "start", "--host", se.HOST), se.PORT_ENV)
S3 = Proc("s3", "the local S3", ("ops.local_s3",), se.S3_PORT_ENV)
PROVIDER = Proc("provider", "the local provider", ("ops.local_provider",), se.PROVIDER_PORT_ENV)
WORKER = worker_proc(1)
INTAKE = Proc("intake", "the intake service", ("ops.intake",), INTAKE_PORT_ENV)
PROCS = (SERVER, S3, PROVIDER, WORKER, INTAKE)  # start order; stop goes the other way
"""One of each; ``LIFECYCLE_SERVE_WORKERS`` adds workers 2, 3 ... (``worker_procs``)."""


# -- start --------------------------------------------------------------------------------------


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

    pid = start_and_wait(
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
    base = prefect_command("worker", "start", "--pool", se.POOL, "--type", "process")
    since = datetime.now(UTC) - timedelta(seconds=1)
    started: list[tuple[Proc, subprocess.Popen[bytes] | None]] = []
    for n in range(1, count + 1):  # all launched, then awaited: they start side by side
        proc = worker_proc(n)
        launch = ([*base, "--name", se.worker_name(n)], env, inst.repo, None)
        pid, child = start_proc(inst, proc, report, say, launch)
        report.pids[proc.name] = pid
        started.append((proc, child))
    for proc, child in started:
        name = proc.marker[-1]
        after = None if child is None else since  # a new one: its own heartbeat

        def online(name: str = name, after: datetime | None = after) -> bool:
            return name in workers_online(inst.api_url, creds.auth_string, {name}, after)

        wait_ready(inst, proc, child, ready=online, timeout=WORKER_ONLINE_TIMEOUT_S)


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
    start_and_wait(
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
            s3_env = demo_services.start_local_s3(inst, S3, environ, report, say)
        else:  # a local S3 of an earlier start is no longer wanted
            _stop_one(inst, S3)
        provider_env: dict[str, str] = {}
        provider_secret = None
        if demo_setup.needs_local_provider(environ):
            provider_env, provider_secret, new = demo_services.provider_env(inst)
            if new:  # a provider of an earlier start signs with a secret nobody has any more
                _stop_one(inst, PROVIDER)
        else:  # a local provider of an earlier start is no longer wanted
            _stop_one(inst, PROVIDER)
        # The demo's served configuration: its policy makes erasures wait for an approver.
        demo_env = {**s3_env, **provider_env, **demo_setup.served_env(inst.paths.root)}
        env = se.client_env(environ, inst.paths, inst.port, creds, demo_env)
        se.write_private(inst.paths.env_file, se.env_file_text(se.shell_env(env, demo_env)))
        migrate = [sys.executable, "-m", "cli.main", "db", "upgrade"]
        upgraded = run_step(inst, migrate, env, "db-upgrade", "migrating the audit database")
        say(" ".join(upgraded.split()))
        demo_setup.seed_demo_crm(say, s3_env)  # and the local S3's objects, once, with it
        if provider_secret is not None:
            demo_services.start_local_provider(
                inst, PROVIDER, environ, report, say, secret=provider_secret
            )
        ensure_pool(inst, creds, env, run_limit, say)
        store_limits(inst, creds, store_limit, say)
        say("deploying everything in prefect.yaml")
        deploy = prefect_command("--no-prompt", "deploy", "--all")
        run_step(inst, deploy, env, "deploy", "prefect deploy")
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
