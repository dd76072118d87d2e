"""Audit ledger benchmark: chained appends against plain INSERTs, and verify throughput.

Run: ``python -m benchmarks.audit [--events N] [--verify-events N] [--backends ...]``.

For each backend it measures, in the same run and with the same engine settings:
appends through ``Ledger.append`` (one writer, then 8 threads) against plain INSERTs of
the same columns into an unchained table (one per transaction), and ``Ledger.verify``
over a ledger of ``--verify-events`` events (built quickly with ``append_many``).
Each measurement is repeated (3 rounds) and the median reported. Targets: chained
appends at least half as fast as plain inserts; verifying 1,000,000 events in < 30 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python benchmarks/<name>.py`, sys.path[0] is benchmarks/, whose audit.py,
# requests.py, retention.py and transfers.py would shadow the packages and the library of
# those names: the repo root takes its place, before any other import. (`python -m
# benchmarks.<name>` and imports from other modules set __package__ and skip this.)
if not __package__:
    _here = Path(__file__).resolve().parent
    sys.path[:] = [str(_here.parent), *(p for p in sys.path if Path(p).resolve() != _here)]

import argparse
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Engine, Index, Integer, MetaData, String, Table, insert

from audit.database import audit_engine, dispose_engines
from audit.events import EventStatus, NewEvent
from audit.ledger import Ledger
from audit.tables import GENESIS_HASH, LENGTHS, CanonicalJSON, UTCDateTime
from benchmarks.common import (
    ROUNDS,
    emit_result,
    log,
    median_rate,
    median_seconds,
    peak_rss_mb,
    ratio,
    scratch_postgres,
)
from core.keys import KeyRing
from core.pseudonym import Pseudonym, Pseudonymizer

WRITERS = 8
BUILD_BATCH = 50_000
APPEND_RATIO_TARGET = 0.5
VERIFY_SECONDS_TARGET = 30.0
VERIFY_TARGET_EVENTS = 1_000_000

_plain_metadata = MetaData()
plain_events = Table(
    "bench_plain_events",
    _plain_metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    *(Column(name, String(length)) for name, length in LENGTHS.items()),
    Column("occurred_at", UTCDateTime()),
    Column("counts", CanonicalJSON()),
    Column("detail", CanonicalJSON()),
    Column("prev_hash", String(64)),
    Column("hash", String(64)),
    # The ledger table's indexes too, so the comparison isolates the cost of chaining.
    Index("uq_bench_plain_event_id", "event_id", unique=True),
    Index("ix_bench_plain_request_id", "request_id"),
    Index("ix_bench_plain_occurred_at", "occurred_at"),
)
"""The baseline: the ledger's columns and indexes in an unchained table (autoincrement key)."""


def _sample(i: int, subject: Pseudonym) -> dict[str, Any]:
    return {
        "kind": "connector.delete",
        "status": EventStatus.SUCCEEDED,
        "request_id": f"req_{i % 97:04d}",
        "connector": "orders_db",
        "target": "public.customers",
        "subject": subject,
        "counts": {"rows": i, "batches": 1},
        "detail": {"strategy": "delete", "keys_digest": uuid.uuid4().hex},
    }


def _plain_row(i: int, subject: Pseudonym) -> dict[str, Any]:
    row = _sample(i, subject)
    row.update(
        event_id=uuid.uuid4().hex,
        occurred_at=datetime.now(UTC),
        actor="bench",
        status=EventStatus.SUCCEEDED.value,
        prev_hash=GENESIS_HASH,
        hash=GENESIS_HASH,
    )
    return row


def _in_threads(total: int, writers: int, work: Callable[[int, int], None]) -> int:
    """Split ``total`` items over ``writers`` threads running ``work(start, count)``."""
    share = total // writers
    errors: list[BaseException] = []

    def run(start: int) -> None:
        try:
            work(start, share)
        except BaseException as e:
            errors.append(e)
            raise

    threads = [threading.Thread(target=run, args=(w * share,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return share * writers


class Bench:
    """The measurements for one backend."""

    def __init__(self, engine: Engine, keys: KeyRing, events: int) -> None:
        self.engine = engine
        self.ledger = Ledger(engine, keys, actor="bench")
        self.subject = Pseudonymizer(keys.pseudonym_hmac).of_value("email", "a@example.com")
        self.events = events
        _plain_metadata.create_all(engine)

    def plain(self, start: int, count: int) -> None:
        statement = insert(plain_events)  # built once, like the ledger's own statements
        for i in range(start, start + count):
            with self.engine.begin() as conn:
                conn.execute(statement, _plain_row(i, self.subject))

    def chained(self, start: int, count: int) -> None:
        for i in range(start, start + count):
            sample = _sample(i, self.subject)
            self.ledger.append(sample.pop("kind"), **sample)

    def rate(self, work: Callable[[int, int], None], writers: int, label: str) -> float:
        def once() -> int:
            if writers == 1:
                work(0, self.events)
                return self.events
            return _in_threads(self.events, writers, work)

        median, _ = median_rate(once, label=label)
        log(f"  {label}: median {median:,.0f} events/s")
        return median

    def build(self, total: int) -> None:
        """Grow the ledger to ``total`` events with large ``append_many`` batches."""
        have = self.ledger.count()
        while have < total:
            n = min(BUILD_BATCH, total - have)
            batch = [NewEvent(**_sample(have + i, self.subject)) for i in range(n)]
            self.ledger.append_many(batch)
            have += n
            log(f"  built {have:,} events")

    def verify_seconds(self) -> float:
        def once() -> None:
            report = self.ledger.verify()
            if not report.ok:
                raise SystemExit(f"verify failed: {report}")

        median, _ = median_seconds(once, label="verify")
        return median


@contextmanager
def _database(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'audit-bench.sqlite'}"
    elif backend == "postgresql":
        with scratch_postgres() as url:
            yield url
    else:
        raise SystemExit(f"unsupported backend for this benchmark: {backend}")


def run_backend(
    backend: str, events: int, verify_events: int, workdir: Path
) -> dict[str, float | int]:
    """All measurements on one backend, as flat figures prefixed with the backend name."""
    keys = KeyRing.from_master(b"benchmark-master-key-not-secret!")
    figures: dict[str, float | int] = {}
    with _database(backend, workdir) as url:
        bench = Bench(audit_engine(url), keys, events)
        try:
            log(f"[{backend}] appends: {events:,} events per round, {ROUNDS} rounds")
            plain_1 = bench.rate(bench.plain, 1, "plain insert, 1 writer")
            chained_1 = bench.rate(bench.chained, 1, "chained append, 1 writer")
            plain_8 = bench.rate(bench.plain, WRITERS, f"plain insert, {WRITERS} writers")
            chained_8 = bench.rate(bench.chained, WRITERS, f"chained append, {WRITERS} writers")
            log(f"[{backend}] building a {verify_events:,}-event ledger")
            bench.build(verify_events)
            seconds = bench.verify_seconds()
            per_million = seconds * VERIFY_TARGET_EVENTS / verify_events
            log(f"[{backend}] verify: {seconds:.2f} s for {verify_events:,} events")
        finally:
            dispose_engines()
    figures.update(
        {
            f"{backend}_plain_1_writer_per_s": round(plain_1),
            f"{backend}_chained_1_writer_per_s": round(chained_1),
            f"{backend}_ratio_1_writer": ratio(chained_1, plain_1),
            f"{backend}_plain_{WRITERS}_writers_per_s": round(plain_8),
            f"{backend}_chained_{WRITERS}_writers_per_s": round(chained_8),
            f"{backend}_ratio_{WRITERS}_writers": ratio(chained_8, plain_8),
            f"{backend}_verify_events": verify_events,
            f"{backend}_verify_seconds": round(seconds, 2),
            f"{backend}_verify_per_s": round(verify_events / seconds),
            f"{backend}_verify_seconds_per_million": round(per_million, 2),
        }
    )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000, help="appends per round")
    parser.add_argument(
        "--verify-events", type=int, default=VERIFY_TARGET_EVENTS, help="ledger size to verify"
    )
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated")
    args = parser.parse_args(argv)
    if args.events < WRITERS or args.verify_events < 1:
        parser.error("--events must be at least 8 and --verify-events at least 1")

    figures: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    met: dict[str, bool] = {}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lc-bench-")))
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            got = run_backend(backend, args.events, args.verify_events, workdir)
            figures.update(got)
            for key in (f"{backend}_ratio_1_writer", f"{backend}_ratio_{WRITERS}_writers"):
                targets[key] = f">= {APPEND_RATIO_TARGET}"
                met[key] = float(got[key]) >= APPEND_RATIO_TARGET
            key = f"{backend}_verify_seconds_per_million"
            targets[key] = f"< {VERIFY_SECONDS_TARGET}"
            met[key] = float(got[key]) < VERIFY_SECONDS_TARGET
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    emit_result("audit", figures, targets, met)


if __name__ == "__main__":
    main()
