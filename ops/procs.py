"""Process primitives for ``lifecycle server``: pid files, detached children, process groups,
and their logs.

Children run in sessions of their own (``start_new_session``), so a child's pid is also its
process group id and ``terminate`` ends everything it started. A recorded pid is trusted
only while that process is ours and its arguments still match (pids get reused).

Logs are appended, never truncated, and rotated by size: ``spawn`` writes a marker line with
the start time, then the child's output goes through a pipe to a small log pump (``pump``)
that appends it to ``name.log`` and, before a write would take the file past
``LOG_MAX_BYTES``, renames it to ``name.log.1`` (``.1`` to ``.2`` and so on, keeping
``LOG_KEEP``). The pump is forked by the child itself just before it executes the real
program (``python ops/procs.py --log ... -- ARGS``), so the recorded pid is the program's
own, the pump is in its process group (``terminate`` reaches it; it ignores SIGTERM and
ends when the last writer has closed the pipe), and a long-running server's log stays
bounded, not only from one start to the next.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import BinaryIO, NoReturn

STOP_GRACE_S = 15.0
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_KEEP = 5
LOG_MODE = 0o600
_CHUNK = 64 * 1024


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


# -- logs -------------------------------------------------------------------------------------


def rotated(log: Path, n: int) -> Path:
    """The ``n``-th older generation of ``log`` (``server.log.1`` is the newest of them)."""
    return log.with_name(f"{log.name}.{n}")


def rotate(log: Path, keep: int = LOG_KEEP) -> None:
    """``log`` becomes ``log.1``, ``log.1`` becomes ``log.2`` ...; ``log.<keep>`` is dropped
    (and any older generation a larger ``keep`` left)."""
    n = keep
    while rotated(log, n).exists():
        rotated(log, n).unlink(missing_ok=True)
        n += 1
    for n in range(keep - 1, 0, -1):
        if rotated(log, n).exists():
            rotated(log, n).replace(rotated(log, n + 1))
    if log.exists():
        log.replace(rotated(log, 1))


class RotatingLog:
    """Appends bytes to ``path`` (mode 0600), never past ``max_bytes`` a file: before that,
    the file is rotated (``rotate``). Output is split at a line end where one fits, so a
    line stays whole unless it is longer than a whole file."""

    def __init__(self, path: Path, max_bytes: int = LOG_MAX_BYTES, keep: int = LOG_KEEP) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._out: BinaryIO | None = None
        self._size = 0

    def _open(self) -> BinaryIO:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_MODE)
        info = os.fstat(fd)
        if info.st_mode & 0o777 != LOG_MODE and info.st_uid == os.getuid():
            os.fchmod(fd, LOG_MODE)  # whatever the umask, or an older log's mode, said
        self._size = info.st_size
        out = os.fdopen(fd, "ab", buffering=0)
        self._out = out
        return out

    def _rotate(self) -> None:
        self.close()
        rotate(self.path, self.keep)

    def write(self, data: bytes) -> None:
        while data:
            out = self._out or self._open()
            room = self.max_bytes - self._size
            if len(data) <= room:
                out.write(data)
                self._size += len(data)
                return
            cut = data.rfind(b"\n", 0, max(room, 0)) + 1  # 0: no line end fits
            if not cut:
                if self._size:  # start a new file rather than split a line
                    self._rotate()
                    continue
                cut = room  # a line longer than a whole file
            out.write(data[:cut])
            data = data[cut:]
            self._rotate()

    def close(self) -> None:
        out, self._out = self._out, None
        self._size = 0
        if out is not None:
            out.close()


def _program(args: Sequence[str]) -> str:
    """What ``args`` runs, in a few words: ``python -m ops.local_s3``, ``prefect worker start``.

    Only the program's name, a ``-m`` module and leading subcommands: never option values or
    inline code, which may be long, and which a check reading the log for a word must not
    find in the marker.
    """
    words = [Path(args[0]).name] if args else []
    rest = list(args[1:])
    if rest[:1] == ["-m"] and len(rest) > 1:
        words += rest[:2]
        rest = rest[2:]
    for arg in rest[:3]:
        if arg.startswith("-") or not arg.replace("-", "").replace("_", "").isalnum():
            break
        words.append(arg)
    return " ".join(words)


def start_marker(args: Sequence[str], now: datetime | None = None) -> bytes:
    """The line ``spawn`` writes to a log before each start: the time and the program."""
    when = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    return f"===== {when} starting {_program(args)} =====\n".encode()


def pump(source: int, log: RotatingLog) -> None:
    """Copy everything from the file descriptor ``source`` to ``log`` until end of file.

    A failed write (a full disk) drops that output rather than stop reading: a pipe nobody
    reads would block the program writing to it.
    """
    while chunk := os.read(source, _CHUNK):
        try:
            log.write(chunk)
        except OSError:
            log.close()  # reopened (and its size re-read) by the next write
    log.close()


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A handler doing nothing: unlike SIG_IGN it is not inherited across exec."""


def exec_with_pump(args: Sequence[str], log: Path, max_bytes: int, keep: int) -> NoReturn:
    """Fork the log pump, send this process's output to it, then become ``args`` (same pid)."""
    read_end, write_end = os.pipe()
    if os.fork() == 0:  # the pump: in our process group, reading until every writer is gone
        os.close(write_end)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, _ignore)
        try:
            pump(read_end, RotatingLog(log, max_bytes, keep))
        finally:
            os._exit(0)
    os.close(read_end)
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        os.execvp(args[0], list(args))
    except OSError as e:
        os.write(2, f"cannot start {args[0]}: {e.strerror or type(e).__name__}\n".encode())
    os._exit(127)


def spawn(
    args: Sequence[str],
    env: dict[str, str],
    cwd: Path,
    log: Path,
    pid_file: Path,
    *,
    max_bytes: int = LOG_MAX_BYTES,
    keep: int = LOG_KEEP,
) -> subprocess.Popen[bytes]:
    """Start ``args`` detached (a session of its own); record its pid.

    Its output is appended to ``log`` after a start marker, rotated by size (see the module
    docstring); an existing log is never truncated. The returned process is ``args`` itself
    once it runs (the launcher executes it in place).
    """
    writer = RotatingLog(log, max_bytes, keep)
    try:
        writer.write(start_marker(args))
    finally:
        writer.close()
    launcher = [
        sys.executable,
        "-I",  # stdlib only: this file is run by its path, whatever the environment says
        str(Path(__file__).resolve()),
        "--log",
        str(log.resolve()),
        "--max-bytes",
        str(max_bytes),
        "--keep",
        str(keep),
        "--",
        *args,
    ]
    # Until the pump runs, the launcher's own errors are appended to the log directly.
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_MODE)
    with os.fdopen(fd, "ab") as out:
        child = subprocess.Popen(
            launcher,
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


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """``python ops/procs.py --log FILE [--max-bytes N] [--keep K] -- ARGS...`` (see spawn)."""
    parser = argparse.ArgumentParser(description="Run ARGS with its output in a rotated log.")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--max-bytes", type=int, default=LOG_MAX_BYTES)
    parser.add_argument("--keep", type=int, default=LOG_KEEP)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    if not args or ns.max_bytes < 1 or ns.keep < 1:
        parser.error("needs -- ARGS, a positive --max-bytes and --keep")
    exec_with_pump(args, ns.log, ns.max_bytes, ns.keep)


if __name__ == "__main__":
    main()
