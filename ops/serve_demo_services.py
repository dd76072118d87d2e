"""The demo's local S3 and local provider under the local service (``ops.server``), each
started when the demo configuration needs it (``ops.demo_setup``), and the variables flow
runs need to reach them."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from ops import demo_setup, local_provider, local_s3, procs
from ops.serve_instance import Instance, Proc, Say, ServeError, StartReport
from ops.serve_launch import start_and_wait

S3_START_TIMEOUT_S = 30.0
PROVIDER_START_TIMEOUT_S = 30.0


def start_local_s3(
    inst: Instance, proc: Proc, environ: Mapping[str, str], report: StartReport, say: Say
) -> dict[str, str]:
    """Start the local S3 (``proc``) over HTTPS with its state kept in the state folder;
    the variables that reach it."""
    tls = local_s3.tls_dir(inst.paths.root)
    old = procs.live_pid(inst.paths.pid_file(proc.name), proc.marker)
    if old is not None and not procs.process_alive(old, ("--tls-dir", "--state-dir")):
        procs.terminate(old)  # a plain-HTTP or in-memory local S3 of an older start
    args = local_s3.command(sys.executable, inst.s3_port, tls, local_s3.state_dir(inst.paths.root))
    env = {k: v for k, v in environ.items() if not k.startswith("PREFECT_")}
    launch = (args, env, inst.repo, inst.s3_port)
    start_and_wait(
        inst,
        proc,
        report,
        say,
        launch,
        ready=lambda: local_s3.ready(inst.s3_endpoint, ca=local_s3.ca_file(tls)),
        timeout=S3_START_TIMEOUT_S,
    )
    report.s3_endpoint = inst.s3_endpoint
    return demo_setup.s3_env(inst.s3_endpoint, local_s3.ca_file(tls))


def provider_env(inst: Instance) -> tuple[dict[str, str], str, bool]:
    """The local provider's variables for flow runs, its secret (made once, mode 0600) and
    whether the secret was made now (a provider already running has another one)."""
    secret, created = local_provider.ensure_secret(inst.paths.provider_secret)
    return demo_setup.provider_env(inst.provider_endpoint, secret), secret, created


def start_local_provider(
    inst: Instance,
    proc: Proc,
    environ: Mapping[str, str],
    report: StartReport,
    say: Say,
    *,
    secret: str,
) -> None:
    """Start the local provider (``proc``): after the demo CRM is seeded, since it reads it
    at start."""
    crm = demo_setup.demo_crm_file()
    if crm is None:
        raise ServeError("the demo configuration's CRM is not a SQLite file")
    args = local_provider.command(
        sys.executable, inst.provider_port, inst.paths.provider_secret, crm
    )
    env = {k: v for k, v in environ.items() if not k.startswith("PREFECT_")}
    launch = (args, env, inst.repo, inst.provider_port)
    start_and_wait(
        inst,
        proc,
        report,
        say,
        launch,
        ready=lambda: local_provider.ready(inst.provider_endpoint, secret),
        timeout=PROVIDER_START_TIMEOUT_S,
    )
    report.provider_endpoint = inst.provider_endpoint
