"""Starting one process of the local service (``ops.server``) and waiting until it is ready.

A process is started only when its recorded pid does not still run (``ops.procs``), with
its own pid and log file in the state folder; a start that fails, or a process that
exits or is not ready in time, raises ``ServeError`` with the tail of its log.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ops import procs
from ops import serve_env as se
from ops.serve_instance import Instance, Proc, Say, ServeError, StartReport

READY_POLL_S = 0.1
"""Between readiness checks of a process being started (each a local request or two): a
start waits for five processes in turn, and a coarse poll added up to seconds of idling."""


def prefect_command(*args: str) -> list[str]:
    """The ``prefect`` command beside this Python, with ``args``."""
    exe = Path(sys.executable).with_name("prefect")
    return [*([str(exe)] if exe.exists() else [sys.executable, "-m", "prefect"]), *args]


def run_step(inst: Instance, args: list[str], env: dict[str, str], name: str, what: str) -> str:
    """Run a one-off step (``prefect deploy``, a migration) to its end; its output."""
    log = inst.paths.log_file(name)
    code, output = procs.run(args, env, inst.repo, log)
    if code != 0:
        raise ServeError(f"{what} failed (exit {code}; see {log})", procs.tail(log))
    return output


Launch = tuple[list[str], dict[str, str], Path, int | None]  # argv, env, cwd, port


def start_proc(
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


def start_and_wait(
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
    pid, child = start_proc(inst, proc, report, say, launch)
    wait_ready(inst, proc, child, ready=ready, timeout=timeout)
    report.pids[proc.name] = pid
    return pid


def wait_ready(
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
