"""Run ``python -m MODULE ARGS`` for tests in a child forked from a warm process.

A test that kills the CLI mid-run and runs it again (crash and resume) starts many
processes, and each spent 4-8 s of CPU importing Prefect and the flows before doing
anything. Here one server process per module (and Prefect API) imports them once; each
run is a child forked from it that takes the run's environment, working directory and
output files, then runs the module as ``python -m`` would (``runpy``, ``__main__``). The
child exits the way the real process would: ``os._exit(137)`` at a crash point is exit
137, an uncaught exception prints its traceback and exits 1, a signal is ``-signal``.

Nothing in the server touches settings, engines or Prefect's client before the fork;
the child refreshes Prefect's settings from its own environment. Runs on one server are
sequential (a test waits for each); concurrent runs belong in real subprocesses.

    python -m tests.forked_cli serve MODULE   # the server: jobs on stdin, replies on stdout
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WARM = (
    "prefect",
    "prefect.flows",
    "prefect.tasks",
    "prefect.client.orchestration",
    "cli.main",
    "cli.request_submit",
    "cli.request_approval",
    "cli.sweep_cmd",
    "flows.subject_request",
    "flows.retention_sweep",
    "connectors.sql.connector",
    "connectors.sql.planning",
    "connectors.sql.execute",
    "connectors.sql.verify",
    "connectors.sql.casefold",
    "connectors.s3.connector",
    "ops.intake.reference",
    "ops.intake.signing",
    # What the first flow call imports (the engines pull in graphviz, fastapi ...): 0.8 s
    # of CPU in every child otherwise.
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.utilities.visualization",
    "fastapi",
    "anyio._backends._asyncio",
    "opentelemetry.metrics",
    "email_validator",
    "sqlalchemy",
    "sqlalchemy.dialects.sqlite",
    "sqlite3",
    "boto3",
)
"""Imported by the server before any fork (what every CLI run would import anyway)."""

_SERVERS: dict[tuple[str, str, str], subprocess.Popen[str]] = {}


def _child(job: Mapping[str, object]) -> None:
    """In the forked child: become the job's process, run the module, never return."""
    import runpy
    import traceback
    import warnings

    code = 1
    try:
        env = job["env"]
        assert isinstance(env, dict)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(str(job["cwd"]))
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            target = os.open(str(job[name]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
        if "prefect.context" in sys.modules:  # settings were read when the server imported it
            from prefect.context import refresh_global_settings_context

            refresh_global_settings_context()
        module = str(job["module"])
        args = job["args"]
        assert isinstance(args, list)
        sys.argv = [module, *map(str, args)]
        with warnings.catch_warnings():
            # runpy warns that a warm module is already imported; ``python -m`` would not.
            warnings.filterwarnings("ignore", "'.*' found in sys.modules", RuntimeWarning)
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(module: str) -> None:
    """Jobs (JSON lines) from stdin; for each, ``{"pid"}`` then ``{"code"}`` on stdout."""
    import importlib

    for name in (*WARM, module):
        importlib.import_module(name)
    for line in sys.stdin:
        job = json.loads(line) | {"module": module}
        pid = os.fork()
        if pid == 0:
            _child(job)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)


def _server(module: str, env: Mapping[str, str]) -> subprocess.Popen[str]:
    key = (module, env.get("PREFECT_API_URL", ""), env.get("PREFECT_HOME", ""))
    server = _SERVERS.get(key)
    if server is None or server.poll() is not None:
        base = {k: v for k, v in env.items() if not k.startswith("LIFECYCLE_TEST_")}
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.forked_cli", "serve", module],
            env=base,
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        _SERVERS[key] = server
    return server


def _reply(server: subprocess.Popen[str], timeout: float | None) -> dict[str, int]:
    assert server.stdout is not None
    if timeout is not None:
        ready, _, _ = select.select([server.stdout], [], [], max(timeout, 0.0))
        if not ready:
            raise TimeoutError
    line = server.stdout.readline()
    if not line:
        raise RuntimeError(f"the forked-CLI server stopped (exit {server.wait()})")
    reply: dict[str, int] = json.loads(line)
    return reply


def run(
    module: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path = PROJECT_ROOT,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """What ``subprocess.run([python, "-m", module, *args], capture_output=True, text=True)``
    returns, run in a warm forked child; ``subprocess.TimeoutExpired`` after ``timeout`` s."""
    server = _server(module, env)
    assert server.stdin is not None
    with tempfile.TemporaryDirectory(prefix="forked-cli-") as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        job = {"args": list(args), "env": dict(env), "cwd": str(cwd)}
        server.stdin.write(json.dumps(job | {"stdout": str(out), "stderr": str(err)}) + "\n")
        server.stdin.flush()
        pid = _reply(server, 120)["pid"]  # the first job waits for the imports
        try:
            code = _reply(server, timeout)["code"]
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            _reply(server, 30)
            raise subprocess.TimeoutExpired([module, *args], timeout) from None
        return subprocess.CompletedProcess(
            [sys.executable, "-m", module, *args], code, out.read_text(), err.read_text()
        )


@atexit.register
def _stop_servers() -> None:
    for server in _SERVERS.values():
        if server.poll() is None:
            assert server.stdin is not None
            server.stdin.close()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if server.stdout is not None:
            server.stdout.close()
    _SERVERS.clear()


if __name__ == "__main__":
    if sys.argv[1:2] != ["serve"] or len(sys.argv) != 3:
        sys.exit("usage: python -m tests.forked_cli serve MODULE")
    serve(sys.argv[2])
