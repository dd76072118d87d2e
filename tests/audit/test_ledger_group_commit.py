"""Group commit: concurrent appends share one transaction, and share its failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine

import audit.ledger as ledger_module
import audit.writer as writer_module
from audit.database import audit_engine, dispose_engines
from audit.events import StoredEvent
from audit.guard import PreparedEvent
from audit.ledger import Ledger
from core.errors import TransientError
from tests.audit.ledger_support import KEYS

FOLLOWERS = 5


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    yield Ledger(audit_engine(f"sqlite:///{tmp_path / 'audit.db'}"), KEYS, actor="tester")
    dispose_engines()


class HeldWriter:
    """Wraps the batch writer: holds the first batch until the followers have queued."""

    def __init__(self, ledger: Ledger, fail_second: bool = False) -> None:
        self.ledger = ledger
        self.fail_second = fail_second
        self.batches: list[int] = []
        self.release = threading.Event()
        self.real = writer_module.write_batch

    def __call__(
        self,
        engine: Engine,
        key: bytes,
        events: Sequence[PreparedEvent],
        also: Callable[[Connection], None] | None = None,
    ) -> list[StoredEvent]:
        self.batches.append(len(events))
        if len(self.batches) == 1:
            assert self.release.wait(300)  # released once every follower queued
        elif self.fail_second:
            raise TransientError("audit ledger database busy (simulated)")
        return self.real(engine, key, events, also)

    def run(self) -> tuple[list[StoredEvent], list[BaseException]]:
        results: list[StoredEvent] = []
        errors: list[BaseException] = []

        def append(i: int) -> None:
            try:
                results.append(self.ledger.append("step", status="planned", counts={"i": i}))
            except BaseException as e:
                errors.append(e)

        first = threading.Thread(target=append, args=(0,))
        first.start()
        while not self.batches:
            time.sleep(0.001)
        followers = [threading.Thread(target=append, args=(i,)) for i in range(1, FOLLOWERS + 1)]
        for t in followers:
            t.start()
        queue = self.ledger._committer._queue  # the followers wait here for the leader
        while len(queue) < FOLLOWERS:  # until every follower queued: no deadline to miss
            time.sleep(0.001)
        self.release.set()
        for t in [first, *followers]:
            t.join()
        return results, errors


def test_concurrent_appends_are_written_in_one_batch(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = HeldWriter(ledger)
    monkeypatch.setattr(ledger_module, "write_batch", writer)
    results, errors = writer.run()
    assert errors == []
    assert writer.batches == [1, FOLLOWERS]
    assert sorted(e.seq for e in results) == list(range(1, FOLLOWERS + 2))
    assert ledger.count() == FOLLOWERS + 1
    assert ledger.verify().ok


def test_a_failed_batch_fails_every_caller_in_it(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = HeldWriter(ledger, fail_second=True)
    monkeypatch.setattr(ledger_module, "write_batch", writer)
    results, errors = writer.run()
    assert [e.seq for e in results] == [1]
    assert len(errors) == FOLLOWERS
    assert all(isinstance(e, TransientError) for e in errors)
    assert len({id(e) for e in errors}) == FOLLOWERS  # each caller raised its own copy
    assert ledger.count() == 1
    monkeypatch.undo()
    assert ledger.append("after", status="planned").seq == 2
    assert ledger.verify().ok


def test_ledgers_on_one_engine_share_the_committer(ledger: Ledger) -> None:
    other = Ledger(ledger.engine, KEYS, actor="someone-else")
    assert other._committer is ledger._committer
