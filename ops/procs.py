"""Process primitives for ``lifecycle server``: pid files, detached children, process groups.

Children run in sessions of their own (``start_new_session``), so a child's pid is also its
process group id and ``terminate`` ends everything it started. A recorded pid is trusted
only while that process is ours and its arguments still match (pids get reused).
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

STOP_GRACE_S = 15.0


def read_pid(path: Path) -> int | None:
    """The pid recorded in ``path``; None when there is no file or it holds no pid."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def process_alive(pid: int, marker: Sequence[str]) -> bool:
    """Whether ``pid`` is a live process of ours whose arguments include every ``marker``.

    The marker guards against pid reuse: after a reboot or a crash the recorded pid may
    belong to an unrelated process, which must never be signalled. A zombie counts as dead.
    Where there is no ``/proc`` only existence is checked.
    """
    proc = Path("/proc") / str(pid)
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    try:
        if proc.stat().st_uid != os.getuid():
            return False
        state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        args = {a.decode(errors="replace") for a in (proc / "cmdline").read_bytes().split(b"\0")}
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and all(m in args for m in marker)


def live_pid(path: Path, marker: Sequence[str]) -> int | None:
    """The recorded pid if that process still runs; a stale pid file is removed."""
    pid = read_pid(path)
    if pid is not None and process_alive(pid, marker):
        return pid
    path.unlink(missing_ok=True)
    return None


def write_pid(path: Path, pid: int) -> None:
    path.write_text(f"{pid}\n", encoding="ascii")


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` (so a server can bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ("" when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def spawn(
    args: Sequence[str], env: dict[str, str], cwd: Path, log: Path, pid_file: Path
) -> subprocess.Popen[bytes]:
    """Start ``args`` detached (a session of its own, output to ``log``); record its pid."""
    with log.open("wb") as out:
        child = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    write_pid(pid_file, child.pid)
    return child


def run(args: Sequence[str], env: dict[str, str], cwd: Path, log: Path) -> tuple[int, str]:
    """Run a short command to completion, its output saved to ``log``: (exit code, output)."""
    result = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    output = result.stdout + result.stderr
    log.write_text(output)
    return result.returncode, output


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in process group ``pgid``."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except OSError:
            return False
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def terminate(pid: int, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL whatever is left after ``grace``.

    (A process that does not lead its group, which ``spawn`` never produces, is signalled
    alone.)
    """
    try:
        group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return
    kill = os.killpg if group else os.kill

    def gone() -> bool:
        return not group_alive(pid) if group else not process_alive(pid, ())

    for sig, timeout in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while not gone():
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        else:
            return


@contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (concurrent starts and stops run in turn)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with lock_file.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
