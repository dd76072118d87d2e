"""Retention-sweep benchmark: the audited, batched sweep against one raw DELETE.

Run: ``python -m benchmarks.retention [--quick] [--rows N] [--rounds N] [--audit BACKEND]``
(``--help`` lists the rest; ``--audit`` is ``sqlite``, the default, or ``postgresql``;
``--only s3`` runs one part, here the S3 comparison, and judges its target alone).

PostgreSQL (judged): a table ``events(id bigint PK, ts timestamp, payload text)`` of
``--rows`` rows (default 2,000,000, built server-side with ``generate_series``), half of
them older than the 90-day rule, with an index on ``ts``. Each round gets an identical
fresh copy (``CREATE TABLE AS`` + PK + ts index + ``VACUUM ANALYZE`` + ``CHECKPOINT``, not
timed; autovacuum off on the copy, so it cannot start in the middle of the sweep but only
after the baseline's clock stopped). Rounds alternate (ABBA):

- baseline: one ``DELETE FROM events WHERE ts < cutoff`` in autocommit;
- sweep: the engine as the flow runs it, without Prefect: ``plan_sweep`` (counts),
  ``run_range`` until finished, ``verify_and_rewind`` (the re-count), ``finish_target``,
  ``summarise``, with ``DEFAULT_BATCH_SIZE``, every batch with its intent, range DELETE and
  ledger event (a batch's event in the audit transaction of the next batch's intent). The
  worker imports the database driver before its clock starts, as a worker that has swept
  before has it (the connector's modules, the engine and the schema reflection are timed);
  ``BENCH_PROFILE=path`` writes a cProfile of it.

Targets (issue 15), medians of sweep/baseline: with the default ``audit: range`` (the ledger
records each batch's rule, cut-off, key range and count), <= 1.5 on the time-ordered layout
(ids and timestamps rising together) and <= 2.0 on the interleaved one; with ``audit: keys``
(also a digest of every key; the store's ``retention_audit: keys``) <= 2.5, time-ordered;
the S3 sweep <= 2.0 the bare loop; and the sweeping process's peak RSS < 300 MB. Every sweep
runs in its own subprocess (this module with ``--worker``) and reports that process's peak
(``VmHWM``; ``ru_maxrss`` would include this parent's peak, see ``process_peak_rss_mb``):
the sweep plus the imports a flow process has anyway, not the table builder or the S3
server. After every round the store is checked (exactly the expired rows gone) and the
ledger (one ``sweep.batch`` event per batch). Printed, not judged: the sweep at batch sizes
20,000 / 50,000 / 100,000 (``--batch-sizes``), where the sweep's time goes (``PARTS``, each
exclusive of the others: the plan's and the verification's counts, key reads, intents
written alone, range DELETEs, ledger appends, the rest), the same comparison on SQLite
(200,000 rows). ``benchmarks/retention_floor.py`` measures what each guarantee costs by
itself (it runs this module's ``audit_writes_worker`` for the audit writes alone). Judged
too: 20,000 expired objects on a local moto S3 server, the S3 sweep against a bare
``list_objects_v2`` + ``delete_objects`` loop (1,000 keys per call).

The audit database is a SQLite file in the run's temp dir (the product's default) or,
with ``--audit postgresql``, a scratch PostgreSQL database; the worker finds it, the
config and the key through ``LIFECYCLE_*`` settings, as the flow does.
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
import base64
import cProfile
import hashlib
import json
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection

from audit.events import NewEvent, StoredEvent
from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from benchmarks.common import (
    emit_result,
    log,
    process_peak_rss_mb,
    ratio,
    scratch_postgres,
    timed,
)
from config.loader import load_config
from connectors.base import Key, SweepBatch, Sweeper
from connectors.sql.config import SqlStore
from core.engines import make_engine
from retention.targets import SweepTarget, resolve_targets
from state.sweeps import BatchRange, SweepProgress, SweepRun

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

    from engine.sweep_runner import SweepContext

# ``engine.sweep_runner`` (the sweep engine, with the connectors and the ledger behind it) is
# imported where a sweep or its batch size is needed, so ``--help`` and the modules that
# import this one for its tables (``benchmarks.retention_floor``) go without.

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ROWS, QUICK_ROWS = 2_000_000, 200_000
SQLITE_ROWS, QUICK_SQLITE_ROWS = 200_000, 20_000
S3_OBJECTS, QUICK_S3_OBJECTS = 20_000, 2_000
ROUNDS, BATCH_ROUNDS = 5, 2
BATCH_SIZES = (20000, 50000, 100000)
RATIO_TARGET = 1.5  # PostgreSQL, time-ordered, audit: range (the default)
INTERLEAVED_TARGET = 2.0  # PostgreSQL, interleaved, audit: range
KEYS_TARGET = 2.5  # PostgreSQL, time-ordered, audit: keys (a digest of every key)
S3_TARGET = 2.0  # the S3 sweep against the bare list + DeleteObjects loop
RSS_TARGET_MB = 300.0
SPAN = timedelta(days=180)  # timestamps spread over 180 days before as_of; the rule keeps 90
MASTER_KEY = base64.b64encode(b"benchmark-only-master-key-not-secret!").decode()
REGION: Final = "eu-central-1"
BUCKET = "bench-retention"
S3_CHUNK = 1000  # DeleteObjects maximum on AWS (moto accepts more)
SEED_WORKERS = 16
PARTS = ("count", "read_keys", "intent", "delete", "ledger")
"""Where the sweep's time goes (each part exclusive of the others): the plan's and the
verification's counts, keyset reads, intents written alone (a range's first batch), range
deletes (SQL DELETE or S3 DeleteObjects of the listed versions), ledger appends (with the
batch bookkeeping, and the next batch's intent that rides on a batch's event)."""

LAYOUTS = {
    # position of row ``g`` (1..n) on the time axis, 0..n-1: ts = t0 + (position + 0.5) * step
    "time_ordered": "g - 1",
    # a multiplicative permutation: expired rows spread evenly over the id range
    "interleaved": "(g * {mult}) % :n",
}


# -- config: the benchmark's own inventory and policy -----------------------------------


def _write_config(directory: Path, store: str, rule: str) -> Path:
    """A config dir with one store and one retention rule (YAML fragments, indented)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "inventory.yaml").write_text(f"stores:\n{store}")
    (directory / "policy.yaml").write_text(
        "categories:\n"
        "  - {name: telemetry, description: Benchmark events}\n"
        "requests:\n"
        "  deadline_days: 30\n"
        "  approval: {required_for: [erasure], approvers: [privacy-officer], unverified_ui: true}\n"
        f"retention:\n{rule}"
    )
    return directory


def sql_config(directory: Path, url: str, audit: str = "range") -> Path:
    """One SQL store ``bench`` with ``events``, and a 90-day delete rule on it; ``audit``
    is the store's ``retention_audit`` (``keys``: every batch digests its keys)."""
    store = (
        "  - name: bench\n"
        "    type: sql\n"
        f'    url: "{url}"\n'
        f"    region: {REGION}\n"
        f"    retention_audit: {audit}\n"
        "    tables:\n"
        "      - name: events\n"
        "        primary_key: [id]\n"
        "        fields: {payload: [telemetry]}\n"
        "        timestamps: {created: ts}\n"
    )
    rule = "  - {id: events-90d, store: bench, table: events, age: 90d, action: delete}\n"
    return _write_config(directory, store, rule)


def s3_config(directory: Path, endpoint: str) -> Path:
    """One S3 store ``files`` with the benchmark bucket, and a 1-day delete rule on it."""
    store = (
        "  - name: files\n"
        "    type: s3\n"
        f"    region: {REGION}\n"
        f'    endpoint_url: "{endpoint}"\n'
        "    buckets:\n"
        f"      - {{name: {BUCKET}, categories: [telemetry], subject_tag: subject}}\n"
    )
    rule = f"  - {{id: objects-1d, store: files, bucket: {BUCKET}, age: 1d, action: delete}}\n"
    return _write_config(directory, store, rule)


def cutoff_of(config_dir: Path, as_of: datetime) -> datetime:
    """The single target's cut-off at ``as_of``, resolved as the sweep resolves it."""
    (target,) = resolve_targets(load_config(config_dir), as_of, ())
    return min(c.cutoff for c in target.conditions)


# -- the worker: one timed sweep (or bare S3 loop) in its own process --------------------


class _Clock:
    """Seconds and calls per part of the sweep (a perf_counter pair per call).

    Exclusive: a part timed inside another (an intent or ledger append written inside a
    batch's DELETE transaction) counts for itself only, so the parts add up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._inner: list[float] = []  # per open part: seconds of the parts inside it

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[name] += elapsed - self._inner.pop()
            self.calls[name] += 1
            if self._inner:
                self._inner[-1] += elapsed


CLOCK = _Clock()


class _TimedSweeper:
    """The connector's sweeper, its calls timed."""

    def __init__(self, inner: Sweeper) -> None:
        self._inner = inner

    @property
    def exact_counts(self) -> bool:
        return self._inner.exact_counts

    def batch_size(self, requested: int) -> int:
        return self._inner.batch_size(requested)

    def counts(self) -> tuple[int, int]:
        with CLOCK.part("count"):
            return self._inner.counts()

    def recount(self) -> tuple[int, int]:
        # The verification's count (``engine.sweep_runner.Recounting`` where the sweeper has it).
        recount: Callable[[], tuple[int, int]] = getattr(self._inner, "recount", self._inner.counts)
        with CLOCK.part("count"):
            return recount()

    def next_batch(self, cursor: Key | None, size: int) -> SweepBatch | None:
        with CLOCK.part("read_keys"):
            return self._inner.next_batch(cursor, size)

    def apply(self, batch: SweepBatch) -> int:
        with CLOCK.part("delete"):
            return self._inner.apply(batch)

    @property
    def deletes_in_one_transaction(self) -> bool:
        return bool(getattr(self._inner, "deletes_in_one_transaction", False))

    def delete_next(
        self, cursor: Key | None, size: int, before_commit: Callable[[SweepBatch], None]
    ) -> SweepBatch | None:
        # Find and delete in one transaction (PostgreSQL); the audit writes before its
        # commit (the intent, with the previous batch's ledger event) count as theirs.
        with CLOCK.part("delete"):
            inner: Any = self._inner
            batch: SweepBatch | None = inner.delete_next(cursor, size, before_commit)
            return batch


class _TimedLedger(Ledger):
    """The ledger, its appends (each with its bookkeeping transaction) timed."""

    def append_many(
        self, events: Sequence[NewEvent], also: Callable[[Connection], None] | None = None
    ) -> list[StoredEvent]:
        with CLOCK.part("ledger"):
            return super().append_many(events, also)


class _TimedProgress(SweepProgress):
    """Sweep progress, its intent writes timed."""

    def record_intent(self, sweep_id: str, target: str, batch: BatchRange) -> int:
        with CLOCK.part("intent"):
            return super().record_intent(sweep_id, target, batch)


def _timed_context() -> type[SweepContext]:
    """The sweep context class handing out timed sweepers."""
    from engine.sweep_runner import SweepContext

    class _TimedContext(SweepContext):
        def sweeper(self, run: SweepRun, target: SweepTarget) -> Sweeper:
            connector: Any = self.connector(target.store)
            if target.kind == "s3" and not hasattr(connector, "sweeper"):
                return _TimedSweeper(_direct_s3_sweeper(connector, run, target))
            return _TimedSweeper(super().sweeper(run, target))

    return _TimedContext


def _direct_s3_sweeper(connector: Any, run: SweepRun, target: SweepTarget) -> Sweeper:
    """``S3Sweeper`` wired as the connector is expected to, while it lacks ``sweeper()``."""
    from connectors.s3.purge import Purger
    from connectors.s3.sweep import S3Sweeper

    purger = Purger(connector.client, connector.name, max_workers=connector.max_workers)
    sweeper: Sweeper = S3Sweeper(
        connector.client,
        connector.store,
        target,
        today=run.as_of.date(),
        purger=purger,
        page_size=connector.page_size,
    )
    return sweeper


def sweep_worker(as_of: datetime, batch_size: int) -> dict[str, Any]:
    """Plan, run every range, finish and summarise one sweep, as the flow does; timed."""
    from engine.sweep_runner import (
        SWEEP_ACTOR,
        finish_target,
        plan_sweep,
        run_range,
        summarise,
        verify_and_rewind,
    )
    from tasks.sweep_tasks import MAX_PASSES

    keys = keyring_from_settings()
    ledger = _TimedLedger.open(keys=keys, actor=SWEEP_ACTOR)  # migrates: not timed
    ctx = _timed_context()(load_config(), keys, ledger, _TimedProgress(ledger.engine))
    for store in ctx.config.stores_of(SqlStore):
        # Import the driver before the clock starts: a worker that has swept before has it
        # loaded (psycopg's first import takes about 0.1 s), and the baseline's process too.
        sa.engine.make_url(store.url.get_secret_value()).get_dialect().import_dbapi()
    rss_before = process_peak_rss_mb()
    profile_to = os.environ.get("BENCH_PROFILE")  # a path: cProfile the sweep into it
    profiler = cProfile.Profile() if profile_to else None
    try:
        if profiler is not None:
            profiler.enable()
        start = time.perf_counter()
        run = plan_sweep(ctx, as_of=as_of, rules=(), dry_run=False)
        for target in ctx.targets(run):
            for _ in range(MAX_PASSES if not target.held else 0):  # as the flow: re-scan
                while not run_range(ctx, run, target, batch_size=batch_size).finished:
                    pass
                if verify_and_rewind(ctx, run, target) == 0:  # its count is timed as "count"
                    break
            finish_target(ctx, run, target)
        summary = summarise(ctx, run)
        seconds = time.perf_counter() - start
    finally:
        if profiler is not None and profile_to:
            profiler.disable()
            profiler.dump_stats(f"{profile_to}.{os.getpid()}")
        ctx.close()
    batch_events = sum(1 for _ in ledger.events(request_id=run.id, kinds=["sweep.batch"]))
    parts = {name: round(CLOCK.seconds.get(name, 0.0), 4) for name in PARTS}
    parts["other"] = round(seconds - sum(parts.values()), 4)
    return {
        "seconds": seconds,
        "planned": summary["planned"],
        "deleted": summary["deleted"],
        "batches": sum(t["batches"] for t in summary["targets"]),
        "ledger_batch_events": batch_events,
        "parts": parts,
        "calls": dict(CLOCK.calls),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(process_peak_rss_mb(), 1),
    }


def bare_s3_worker(endpoint: str) -> dict[str, Any]:
    """The baseline: list 1,000 keys, DeleteObjects them, until the bucket is empty."""
    import boto3

    client: S3Client = boto3.session.Session().client(
        "s3", region_name=REGION, endpoint_url=endpoint
    )
    deleted = 0
    start = time.perf_counter()
    after = ""
    while True:
        page = client.list_objects_v2(Bucket=BUCKET, MaxKeys=S3_CHUNK, StartAfter=after)
        objects: list[ObjectIdentifierTypeDef] = [
            {"Key": o["Key"]} for o in page.get("Contents", [])
        ]
        if not objects:
            break
        answer = client.delete_objects(Bucket=BUCKET, Delete={"Objects": objects, "Quiet": True})
        if answer.get("Errors"):
            raise RuntimeError(f"DeleteObjects reported {len(answer['Errors'])} errors")
        deleted += len(objects)
        after = objects[-1]["Key"]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "deleted": deleted, "peak_rss_mb": round(process_peak_rss_mb(), 1)}


class _KeysInMemory:
    """A one-transaction sweeper over ``expired`` keys in memory: batches cost no store work.

    What ``audit_writes_worker`` runs ``run_range`` over (``benchmarks.retention_floor``)."""

    exact_counts = True
    deletes_in_one_transaction = True

    def __init__(self, expired: int) -> None:
        self.expired = expired

    def batch_size(self, requested: int) -> int:
        return requested

    def counts(self) -> tuple[int, int]:
        return self.expired, 0

    def next_batch(self, cursor: Key | None, size: int) -> SweepBatch | None:
        after = _number(cursor)
        if after >= self.expired:
            return None
        return SweepBatch(cursor, (min(after + size, self.expired),), 0, "")

    def apply(self, batch: SweepBatch) -> int:
        return 0

    def delete_next(
        self, cursor: Key | None, size: int, before_commit: Callable[[SweepBatch], None]
    ) -> SweepBatch | None:
        found = self.next_batch(cursor, size)
        if found is None:
            return None
        batch = replace(found, count=_number(found.hi) - _number(cursor))
        before_commit(batch)
        return batch


def _number(key: Key | None) -> int:
    return 0 if key is None else int(str(key[0]))


def audit_writes_worker(as_of: datetime, batch_size: int, expired: int) -> dict[str, Any]:
    """The sweep's fixed and per-batch costs outside the store's work, timed apart.

    ``setup``: the store's connector and the target's sweeper as the sweep's plan makes
    them first (imports, engine, schema reflection; the driver imported before). ``audit``:
    ``run_range`` over ``expired`` keys in ``batch_size`` batches whose store work is
    nothing (``_KeysInMemory``): every batch's intent, ledger event and bookkeeping, as
    the sweep writes them to the audit database."""
    from engine.sweep_runner import SWEEP_ACTOR, SweepContext, run_range, target_plan

    keys = keyring_from_settings()
    ledger = Ledger.open(keys=keys, actor=SWEEP_ACTOR)  # migrates: not timed
    ctx = SweepContext(load_config(), keys, ledger, SweepProgress(ledger.engine))
    for store in ctx.config.stores_of(SqlStore):
        sa.engine.make_url(store.url.get_secret_value()).get_dialect().import_dbapi()
    (target,) = resolve_targets(ctx.config, as_of, ())
    run_id = "swp_" + "0" * 16
    probe = SweepRun(run_id, as_of, False, "running", (), [], None, None, as_of, None)
    try:
        setup, _ = timed(lambda: ctx.sweeper(probe, target))
        plan = [target_plan(target, expired, 0, "sql")]
        ctx.progress.start(
            run_id, as_of=as_of, dry_run=False, rules=(), plan=plan, flow_run_id=None
        )
        run = ctx.progress.run(run_id)
        assert run is not None
        memory = _KeysInMemory(expired)

        class _InMemory(SweepContext):
            def sweeper(self, run: SweepRun, target: SweepTarget) -> Sweeper:
                return memory

        work = _InMemory(ctx.config, keys, ledger, ctx.progress)
        outcome = None
        start = time.perf_counter()
        while outcome is None or not outcome.finished:
            outcome = run_range(work, run, target, batch_size=batch_size)
        audit = time.perf_counter() - start
    finally:
        ctx.close()
    state = ctx.progress.target(run_id, target.id)
    return {"setup_s": setup, "audit_s": audit, "batches": state.batches, "done": state.done}


def _worker_main(spec: Mapping[str, Any]) -> None:
    if spec["mode"] == "sweep":
        result = sweep_worker(datetime.fromisoformat(spec["as_of"]), int(spec["batch_size"]))
    elif spec["mode"] == "audit-writes":
        as_of = datetime.fromisoformat(spec["as_of"])
        result = audit_writes_worker(as_of, int(spec["batch_size"]), int(spec["expired"]))
    else:
        result = bare_s3_worker(spec["endpoint"])
    sys.stdout.write(json.dumps(result) + "\n")


@dataclass(frozen=True)
class Env:
    """The settings a worker runs with (and, for S3, the dummy AWS credentials)."""

    config_dir: Path
    data_dir: Path
    audit_url: str
    extra: Mapping[str, str]

    def variables(self) -> dict[str, str]:
        return {
            **os.environ,
            "LIFECYCLE_CONFIG_DIR": str(self.config_dir),
            "LIFECYCLE_DATA_DIR": str(self.data_dir),
            "LIFECYCLE_AUDIT_URL": self.audit_url,
            "LIFECYCLE_MASTER_KEY": MASTER_KEY,
            **_absolute("BENCH_PROFILE"),  # the worker runs in PROJECT_ROOT, not in our cwd
            **self.extra,
        }


def _absolute(name: str) -> dict[str, str]:
    """The path in environment variable ``name`` made absolute (against this process's cwd)."""
    value = os.environ.get(name)
    return {name: str(Path(value).resolve())} if value else {}


def run_worker(env: Env, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``spec`` in a fresh interpreter; its JSON result (the last stdout line)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.retention", "--worker", json.dumps(spec)],
        cwd=PROJECT_ROOT,
        env=env.variables(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"worker {spec['mode']} failed ({done.returncode}):\n{done.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def sweep_problems(result: Mapping[str, Any], expired: int) -> list[str]:
    """What a sweep's result says went wrong: counts off the expected, ledger incomplete."""
    problems = []
    if result["planned"] != expired or result["deleted"] != expired:
        problems.append(
            f"sweep planned {result['planned']} and deleted {result['deleted']}, expected {expired}"
        )
    if result["ledger_batch_events"] != result["batches"]:
        problems.append(
            f"ledger holds {result['ledger_batch_events']} sweep.batch events "
            f"for {result['batches']} batches"
        )
    return problems


def run_sweep(env: Env, as_of: datetime, batch_size: int) -> dict[str, Any]:
    """One sweep in a worker; its result (see ``sweep_worker``)."""
    return run_worker(env, {"mode": "sweep", "as_of": as_of.isoformat(), "batch_size": batch_size})


# -- the tables: built once, copied fresh for every round --------------------------------


def _ts(t0: datetime, position: float, step_us: float) -> datetime:
    return t0 + timedelta(microseconds=(position + 0.5) * step_us)


class PgTables:
    """Source tables per layout in one scratch database, and the ``events`` copy."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url, isolation_level="AUTOCOMMIT")

    def build(self, layout: str, rows: int, t0: datetime) -> None:
        """``src_<layout>``: ``rows`` rows in id order, ts over SPAN from ``t0`` (naive UTC)."""
        mult = 7919
        while math.gcd(mult, rows) != 1:  # a permutation of 0..rows-1 needs a coprime factor
            mult += 2
        step_us = SPAN / timedelta(microseconds=1) / rows
        name = f"src_{layout}"
        with self.engine.connect() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
            conn.execute(sa.text(f"CREATE TABLE {name} (id bigint, ts timestamp, payload text)"))
            position = LAYOUTS[layout].format(mult=mult)  # an int computed here
            conn.execute(
                sa.text(
                    f"INSERT INTO {name} (id, ts, payload) "
                    f"SELECT g, :t0 + (({position}) + 0.5) * :step * interval '1 microsecond', "
                    "md5(g::text) || md5((-g)::text) "
                    "FROM generate_series(CAST(1 AS bigint), :n) AS g"
                ).bindparams(
                    sa.bindparam("t0", type_=sa.DateTime()),
                    sa.bindparam("n", type_=sa.BigInteger()),
                    sa.bindparam("step", type_=sa.Float()),
                ),
                {"t0": t0, "n": rows, "step": step_us},
            )
            conn.execute(sa.text(f"ANALYZE {name}"))

    def fresh_copy(self, layout: str) -> None:
        """``events`` as an identical copy of the layout's source, indexed, vacuumed, flushed."""
        with self.engine.connect() as conn:
            for statement in (
                "DROP TABLE IF EXISTS events",
                f"CREATE TABLE events AS SELECT * FROM src_{layout}",
                "ALTER TABLE events ADD PRIMARY KEY (id)",
                "CREATE INDEX events_ts_idx ON events (ts)",
                "ALTER TABLE events SET (autovacuum_enabled = false)",
                "VACUUM (ANALYZE) events",
                "CHECKPOINT",
            ):
                conn.execute(sa.text(statement))

    def counts(self, table: str, cutoff: datetime) -> tuple[int, int]:
        """(rows, rows with ts before ``cutoff``)."""
        query = sa.text(
            f"SELECT count(*), count(*) FILTER (WHERE ts < :cutoff) FROM {table}"
        ).bindparams(sa.bindparam("cutoff", type_=sa.DateTime()))
        with self.engine.connect() as conn:
            total, expired = conn.execute(query, {"cutoff": cutoff}).one()
        return int(total), int(expired)

    def baseline(self, cutoff: datetime) -> tuple[float, int]:
        """One raw ``DELETE ... WHERE ts < cutoff`` (autocommit): seconds and rows."""
        statement = sa.text("DELETE FROM events WHERE ts < :cutoff").bindparams(
            sa.bindparam("cutoff", type_=sa.DateTime())
        )
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))  # connected before the clock starts
            seconds, result = timed(lambda: conn.execute(statement, {"cutoff": cutoff}))
        return seconds, int(result.rowcount)

    def close(self) -> None:
        self.engine.dispose()


class SqliteTables:
    """A pristine SQLite file, copied to ``events.db`` (the store) for every round."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.source = directory / "source.db"
        self.path = directory / "events.db"
        self.url = f"sqlite:///{self.path}"

    def build(self, rows: int, t0: datetime) -> None:
        """Time-ordered rows; ts as SQLAlchemy stores a DateTime on SQLite (so it compares)."""
        step_us = SPAN / timedelta(microseconds=1) / rows

        def values() -> Iterator[tuple[int, str, str]]:
            for g in range(1, rows + 1):
                digest = hashlib.md5(str(g).encode()).hexdigest()  # filler text
                stamp = _ts(t0, g - 1, step_us).strftime("%Y-%m-%d %H:%M:%S.%f")
                yield g, stamp, digest + digest[::-1]

        con = sqlite3.connect(self.source)
        try:
            con.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, ts TIMESTAMP, payload TEXT)")
            con.executemany("INSERT INTO events VALUES (?, ?, ?)", values())
            con.execute("CREATE INDEX events_ts_idx ON events (ts)")
            con.commit()
            con.execute("ANALYZE")
            con.commit()
        finally:
            con.close()

    def fresh_copy(self, _layout: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(self.source, self.path)

    def counts(self, table: str, cutoff: datetime) -> tuple[int, int]:
        del table
        con = sqlite3.connect(self.path)
        try:
            stamp = cutoff.strftime("%Y-%m-%d %H:%M:%S.%f")
            total, expired = con.execute(
                "SELECT count(*), sum(ts < ?) FROM events", (stamp,)
            ).fetchone()
        finally:
            con.close()
        return int(total), int(expired or 0)

    def baseline(self, cutoff: datetime) -> tuple[float, int]:
        """One DELETE in one transaction, on an engine with the connector's pragmas."""
        statement = sa.text("DELETE FROM events WHERE ts < :cutoff").bindparams(
            sa.bindparam("cutoff", type_=sa.DateTime())
        )
        engine = make_engine(self.url)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
                conn.commit()

                def delete() -> int:
                    rows = int(conn.execute(statement, {"cutoff": cutoff}).rowcount)
                    conn.commit()
                    return rows

                return timed(delete)
        finally:
            engine.dispose()

    def close(self) -> None:
        pass


Tables = PgTables | SqliteTables


# -- measurements -------------------------------------------------------------------------


@dataclass
class Comparison:
    """Interleaved baseline and sweep rounds on one layout, and their medians."""

    baseline: list[float]
    sweeps: list[dict[str, Any]]

    @property
    def baseline_s(self) -> float:
        return statistics.median(self.baseline)

    @property
    def sweep_s(self) -> float:
        return float(statistics.median(s["seconds"] for s in self.sweeps))

    @property
    def ratio(self) -> float:
        return ratio(self.sweep_s, self.baseline_s)

    def median_sweep(self) -> dict[str, Any]:
        """The round whose time is the median (its breakdown is the one reported)."""
        ordered = sorted(self.sweeps, key=lambda s: s["seconds"])
        return ordered[(len(ordered) - 1) // 2]


@dataclass(frozen=True)
class Setup:
    """What a comparison runs on: tables, the worker's settings, the sweep's moment."""

    label: str
    tables: Tables
    env: Env
    as_of: datetime
    cutoff: datetime  # naive UTC


def _checked(setup: Setup, total: int, expired: int) -> None:
    """Exactly the expired rows are gone, the others are all still there."""
    left, still_expired = setup.tables.counts("events", setup.cutoff)
    if still_expired or left != total - expired:
        raise SystemExit(
            f"[{setup.label}] after the round: {left} rows left ({still_expired} expired), "
            f"expected {total - expired} (none expired)"
        )


def _sweep_round(setup: Setup, layout: str, size: int, counts: tuple[int, int]) -> dict[str, Any]:
    total, expired = counts
    setup.tables.fresh_copy(layout)
    result = run_sweep(setup.env, setup.as_of, size)
    problems = sweep_problems(result, expired)
    if problems:
        raise SystemExit(f"[{setup.label}] " + "; ".join(problems))
    _checked(setup, total, expired)
    parts = ", ".join(f"{k} {v:.2f}" for k, v in result["parts"].items())
    log(
        f"  [{setup.label} {layout}] sweep (batch {size:,}): {result['seconds']:.2f} s, "
        f"{result['batches']} batches, peak RSS {result['peak_rss_mb']:.0f} MB ({parts})"
    )
    return result


def compare(setup: Setup, layout: str, rounds: int, counts: tuple[int, int]) -> Comparison:
    """Baseline and sweep rounds alternating (ABBA), each on a fresh identical copy."""
    from engine.sweep_runner import DEFAULT_BATCH_SIZE

    total, expired = counts
    out = Comparison([], [])
    for i in range(rounds):
        for kind in ("baseline", "sweep") if i % 2 == 0 else ("sweep", "baseline"):
            if kind == "sweep":
                out.sweeps.append(_sweep_round(setup, layout, DEFAULT_BATCH_SIZE, counts))
                continue
            setup.tables.fresh_copy(layout)
            seconds, deleted = setup.tables.baseline(setup.cutoff)
            if deleted != expired:
                raise SystemExit(f"[{setup.label}] baseline deleted {deleted} of {expired}")
            _checked(setup, total, expired)
            out.baseline.append(seconds)
            log(f"  [{setup.label} {layout}] baseline DELETE: {seconds:.2f} s")
    log(
        f"[{setup.label} {layout}] median baseline {out.baseline_s:.2f} s, "
        f"sweep {out.sweep_s:.2f} s, ratio {out.ratio}"
    )
    return out


def batch_sizes(
    setup: Setup, sizes: Sequence[int], rounds: int, counts: tuple[int, int]
) -> dict[int, float]:
    """Median sweep seconds per batch size (time-ordered), sizes rotated between rounds."""
    samples: dict[int, list[float]] = {size: [] for size in sizes}
    for i in range(rounds):
        order = [*sizes[i % len(sizes) :], *sizes[: i % len(sizes)]]
        for size in order:
            samples[size].append(_sweep_round(setup, "time_ordered", size, counts)["seconds"])
    return {size: statistics.median(values) for size, values in samples.items()}


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def postgres_part(args: argparse.Namespace, tmp: Path, audit_url: str) -> dict[str, Any]:
    """The judged comparison (both layouts), the batch sizes, and the sweep's memory."""
    figures: dict[str, Any] = {"rows": args.rows}
    with ExitStack() as stack:
        url = stack.enter_context(scratch_postgres())
        tables = PgTables(url)
        stack.callback(tables.close)
        config_dir = sql_config(tmp / "config-postgresql", url)
        as_of = _now()
        setup = Setup(
            "postgresql",
            tables,
            Env(config_dir, tmp, audit_url, {}),
            as_of,
            cutoff_of(config_dir, as_of),
        )
        t0 = as_of.replace(tzinfo=None) - SPAN
        counts: dict[str, tuple[int, int]] = {}
        for layout in LAYOUTS:
            seconds, _ = timed(partial(tables.build, layout, args.rows, t0))
            counts[layout] = tables.counts(f"src_{layout}", setup.cutoff)
            log(
                f"[postgresql] built src_{layout}: {counts[layout][0]:,} rows, "
                f"{counts[layout][1]:,} expired, in {seconds:.1f} s"
            )
        results = {
            layout: compare(setup, layout, args.rounds, counts[layout]) for layout in LAYOUTS
        }
        keys_setup = replace(
            setup,
            label="postgresql audit:keys",
            env=replace(setup.env, config_dir=sql_config(tmp / "config-pg-keys", url, "keys")),
        )
        keys = compare(keys_setup, "time_ordered", args.rounds, counts["time_ordered"])
        figures["postgresql_keys_baseline_s_time_ordered"] = round(keys.baseline_s, 3)
        figures["postgresql_keys_sweep_s_time_ordered"] = round(keys.sweep_s, 3)
        figures["postgresql_keys_ratio_time_ordered"] = keys.ratio
        for layout, result in results.items():
            figures[f"postgresql_baseline_s_{layout}"] = round(result.baseline_s, 3)
            figures[f"postgresql_sweep_s_{layout}"] = round(result.sweep_s, 3)
            figures[f"postgresql_ratio_{layout}"] = result.ratio
        figures["expired"] = counts["time_ordered"][1]
        median = results["time_ordered"].median_sweep()
        figures["sweep_batches"] = median["batches"]
        figures["sweep_breakdown_s_time_ordered"] = median["parts"]
        figures["sweep_breakdown_s_interleaved"] = results["interleaved"].median_sweep()["parts"]
        sweeps = [s for r in (*results.values(), keys) for s in r.sweeps]
        figures["peak_rss_mb"] = max(s["peak_rss_mb"] for s in sweeps)
        figures["rss_before_sweep_mb"] = max(s["rss_before_mb"] for s in sweeps)
        if args.batch_rounds:
            log(f"[postgresql] batch sizes {', '.join(map(str, args.batch_sizes))} (time-ordered)")
            by_size = batch_sizes(
                setup, args.batch_sizes, args.batch_rounds, counts["time_ordered"]
            )
            base = results["time_ordered"].baseline_s
            for size, seconds in by_size.items():
                log(f"  batch {size:>6,}: median {seconds:.2f} s, {ratio(seconds, base)}x baseline")
            figures["batch_size_sweep_s"] = {str(k): round(v, 3) for k, v in by_size.items()}
            figures["best_batch_size"] = min(by_size, key=lambda k: by_size[k])
    return figures


def sqlite_part(args: argparse.Namespace, tmp: Path, audit_url: str) -> dict[str, Any]:
    """The same comparison on a SQLite store (printed, not judged)."""
    tables = SqliteTables(tmp / "sqlite-store")
    config_dir = sql_config(tmp / "config-sqlite", tables.url)
    as_of = _now()
    setup = Setup(
        "sqlite", tables, Env(config_dir, tmp, audit_url, {}), as_of, cutoff_of(config_dir, as_of)
    )
    seconds, _ = timed(lambda: tables.build(args.sqlite_rows, as_of.replace(tzinfo=None) - SPAN))
    tables.fresh_copy("time_ordered")
    counts = tables.counts("events", setup.cutoff)
    log(f"[sqlite] built {counts[0]:,} rows, {counts[1]:,} expired, in {seconds:.1f} s")
    result = compare(setup, "time_ordered", args.rounds, counts)
    return {
        "sqlite_rows": args.sqlite_rows,
        "sqlite_baseline_s": round(result.baseline_s, 3),
        "sqlite_sweep_s": round(result.sweep_s, 3),
        "sqlite_ratio": result.ratio,
    }


# -- S3: the sweep against a bare list + DeleteObjects loop -------------------------------


def _s3_sweeper_missing() -> str | None:
    """Why the S3 sweep cannot run, or None."""
    try:
        from connectors.s3.sweep import S3Sweeper
    except ImportError as e:
        return f"connectors.s3.sweep is not importable: {e}"
    del S3Sweeper
    return None


def _seed(client: S3Client, objects: int) -> float:
    """Put ``objects`` small objects (concurrently, bounded); seconds taken."""

    def put(i: int) -> None:
        body = f'{{"event": {i}, "note": "fictional benchmark telemetry"}}\n'.encode()
        client.put_object(Bucket=BUCKET, Key=f"events/{i:06d}.json", Body=body)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=SEED_WORKERS) as pool:
        list(pool.map(put, range(objects)))
    return time.perf_counter() - start


def _remaining(client: S3Client) -> int:
    """Object versions and delete markers still in the bucket."""
    count = 0
    for page in client.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        count += len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
    return count


def _s3_round(kind: str, env: Env, client: S3Client, objects: int) -> dict[str, Any]:
    """One timed deletion of ``objects`` seeded objects; ``problems`` lists what it missed."""
    from engine.sweep_runner import DEFAULT_BATCH_SIZE

    if kind == "bare":
        result = run_worker(env, {"mode": "bare-s3", "endpoint": client.meta.endpoint_url})
        problems = [] if result["deleted"] == objects else [f"deleted {result['deleted']}"]
    else:
        # moto stamps LastModified with the moment of the put and cannot backdate it, so the
        # objects are made expired by moving the sweep's moment instead: as_of two days
        # ahead with the 1-day rule puts the cut-off one day after every LastModified, as
        # a sweep running two days after the writes would see them on AWS.
        # The flow's batch size: the S3 sweeper deletes one DeleteObjects call's worth of
        # versions per batch whatever it is asked (``Sweeper.batch_size``).
        result = run_sweep(env, _now() + timedelta(days=2), DEFAULT_BATCH_SIZE)
        problems = sweep_problems(result, objects)
    left = _remaining(client)
    if left:
        problems.append(f"{left} of {objects} objects left in the bucket")
    result["problems"] = problems
    return result


def s3_part(args: argparse.Namespace, tmp: Path, audit_url: str) -> dict[str, Any]:
    """Expired objects in a non-versioned bucket: the sweep against the bare loop."""
    from connectors.s3.connector import S3Connector
    from demo.s3_server import LocalS3

    objects = args.s3_objects
    figures: dict[str, Any] = {"s3_objects": objects, "s3_bucket": "non-versioned"}
    missing = _s3_sweeper_missing()
    if missing is not None:
        log(f"[s3] skipped: S3 sweeper not available ({missing})")
        figures["s3"] = "skipped: S3 sweeper not available"
        return figures
    if not hasattr(S3Connector, "sweeper"):
        log("[s3] S3Connector has no sweeper() yet: the engine gets S3Sweeper wired directly")
    samples: dict[str, list[dict[str, Any]]] = {"bare": [], "sweep": []}
    with LocalS3(region=REGION) as s3:
        client = s3.client(max_pool_connections=SEED_WORKERS + 4)
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        env = Env(s3_config(tmp / "config-s3", s3.endpoint_url), tmp, audit_url, s3.env())
        try:
            for i in range(args.s3_rounds):
                for kind in ("bare", "sweep") if i % 2 == 0 else ("sweep", "bare"):
                    seeded = _seed(client, objects)  # same keys: leftovers are overwritten
                    log(f"  [s3] seeded {objects:,} objects in {seeded:.1f} s")
                    result = _s3_round(kind, env, client, objects)
                    samples[kind].append(result)
                    extra = f", {result['batches']} batches" if kind == "sweep" else ""
                    log(f"  [s3] {kind}: {result['seconds']:.2f} s{extra}")
                    for problem in result["problems"]:
                        log(f"  [s3] {kind}: VERIFICATION FAILED: {problem}")
        except (SystemExit, Exception) as e:  # printed, not judged: report and go on
            log(f"[s3] failed: {e}")
            figures["s3"] = f"failed: {type(e).__name__}"
            return figures
    bare = statistics.median(r["seconds"] for r in samples["bare"])
    sweep = statistics.median(r["seconds"] for r in samples["sweep"])
    parts = sorted(samples["sweep"], key=lambda r: r["seconds"])[(len(samples["sweep"]) - 1) // 2]
    figures |= {
        "s3_bare_s": round(bare, 3),
        "s3_sweep_s": round(sweep, 3),
        "s3_ratio": ratio(sweep, bare),
        "s3_sweep_breakdown_s": parts["parts"],
        "s3_sweep_peak_rss_mb": max(r["peak_rss_mb"] for r in samples["sweep"]),
        "s3_problems": sorted(
            {f"{k}: {p}" for k, rs in samples.items() for r in rs for p in r["problems"]}
        ),
    }
    log(f"[s3] median bare loop {bare:.2f} s, sweep {sweep:.2f} s, ratio {figures['s3_ratio']}")
    return figures


# -- entry point --------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    """Every part, in a temp dir (configs, SQLite files) and scratch databases, then the line."""
    from engine.sweep_runner import DEFAULT_BATCH_SIZE

    figures: dict[str, Any] = {
        "audit_db": "sqlite file" if args.audit == "sqlite" else "postgresql",
        "batch_size": DEFAULT_BATCH_SIZE,
        "rounds": args.rounds,
    }
    with tempfile.TemporaryDirectory(prefix="lc-bench-retention-") as name, ExitStack() as stack:
        tmp = Path(name)
        if args.audit == "sqlite":
            audit_url = f"sqlite:///{tmp / 'audit.db'}"
        else:
            audit_url = stack.enter_context(scratch_postgres())
        log(
            f"retention sweep vs raw DELETE: {args.rows:,} rows, {args.rounds} rounds, "
            f"batch {DEFAULT_BATCH_SIZE:,}, audit database: {figures['audit_db']}"
        )
        if args.only in (None, "postgresql"):
            figures |= postgres_part(args, tmp, audit_url)
        if args.sqlite_rows and args.only in (None, "sqlite"):
            figures |= sqlite_part(args, tmp, audit_url)
        if args.s3_objects and args.only in (None, "s3"):
            figures |= s3_part(args, tmp, audit_url)
    limits = {
        "postgresql_ratio_time_ordered": RATIO_TARGET,
        "postgresql_ratio_interleaved": INTERLEAVED_TARGET,
        "postgresql_keys_ratio_time_ordered": KEYS_TARGET,
        "s3_ratio": S3_TARGET,
    }
    if args.only is not None:  # one part: judge what it measured
        measured = {"postgresql": "postgresql_", "sqlite": "sqlite_", "s3": "s3_"}[args.only]
        limits = {name: limit for name, limit in limits.items() if name.startswith(measured)}
    met = {name: _within(figures.get(name), limit) for name, limit in limits.items()}
    targets = {name: f"<= {limit}" for name, limit in limits.items()}
    if "peak_rss_mb" in figures:  # the PostgreSQL part's sweeps
        met["peak_rss_mb"] = figures["peak_rss_mb"] < RSS_TARGET_MB
        targets["peak_rss_mb"] = f"< {RSS_TARGET_MB:g}"
    emit_result("retention", figures, targets, met)


def _within(value: Any, limit: float) -> bool:
    """A measured ratio at most ``limit``; False when it was not measured (skipped, failed)."""
    return isinstance(value, int | float) and value <= limit


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--rows", type=int, help=f"PostgreSQL rows (default {ROWS:,})")
    parser.add_argument("--rounds", type=int, help=f"rounds per method (default {ROUNDS})")
    parser.add_argument(
        "--batch-rounds", type=int, help=f"rounds per batch size (default {BATCH_ROUNDS}; 0: skip)"
    )
    parser.add_argument(
        "--batch-sizes",
        type=lambda text: [int(v) for v in text.split(",")],
        default=list(BATCH_SIZES),
        help="comma-separated sweep batch sizes to compare (default 20000,50000,100000)",
    )
    parser.add_argument("--sqlite-rows", type=int, help=f"(default {SQLITE_ROWS:,}; 0: skip)")
    parser.add_argument("--s3-objects", type=int, help=f"(default {S3_OBJECTS:,}; 0: skip)")
    parser.add_argument("--s3-rounds", type=int, default=1, help="rounds per S3 method")
    parser.add_argument("--audit", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--only",
        choices=("postgresql", "sqlite", "s3"),
        help="run one part only (e.g. s3: the S3 sweep against the bare loop)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker_main(json.loads(args.worker))
        return
    quick = args.quick
    defaults = {
        "rows": QUICK_ROWS if quick else ROWS,
        "rounds": 1 if quick else ROUNDS,
        "batch_rounds": 1 if quick else BATCH_ROUNDS,
        "sqlite_rows": QUICK_SQLITE_ROWS if quick else SQLITE_ROWS,
        "s3_objects": QUICK_S3_OBJECTS if quick else S3_OBJECTS,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.rows < 2 or args.rounds < 1 or args.s3_rounds < 1:
        parser.error("--rows must be at least 2, --rounds and --s3-rounds at least 1")
    run(args)


if __name__ == "__main__":
    main()
