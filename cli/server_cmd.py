"""``lifecycle server``: start, stop and inspect the local Prefect server, worker and deployments.

``make serve`` runs ``start`` and ``make stop`` runs ``stop``. Everything lives in the state
folder (``var/prefect-serve/``, or ``LIFECYCLE_SERVE_DIR``); see ``ops.server``. The
password is printed only on request (``--show-password``): the credentials file holds it.
The intake service (help-desk webhook and intake page) runs beside them; its webhook
secret is never printed, only where it is.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from cli.output import JsonOption, console, err_console, handled_errors, print_json, print_table

app = typer.Typer(no_args_is_help=True)


def _say(message: str) -> None:
    console.print(escape(message), highlight=False, soft_wrap=True)


@app.command("start")
def start(
    show_password: bool = typer.Option(
        False, "--show-password", help="Also print the password (it is in the credentials file)."
    ),
) -> None:
    """Start the server, the demo's local S3 if needed, the work pool, deployments, worker
    and the intake service (help-desk webhook and intake page).

    What already runs is kept, so running it again is harmless (it re-deploys prefect.yaml).
    """
    from ops.serve_instance import ServeError
    from ops.server import start as start_all

    with handled_errors():
        try:
            report = start_all(_say)
        except ServeError as e:
            if e.details:
                err_console.print(escape(e.details), highlight=False, soft_wrap=True)
            raise
    inst, creds = report.inst, report.credentials
    for name, pid in report.pids.items():
        how = "started" if name in report.started else "already running"
        _say(f"{name}: {how} (pid {pid}, log {inst.paths.log_file(name)})")
    _say(f"deployments: {', '.join(report.deployments)} (work pool lifecycle-local)")
    console.print()
    console.print(f"[bold]Prefect UI[/]  {inst.ui_url}", highlight=False, soft_wrap=True)
    new = ", generated now" if report.new_credentials else ""
    line = f"{creds.user}:<password>{new}"
    _say(f"log in      enter the whole line of {creds.path} ({line})")
    if show_password:
        _say(f"login line  {creds.auth_string}")
    _say(f"shell       . {inst.paths.env_file}   (PREFECT_API_URL and its credentials)")
    console.print(f"[bold]Intake[/]      {inst.intake_url}/", highlight=False, soft_wrap=True)
    _say(f"page        log in as {creds.user} with the password after '{creds.user}:' above")
    new_secret = ", generated now" if report.new_webhook_secret else ""
    _say(
        f"webhook     POST {inst.intake_url}/webhook/requests, signed with the secret in "
        f"{report.webhook_secret}{new_secret} (README: Connecting a help desk)"
    )
    _say("stop        make stop   (or: lifecycle server stop)")


@app.command("stop")
def stop() -> None:
    """Stop what `start` started (by recorded process id), and the local API that commands
    start when the service is not up (runs using it fail); harmless when nothing runs."""
    from ops import local_api
    from ops.server import stop as stop_all

    with handled_errors():
        stopped = stop_all()
        local = local_api.stop()
    if not stopped and not local:
        _say("nothing was running")
    for name, pid in stopped.items():
        _say(f"{name}: stopped (pid {pid})")
    for name, pid in local.items():
        _say(f"local API {name}: stopped (pid {pid})")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _local_line(local: dict[str, Any]) -> str:
    """The local API commands share (``ops.local_api``): where, pid, idle for, stops in."""
    if not local["alive"]:
        where = local["state_dir"]
        return f"local API: not running (the next command that runs a flow starts it; {where})"
    line = f"local API {local['url']} (API: {local['api']}; pid {local['pid']})"
    if local["in_use"]:
        return f"{line}: in use by a command now"
    idle, stops = local["idle_for_s"], local["stops_in_s"]
    idle_text = "never used" if idle is None else f"idle for {_minutes(idle)}"
    return line + (f", {idle_text}" + ("" if stops is None else f", stops in {_minutes(stops)}"))


@app.command("status")
def status(as_json: bool = JsonOption) -> None:
    """What runs (pid, alive), the UI address, deployments, worker and intake, and the local
    API commands share (url, pid, idle for, stops in); exit 3 when the service is down."""
    from ops.server import status as get_status

    with handled_errors():
        info = get_status()
    if as_json:
        print_json(info)
    else:
        rows = [
            {
                "process": name,
                "pid": p["pid"],
                "alive": "yes" if p["alive"] else "no",
                "log": p["log"],
            }
            for name, p in info["processes"].items()
        ]
        print_table(rows, ["process", "pid", "alive", "log"], title="Local Prefect service")
        _say(f"UI {info['url']} (API: {info['api']}); credentials in {info['credentials']}")
        _say(f"deployments: {', '.join(info['deployments']) or 'none'}")
        _say(f"worker online: {'yes' if info['worker_online'] else 'no'}")
        _say(
            f"intake {info['intake_url']}/ ({info['intake']}); webhook secret in "
            f"{info['webhook_secret']}"
        )
        _say(_local_line(info["local_api"]))
    if not info["running"]:
        raise typer.Exit(3)
