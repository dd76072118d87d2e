"""Bulk-request benchmark: 1,000 erasures as one batch against the same requests one by one.

Run: ``python -m benchmarks.request_batch [--customers N] [--singles N] [--batch-size N]
[--audit sqlite|postgresql] [--profile [FILE]]`` (also ``python -m benchmarks.requests --batch``).

On PostgreSQL it builds, server-side (``demo.bulk_pg``, with households), the demo CRM with
``--customers`` customers (default 1,000,000, about ten related rows each), in a scratch
database dropped at the end, and writes a configuration for it in a scratch folder: the
demo's ``crm`` store (plus its ``addresses`` table) at that database, the demo policy
(erasure approved automatically) without the rules about the demo's other stores. The
ledger and request register live in a SQLite file in the scratch data folder
(``--audit postgresql``: a scratch PostgreSQL database). Flows run in this process
against one Prefect test server for the whole run, warmed up by one request (a customer
of its own) whose time is not counted. Then, for distinct customers chosen at random:

1. singles: ``--singles`` requests (default 20), each registered (``engine.intake.submit``)
   and run as its own flow run (``flows.subject_request``), timed one by one and
   extrapolated to the batch's size;
2. the batch: ``--batch-size`` requests (default 1,000) written to a CSV batch file,
   registered (``engine.batch_intake.register_batch``) and run as one flow run
   (``flows.subject_batch``), registration and run timed together and apart.

Half the singles run before the batch and half after it, so that a change in the shared
machine's load falls on both sides. Judged: the throughput ratio, singles' mean seconds
per request over the batch's (registration included on both sides), target >= 20; and
the CRM database's work, the time its statements took (SQLAlchemy
``before/after_cursor_execute`` on every engine, counted for connections to the scratch
CRM database only), the batch's over the singles' extrapolated to the batch's size,
target <= 3. The statements per request are printed by kind (``catalog``: schema
reflection and index checks; else the verb), with the connection checkouts. Afterwards,
outside the timing, it checks that every request completed with exactly one
``request.completed`` ledger event, that each requested customer's row is gone, that the
customer count fell by exactly the number of requests (the warm-up's included), and that
a sample of other customers, with their orders and invoices, is unchanged.
``--profile`` runs the batch under cProfile (every thread the run starts too) and prints
the functions with the largest cumulative and own times (and saves the statistics in
FILE, for ``pstats``); its timings then include the profiler's overhead.
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
import io
import os
import pstats
import random
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from benchmarks.common import emit_result, log, peak_rss_mb, ratio, scratch_postgres, timed

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = PROJECT_ROOT / "config" / "demo"
DEFAULT_CUSTOMERS = 1_000_000
DEFAULT_SINGLES = 20
DEFAULT_BATCH = 1_000
THROUGHPUT_TARGET = 20.0
DB_WORK_TARGET = 3.0
SAMPLE = 200  # customers not requested whose rows must be unchanged
SEED = 15  # the customers chosen: the same ones in every run of a size
PROFILE_TOP = 40
MASTER_KEY = base64.b64encode(b"benchmark-master-key-not-secret!").decode()
REQUESTER = "benchmark"


def statement_kind(statement: str) -> str:
    """What a statement is, for the breakdown: ``catalog`` (schema reflection, index
    checks), else its verb (SELECT, DELETE, UPDATE, ...)."""
    if "pg_catalog" in statement or "information_schema" in statement or "pg_" in statement:
        return "catalog"
    words = statement.split(None, 1)
    return words[0].upper() if words else "?"


class StatementClock:
    """Time spent in statements on connections to one database, from every engine.

    Listens on the ``Engine`` class (engines made later included: the connector makes its
    own), keeping each connection's start times in ``conn.info`` (a connection belongs to
    one thread at a time) and the sums under a lock (stores run in threads). Counts
    statements by ``statement_kind`` and the connections opened to the database.
    """

    _KEY = "request_batch_bench_started"

    def __init__(self, database: str) -> None:
        self.database = database
        self.seconds = 0.0
        self.statements = 0
        self.kinds: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _mine(self, conn: sa.Connection) -> bool:
        return conn.engine.url.database == self.database

    def _before(self, conn: sa.Connection, *_args: Any) -> None:
        if self._mine(conn):
            conn.info.setdefault(self._KEY, []).append(time.perf_counter())

    def _after(self, conn: sa.Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        started = conn.info.get(self._KEY) if self._mine(conn) else None
        if started:
            elapsed = time.perf_counter() - started.pop()
            with self._lock:
                self.seconds += elapsed
                self.statements += 1
                self.kinds[statement_kind(statement)] += 1

    def reading(self) -> tuple[float, int, Counter[str]]:
        with self._lock:
            return self.seconds, self.statements, Counter(self.kinds)

    @contextmanager
    def listening(self) -> Iterator[StatementClock]:
        sa.event.listen(Engine, "before_cursor_execute", self._before)
        sa.event.listen(Engine, "after_cursor_execute", self._after)
        sa.event.listen(Engine, "engine_connect", self._on_connect)
        try:
            yield self
        finally:
            sa.event.remove(Engine, "before_cursor_execute", self._before)
            sa.event.remove(Engine, "after_cursor_execute", self._after)
            sa.event.remove(Engine, "engine_connect", self._on_connect)

    def _on_connect(self, conn: sa.Connection) -> None:
        if self._mine(conn):
            with self._lock:
                self.kinds["(checkouts)"] += 1


@dataclass
class Phase:
    """One measured part: wall seconds, and the CRM statements' seconds and count."""

    seconds: float = 0.0
    db_seconds: float = 0.0
    statements: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def __add__(self, other: Phase) -> Phase:
        return Phase(
            self.seconds + other.seconds,
            self.db_seconds + other.db_seconds,
            self.statements + other.statements,
            self.kinds + other.kinds,
        )


@contextmanager
def measured(clock: StatementClock, into: Phase) -> Iterator[None]:
    """Add the block's wall time and the CRM statements it caused to ``into``."""
    db_before, n_before, kinds_before = clock.reading()
    start = time.perf_counter()
    try:
        yield
    finally:
        into.seconds += time.perf_counter() - start
        db_after, n_after, kinds_after = clock.reading()
        into.db_seconds += db_after - db_before
        into.statements += n_after - n_before
        into.kinds.update(kinds_after - kinds_before)


@dataclass
class Subjects:
    """The customers requested: the warm-up, the singles, the batch; and a sample of others."""

    warm_up: int
    singles: list[int]
    batch: list[int]
    others: list[int] = field(default_factory=list)

    @property
    def requested(self) -> list[int]:
        return [self.warm_up, *self.singles, *self.batch]


def choose_subjects(customers: int, singles: int, batch: int) -> Subjects:
    """Distinct customers spread at random over the whole id range (fixed seed)."""
    rng = random.Random(SEED)
    wanted = 1 + singles + batch
    chosen = rng.sample(range(1, customers + 1), wanted + SAMPLE)
    return Subjects(
        chosen[0], chosen[1 : 1 + singles], chosen[1 + singles : wanted], chosen[wanted:]
    )


# -- configuration and environment ----------------------------------------------------------


def write_config(folder: Path, crm_url: str) -> Path:
    """The demo's ``crm`` store at ``crm_url`` with ``addresses`` declared (as
    ``demo.bulk_pg.household_inventory`` does), and the demo policy without what concerns
    the demo's other stores (erasure approved automatically, as in the demo)."""
    inventory = yaml.safe_load((DEMO_CONFIG / "inventory.yaml").read_text())
    (crm,) = [s for s in inventory["stores"] if s["name"] == "crm"]
    crm = {**crm, "url": crm_url}
    crm["tables"] = [
        *crm["tables"],
        {
            "name": "addresses",
            "description": "Postal addresses; a household shares one",
            "primary_key": ["id"],
            "fields": {"line1": ["contact"], "postcode": ["contact"]},
        },
    ]
    policy = yaml.safe_load((DEMO_CONFIG / "policy.yaml").read_text())
    if not policy["requests"]["approval"].get("auto_approve"):
        raise SystemExit("the demo policy no longer approves erasures automatically")
    policy["retention"] = [r for r in policy.get("retention", []) if r.get("store") == "crm"]
    policy["legal_holds"] = [
        h for h in policy.get("legal_holds", []) if h.get("scope", {}).get("store") == "crm"
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inventory.yaml").write_text(yaml.safe_dump({"stores": [crm]}, sort_keys=False))
    (folder / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


@contextmanager
def environment(root: Path, config: Path, audit_url: str | None) -> Iterator[None]:
    """The product's settings for the scratch folders, and one Prefect test server."""
    saved = dict(os.environ)
    key_file = root / "master.key"
    key_file.write_text(MASTER_KEY + "\n")
    key_file.chmod(0o600)
    os.environ.update(
        {
            "LIFECYCLE_DATA_DIR": str(root / "data"),
            "LIFECYCLE_CONFIG_DIR": str(config),
            "LIFECYCLE_KEY_FILE": str(key_file),
            "LIFECYCLE_ACTOR": REQUESTER,
            "PREFECT_HOME": str(root / "prefect-home"),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
    )
    for name in ("LIFECYCLE_MASTER_KEY", "LIFECYCLE_AUDIT_URL", "PREFECT_API_URL"):
        os.environ.pop(name, None)
    if audit_url is not None:
        os.environ["LIFECYCLE_AUDIT_URL"] = audit_url
    from config.settings import get_settings

    get_settings.cache_clear()
    try:
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


# -- the two ways -----------------------------------------------------------------------------


def email(customer: int) -> str:
    from demo.bulk_pg import customer_email

    return customer_email(customer)


def run_single(customer: int, clock: StatementClock) -> tuple[str, Phase, Phase]:
    """Register and run one request: its id, the registration's and the run's figures."""
    from engine.intake import submit
    from engine.request_support import request_context
    from flows.subject_request import subject_request

    registration, run = Phase(), Phase()
    with measured(clock, registration):
        record = submit(
            request_context(),
            kind="erasure",
            identity={"email": email(customer)},
            requested_by=REQUESTER,
        )
    with measured(clock, run):
        outcome = subject_request(request_id=record.id)
    if outcome.status != "completed":
        raise SystemExit(f"request {record.id} ended {outcome.status}")
    return record.id, registration, run


def write_batch_file(path: Path, customers: Sequence[int]) -> Path:
    lines = ["kind,identity,requested_by"]
    lines += [f"erasure,email={email(c)},{REQUESTER}" for c in customers]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class ThreadProfiles:
    """cProfile in the calling thread and in every thread started while it runs."""

    def __init__(self) -> None:
        self.main = cProfile.Profile()
        self.threads: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _start_in_thread(self, *_args: Any) -> None:
        profile = cProfile.Profile()
        with self._lock:
            self.threads.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread

    @contextmanager
    def running(self) -> Iterator[None]:
        threading.setprofile(self._start_in_thread)
        self.main.enable()
        try:
            yield
        finally:
            self.main.disable()
            threading.setprofile(None)
            with self._lock:
                for profile in self.threads:
                    profile.disable()

    def report(self, top: int, path: str | None) -> str:
        """The top functions by cumulative and by own time; all of it in ``path`` if given."""
        stats = pstats.Stats(self.main, stream=(out := io.StringIO()))
        for profile in self.threads:
            try:
                stats.add(profile)
            except TypeError:  # a thread that recorded nothing
                continue
        if path:
            stats.dump_stats(path)
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top // 2)
        return out.getvalue()


def run_batch(
    root: Path, customers: Sequence[int], clock: StatementClock, profile: str | None
) -> tuple[list[str], Phase, Phase, str | None]:
    """Register the batch file and run it: request ids, both phases, the profile if any."""
    from engine.batch_file import read_batch
    from engine.batch_intake import register_batch
    from engine.request_support import request_context
    from flows.subject_batch import subject_batch

    path = write_batch_file(root / "batch.csv", customers)
    registration, run = Phase(), Phase()
    with measured(clock, registration):
        registered = register_batch(request_context(), read_batch(path), requested_by=REQUESTER)
    if registered.refused or len(registered.accepted) != len(customers):
        raise SystemExit(f"batch lines refused: {registered.refused[:5]}")
    log(f"[batch] {len(customers):,} requests registered in {registration.seconds:.1f} s")
    profiles = ThreadProfiles() if profile is not None else None
    with measured(clock, run), profiles.running() if profiles else ExitStack():
        outcome = subject_batch(batch_id=registered.batch_id)
    statuses = Counter(item.status for item in outcome.items)
    if statuses != {"completed": len(customers)}:
        raise SystemExit(f"batch run ended with {dict(statuses)}")
    report = profiles.report(PROFILE_TOP, profile) if profiles else None
    return registered.request_ids, registration, run, report


# -- checks ---------------------------------------------------------------------------------


def snapshot(engine: Engine, ids: Sequence[int]) -> dict[str, list[tuple[Any, ...]]]:
    """Customers ``ids`` with their orders and invoices, every column, in key order."""
    from demo.bulk_pg import household_metadata

    md = household_metadata()
    found: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for name, column in (
            ("customers", "id"),
            ("orders", "customer_id"),
            ("invoices", "customer_id"),
        ):
            table = md.tables[name]
            query = (
                sa.select(table).where(table.c[column].in_(list(ids))).order_by(*table.primary_key)
            )
            found[name] = [tuple(row) for row in conn.execute(query)]
    return found


def customer_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM customers")).scalar_one())


def check_outcome(
    engine: Engine, subjects: Subjects, request_ids: Sequence[str], before: tuple[int, Any]
) -> None:
    """Every request completed once; requested customers gone, nobody else touched."""
    from engine.request_support import request_context
    from state.register import RequestStatus

    count_before, others_before = before
    ctx = request_context()
    open_ = [r for r in request_ids if ctx.register.get(r).status is not RequestStatus.COMPLETED]
    if open_:
        raise SystemExit(f"{len(open_)} request(s) not completed, e.g. {open_[0]}")
    completed = Counter(e.request_id for e in ctx.ledger.events(kinds=["request.completed"]))
    wrong = [r for r in request_ids if completed.get(r) != 1]
    if wrong or set(completed) - set(request_ids):
        raise SystemExit(f"request.completed events not one per request (e.g. {wrong[:1]})")
    left = snapshot(engine, subjects.requested)["customers"]
    if left:
        raise SystemExit(f"{len(left)} requested customer(s) still there")
    expected = count_before - len(subjects.requested)
    if customer_count(engine) != expected:
        raise SystemExit(f"customers: {customer_count(engine):,}, expected {expected:,}")
    if snapshot(engine, subjects.others) != others_before:
        raise SystemExit("a customer who was not requested (or their rows) changed")


# -- the run --------------------------------------------------------------------------------


def _build(url: str, customers: int) -> int:
    from core.engines import make_engine
    from demo.bulk_pg import build_crm

    engine = make_engine(url)
    try:
        log(f"building {customers:,} customers server-side, with households")
        build = partial(build_crm, engine, customers, progress=log, households=True)
        seconds, counts = timed(build)
    finally:
        engine.dispose()
    log(f"{sum(counts.values()):,} rows in {len(counts)} tables in {seconds:.1f} s")
    return sum(counts.values())


def _singles(
    customers: Sequence[int], clock: StatementClock, label: str
) -> tuple[list[str], list[Phase]]:
    ids: list[str] = []
    totals: list[Phase] = []
    for i, customer in enumerate(customers, start=1):
        request_id, registration, run = run_single(customer, clock)
        ids.append(request_id)
        totals.append(registration + run)
        log(
            f"  [single, {label}] {i}/{len(customers)}: {totals[-1].seconds:.2f} s "
            f"(registration {registration.seconds * 1000:.0f} ms), "
            f"{totals[-1].statements} CRM statements in {totals[-1].db_seconds * 1000:.1f} ms"
        )
    return ids, totals


def per_request(kinds: Counter[str], requests: int) -> dict[str, float]:
    """CRM statements (and connection checkouts) per request, by kind."""
    return {k: round(n / requests, 1) for k, n in sorted(kinds.items())}


def measure(
    root: Path, crm_url: str, subjects: Subjects, profile: str | None
) -> tuple[dict[str, Any], str | None]:
    """Warm up; half the singles, the batch, the other half (a change in the shared
    machine's load then falls on both sides); check. The figures and the profile."""
    from core.engines import make_engine

    clock = StatementClock(make_url(crm_url).database or "")
    engine = make_engine(crm_url)
    half = (len(subjects.singles) + 1) // 2
    try:
        before = (customer_count(engine), snapshot(engine, subjects.others))
        with clock.listening():
            log("warm-up: one request (Prefect server, caches, connections), not counted")
            warm_id = run_single(subjects.warm_up, clock)[0]
            first_ids, first = _singles(subjects.singles[:half], clock, "before the batch")
            batch_ids, registration, run, report = run_batch(root, subjects.batch, clock, profile)
            last_ids, last = _singles(subjects.singles[half:], clock, "after the batch")
        log(f"[batch] run in {run.seconds:.1f} s, {run.statements:,} CRM statements")
        request_ids = [warm_id, *first_ids, *batch_ids, *last_ids]
        check_outcome(engine, subjects, request_ids, before)
        log("checked: every request completed once, requested customers gone, others unchanged")
    finally:
        engine.dispose()
    singles = first + last
    n, size = len(singles), len(subjects.batch)
    single_mean = statistics.fmean(p.seconds for p in singles)
    single_db = sum(p.db_seconds for p in singles) * size / n
    batch = registration + run
    figures: dict[str, Any] = {
        "singles": n,
        "batch_size": size,
        "single_request_s_median": round(statistics.median(p.seconds for p in singles), 3),
        "single_request_s_mean": round(single_mean, 3),
        "single_request_s_mean_before_after": [
            round(statistics.fmean(p.seconds for p in side), 3) for side in (first, last) if side
        ],
        "singles_total_s": round(sum(p.seconds for p in singles), 2),
        "singles_extrapolated_s": round(single_mean * size, 1),
        "batch_request_s": round(batch.seconds / size, 4),
        "batch_registration_s": round(registration.seconds, 2),
        "batch_run_s": round(run.seconds, 2),
        "batch_total_s": round(batch.seconds, 2),
        "throughput_ratio": ratio(single_mean, batch.seconds / size),
        "single_db_ms_median": round(statistics.median(p.db_seconds for p in singles) * 1000, 2),
        "singles_db_extrapolated_s": round(single_db, 2),
        "batch_db_s": round(batch.db_seconds, 2),
        "db_work_ratio": ratio(batch.db_seconds, single_db),
        "single_statements_per_request": per_request(sum((p.kinds for p in singles), Counter()), n),
        "batch_statements_per_request": per_request(batch.kinds, size),
        "profiled": profile is not None,
    }
    return figures, report


def run(customers: int, singles: int, batch: int, audit: str, profile: str | None) -> None:
    """Build the CRM, measure, check, print the JSON line; scratch databases always dropped."""
    subjects = choose_subjects(customers, singles, batch)
    figures: dict[str, Any] = {"customers": customers, "audit": audit}
    with tempfile.TemporaryDirectory(prefix="lc-bench-batch-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        crm_url = stack.enter_context(scratch_postgres())
        audit_url = stack.enter_context(scratch_postgres()) if audit == "postgresql" else None
        figures["rows"] = _build(crm_url, customers)
        config = write_config(root / "config", crm_url)
        stack.enter_context(environment(root, config, audit_url))
        measured_figures, report = measure(root, crm_url, subjects, profile)
        figures.update(measured_figures)
        from audit.database import audit_engine

        audit_engine().dispose()  # before its scratch database is dropped
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if report:
        log(
            f"profile of the batch run (top {PROFILE_TOP} by cumulative time, "
            f"then by own time):\n{report}"
        )
    targets = {
        "throughput_ratio": f">= {THROUGHPUT_TARGET}",
        "db_work_ratio": f"<= {DB_WORK_TARGET}",
    }
    met = {
        "throughput_ratio": figures["throughput_ratio"] >= THROUGHPUT_TARGET,
        "db_work_ratio": figures["db_work_ratio"] <= DB_WORK_TARGET,
    }
    emit_result("request_batch", figures, targets, met)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS, help="CRM size")
    parser.add_argument(
        "--singles", type=int, default=DEFAULT_SINGLES, help="requests run one by one"
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH, help="requests in the batch"
    )
    parser.add_argument(
        "--audit",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="ledger and register database (default: SQLite file in the scratch folder)",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="",
        default=None,
        metavar="FILE",
        help="cProfile the batch run, print the top costs (and save the statistics in FILE)",
    )
    args = parser.parse_args(argv)
    least = 1 + args.singles + args.batch_size + SAMPLE
    if args.singles < 1 or args.batch_size < 1 or args.customers < least:
        parser.error(f"--singles and --batch-size at least 1, --customers at least {least}")
    run(args.customers, args.singles, args.batch_size, args.audit, args.profile)


if __name__ == "__main__":
    main()
