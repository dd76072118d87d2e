"""The served processes' logs: appended across starts, a marker line per start, rotated by
size (keeping a few), never truncated, and the recorded pid still the program's own."""

from __future__ import annotations

import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ops import procs

MARKER = re.compile(rb"^===== \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 starting [^\n]* =====$", re.M)


def _generations(log: Path) -> list[Path]:
    """``log`` and its rotated files that exist, newest first."""
    return [p for p in [log, *(procs.rotated(log, n) for n in range(1, 10))] if p.exists()]


def _all_text(log: Path) -> bytes:
    """Everything the log files hold, oldest first."""
    return b"".join(p.read_bytes() for p in reversed(_generations(log)))


def _lines(count: int, tag: str) -> str:
    return (
        f"import sys\nfor i in range({count}): "
        f"sys.stdout.write('{tag} %04d ' % i + 'x' * 40 + chr(10))\nsys.stdout.flush()"
    )


def _run(log: Path, code: str, **limits: int) -> int:
    """Spawn ``python -c code`` as ``lifecycle server`` spawns, wait for it and its pump."""
    child = procs.spawn(
        [sys.executable, "-c", code], dict(os.environ), log.parent, log, log.with_suffix(".pid"),
        **limits,
    )  # fmt: skip
    code_ = child.wait(timeout=120)
    deadline = time.monotonic() + 120
    while procs.group_alive(child.pid) and time.monotonic() < deadline:  # the pump drains
        time.sleep(0.05)
    assert not procs.group_alive(child.pid)
    return code_


def test_rotate_shifts_generations_and_drops_the_oldest(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    for n in range(4):
        log.write_text(f"generation {n}\n")
        procs.rotate(log, keep=3)
    assert not log.exists()
    assert [p.read_text() for p in _generations(log)] == [
        "generation 3\n",
        "generation 2\n",
        "generation 1\n",
    ]  # generation 0 was the oldest beyond keep=3
    procs.rotate(tmp_path / "never-written.log")  # nothing to rotate: harmless


def test_rotating_log_appends_stays_under_the_limit_and_keeps_lines_whole(
    tmp_path: Path,
) -> None:
    log = tmp_path / "worker.log"
    log.write_bytes(b"kept from before\n")
    writer = procs.RotatingLog(log, max_bytes=100, keep=9)
    lines = [f"line {n:02d} ".encode() + b"y" * 20 + b"\n" for n in range(12)]  # 29 bytes each
    writer.write(b"".join(lines[:7]))  # one chunk, split at line ends
    for line in lines[7:]:
        writer.write(line)
    writer.close()
    files = _generations(log)
    assert _all_text(log) == b"kept from before\n" + b"".join(lines)  # appended, all there
    assert all(p.stat().st_size <= 100 for p in files)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    assert all(p.read_bytes().endswith(b"\n") for p in files)  # no line cut in two

    writer = procs.RotatingLog(log, max_bytes=100, keep=2)
    writer.write(b"z" * 250)  # a "line" longer than a whole file is split
    writer.close()
    assert [p.read_bytes() for p in _generations(log)] == [b"z" * 50, b"z" * 100, b"z" * 100]


def test_rotating_log_loses_nothing_within_its_generations(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    writer = procs.RotatingLog(log, max_bytes=1000, keep=5)
    data = b"".join(f"{n:05d}\n".encode() for n in range(500))  # 3,000 bytes
    for start in range(0, len(data), 77):  # arbitrary chunks, as a pipe delivers them
        writer.write(data[start : start + 77])
    writer.close()
    assert _all_text(log) == data
    assert all(p.stat().st_size <= 1000 for p in _generations(log))


def test_spawn_appends_marks_each_start_and_rotates(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_bytes(b"from a start before this feature\n")

    assert _run(log, _lines(10, "first")) == 0
    assert _run(log, _lines(10, "second")) == 0

    text = _all_text(log)
    assert text.startswith(b"from a start before this feature\n")  # never truncated
    assert len(MARKER.findall(text)) == 2
    assert text.index(b"\nfirst 0009") < text.index(b"\nsecond 0000")
    assert len(re.findall(rb"^first \d{4} x+$", text, re.M)) == 10
    assert len(re.findall(rb"^second \d{4} x+$", text, re.M)) == 10
    assert log.stat().st_mode & 0o777 == 0o600

    # Size-based: the output of one long-running start is rotated too, not only at starts.
    assert _run(log, _lines(400, "third"), max_bytes=4000, keep=3) == 0
    files = _generations(log)
    assert len(files) == 4 and all(p.stat().st_size <= 4000 for p in files)
    newest = b"".join(p.read_bytes() for p in reversed(files))
    assert newest.endswith(b"third 0399 " + b"x" * 40 + b"\n")
    assert b"from a start before" not in newest  # older than keep=3 generations: dropped


def test_the_pid_is_the_program_and_the_pump_is_in_its_group(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    code = "import time; print('up', flush=True); time.sleep(600)"
    child = procs.spawn(
        [sys.executable, "-c", code, "pump-test-marker"],
        dict(os.environ),
        tmp_path,
        log,
        tmp_path / "worker.pid",
    )
    try:
        deadline = time.monotonic() + 120
        while b"\nup\n" not in log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert procs.read_pid(tmp_path / "worker.pid") == child.pid
        assert os.getpgid(child.pid) == child.pid  # a session and group of its own
        cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[:2] == [sys.executable.encode(), b"-c"]  # the program, not a wrapper
        assert procs.process_alive(child.pid, ("pump-test-marker",))
    finally:
        procs.terminate(child.pid, grace=30)
    assert child.wait(timeout=60) == -15  # SIGTERM ended it
    assert not procs.group_alive(child.pid)  # and the pump with it
    assert b"\nup\n" in log.read_bytes()


@pytest.mark.parametrize(
    ("args", "program"),
    [
        (["/v/bin/python", "-m", "ops.prefect_sqlite", "server", "start", "--host", "h"],
         "python -m ops.prefect_sqlite server start"),
        (["/v/bin/prefect", "worker", "start", "--pool", "p"], "prefect worker start"),
        (["/v/bin/python", "-m", "ops.local_s3", "--port", "4566"], "python -m ops.local_s3"),
        (["/v/bin/python", "-c", "print('ready')\nimport x"], "python"),
    ],
)  # fmt: skip
def test_start_marker_is_one_line_naming_the_program(args: list[str], program: str) -> None:
    when = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)
    line = procs.start_marker(args, when)
    assert line == f"===== 2026-05-01T06:00:00+00:00 starting {program} =====\n".encode()
    assert MARKER.fullmatch(line.rstrip(b"\n"))
