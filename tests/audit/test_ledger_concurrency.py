"""Concurrent appends from threads and processes extend one contiguous, verifiable chain.

The work is bounded by an event count, not by seconds: every writer starts together (once
the spawned processes report their ledger open), appends its share and is joined without
a timeout, so a busy machine makes the test slower, never failing.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from audit.database import audit_engine, dispose_engines
from audit.events import StoredEvent
from audit.ledger import Ledger
from tests.audit.ledger_support import KEYS, append_as_writer

PER_WRITER = 500
THREADS = 8
PROCESSES = 2


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite and PostgreSQL; MariaDB locks the same way as PostgreSQL and takes ~40 s."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    request.applymarker(pytest.mark.service)
    return str(request.getfixturevalue("pg_url"))


def _wait_until_ready(ready: Any, processes: list[Any]) -> None:
    """Every process has opened the ledger; fails only if one exits first (no deadline)."""
    waiting = len(processes)
    while waiting:
        try:
            ready.get(timeout=1)  # a poll interval, not a limit: loops until all report
        except queue.Empty:
            exited = [p.exitcode for p in processes if p.exitcode is not None]
            assert not exited, f"a writer process exited before appending: {exited}"
            continue
        waiting -= 1


@pytest.mark.slow
def test_threads_and_processes_append_one_chain(url: str) -> None:
    db_url = url
    ledger = Ledger(audit_engine(db_url), KEYS, actor="threads")
    spawn = multiprocessing.get_context("spawn")
    ready, go = spawn.Queue(), spawn.Event()
    processes = [
        spawn.Process(target=append_as_writer, args=(db_url, 100 + p, PER_WRITER, ready, go))
        for p in range(PROCESSES)
    ]
    returned: dict[int, list[StoredEvent]] = defaultdict(list)
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            for i in range(PER_WRITER):
                returned[writer].append(
                    ledger.append(
                        "load.test", status="succeeded", detail={"writer": writer, "i": i}
                    )
                )
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(THREADS)]
    try:
        for p in processes:
            p.start()
        _wait_until_ready(ready, processes)
        go.set()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in processes:
            p.join()
        assert not errors, errors
        assert [p.exitcode for p in processes] == [0] * PROCESSES

        total = (THREADS + PROCESSES) * PER_WRITER
        report = ledger.verify()
        assert report.ok, report
        assert report.events_checked == ledger.count() == total

        # Every caller got its own committed event back, in its own order.
        seqs = [e.seq for events in returned.values() for e in events]
        assert len(seqs) == len(set(seqs)) == THREADS * PER_WRITER
        for writer, events in returned.items():
            assert [e.detail["i"] for e in events] == list(range(PER_WRITER)), writer
            assert [e.seq for e in events] == sorted(e.seq for e in events)

        per_writer: dict[int, list[int]] = defaultdict(list)
        for event in ledger.events():
            per_writer[event.detail["writer"]].append(event.detail["i"])
        assert sorted(per_writer) == [*range(THREADS), 100, 101]
        assert all(items == list(range(PER_WRITER)) for items in per_writer.values())
    finally:
        for p in processes:
            if p.is_alive():
                p.kill()
        dispose_engines()
