"""Incident benchmark: assessing a breach's scope from the stores against the bare queries.

Run: ``python -m benchmarks.incidents [--quick] [--rows N] [--objects N] [--rounds N]
[--only postgresql|s3]`` (``--quick``: 200,000 rows and 2,000 objects, one round).

PostgreSQL (issue 17: "assessing a scope of 10M rows ... within 1.5x of one hand-written
``SELECT count(*), count(DISTINCT ...)`` over the same scope"). A scratch database, dropped
at the end, built once server-side with ``generate_series``: ``customers`` (``--rows``/10
rows: ``id bigint`` primary key, ``email`` ``user<n>@example.com``) and ``events``
(``--rows`` rows, default 10,000,000: ``id bigint`` primary key, ``customer_id`` a foreign
key to ``customers``, spread over them by ``hashint8``, ``occurred_at timestamptz`` rising
with ``id`` over one year, an IPv4 text ``ip``), with an index on ``occurred_at``, as an
event table queried by time has; both tables UNLOGGED (no WAL while building),
autovacuum off (no vacuum starts in a round) and ``VACUUM ANALYZE``d once built (hint bits
set, statistics there). The scope: ``events`` in the middle third of the year (exactly a
third of the rows, a window on ``occurred_at``), counted by the identity that reaches it
(``customers.id`` derived as ``customer_id``, through the foreign key).

S3 (issue 17: "S3 prefix of 20k objects within 1.5x of a bare listing"): a local moto
server over HTTP (``demo.s3_server.LocalS3``: ``moto.server.ThreadedMotoServer`` on a free
port, in this process) with one bucket holding ``--objects`` objects (default 20,000)
under ``tickets/<customer_id>/<n>.txt``, four per customer, which the bucket's key template
``tickets/{customer_id}/`` reads as subjects, and a tenth as many again outside the prefix
(``exports/``, ``tickets-archive/``). Seeded once, with a pool of ``put_object`` calls.

Rounds alternate (ABBA: baseline, count, assessment; assessment, count, baseline; ...),
each method in a fresh interpreter (this module with ``--worker``) that has imported its
modules and the database driver or boto3, loaded the config and keys and opened the
incident register before its clock starts (import time is printed, not judged):

- PostgreSQL baseline: engine, a fresh connection, ``SELECT count(*), count(DISTINCT
  customer_id) FROM events WHERE occurred_at >= :s AND occurred_at < :e``, the row fetched;
- S3 baseline: a default boto3 client and a ``list_objects_v2`` paginator over the prefix,
  every page fetched and its keys counted;
- assessment (judged): ``engine.incident_assessment.assess_incident`` of an incident
  registered once beforehand (reported, declared a confidentiality breach, scoped to the
  one part: ``events`` in the window, or the bucket's prefix): the steps the
  ``incident-assessment`` flow runs as tasks, in turn and without Prefect (whose task runs
  cost a constant tens of milliseconds): its connectors made on first use (``StoreConnectors``)
  and closed at the end, the store's encryption at rest from its posture hook, the part
  counted, the risk judged and the assessment recorded with its ledger event in the audit
  database (a SQLite file in the run's temp dir, the product's default). Split (printed)
  into its steps: ``assessable``, ``at_rest``, ``count``, ``subjects``, ``record``;
- count (reported, not judged): ``connectors.registry.connector_for(store, policy, keys)``
  then ``count_impact(part)``, the connector closed: engine or client, schema reflection,
  the read-only transaction and the statement(s), or the listing. On PostgreSQL split into
  ``setup`` (``connector_for``), ``reflect`` (the connector's schema, its first connection
  included), ``statement`` (the slowest statement, timed at the cursor) and ``other``.

After every product round its answer is checked, so a wrong answer is not a fast one:
records and subjects equal the first baseline round's (PostgreSQL; the baseline's records
must equal the rows seeded in the window) or the seeded truth (S3: every object under the
prefix, the distinct customers seeded), and the identity is ``customer_id``. On PostgreSQL
every worker also ``EXPLAIN``s (no ANALYZE, after its clock) its slowest statement: the
plans' node outlines are printed and ``postgresql_same_plan`` says whether they match.

Targets: median assessment / median baseline <= 1.5 on PostgreSQL and on S3 (a wrong
answer in any product round fails them); the product workers' peak RSS (``VmHWM``, their
own address space: ``process_peak_rss_mb``) < 300 MB.
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
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import sqlalchemy as sa
import yaml

from benchmarks.common import emit_result, log, process_peak_rss_mb, ratio, scratch_postgres

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ROWS, QUICK_ROWS = 10_000_000, 200_000
CUSTOMERS_PER_ROW = 10  # customers: a tenth of the events
OBJECTS, QUICK_OBJECTS = 20_000, 2_000
OBJECTS_PER_CUSTOMER = 4
OUTSIDE_EVERY = 10  # one object outside the prefix per ten inside
ROUNDS = 5
RATIO_TARGET = 1.5  # both stores
RSS_TARGET_MB = 300.0
MASTER_KEY = base64.b64encode(b"benchmark-only-master-key-not-secret!").decode()
REGION: Final = "eu-central-1"
SQL_STORE, S3_STORE = "shop", "files"
BUCKET = "bench-incidents"
PREFIX = "tickets/"
OUTSIDE_PREFIXES = ("exports/", "tickets-archive/")
SEED_WORKERS = 16
T0 = datetime(2024, 1, 1, tzinfo=UTC)
YEAR_US = 365 * 86_400 * 1_000_000

BASELINE_SQL = (
    "SELECT count(*), count(DISTINCT customer_id) FROM events "
    "WHERE occurred_at >= :s AND occurred_at < :e"
)


# -- configuration ------------------------------------------------------------------------


def write_config(folder: Path, sql_url: str, s3_endpoint: str | None = None) -> Path:
    """An inventory with the SQL store at ``sql_url`` (and the moto bucket), and a policy.

    The bucket's key template names ``customer_id``, which only the SQL store's
    ``customers`` derive: the S3 part declares that store too (a SQLite file it never opens).
    """
    stores: list[dict[str, Any]] = [
        {
            "name": SQL_STORE,
            "type": "sql",
            "url": sql_url,
            "region": REGION,
            "tables": [
                {
                    "name": "customers",
                    "primary_key": ["id"],
                    "identity": [{"column": "email", "kind": "email", "case_insensitive": True}],
                    "derives": [{"column": "id", "as": "customer_id"}],
                    "fields": {"email": ["contact"]},
                },
                {
                    "name": "events",
                    "primary_key": ["id"],
                    "fields": {"ip": ["telemetry"], "occurred_at": ["telemetry"]},
                    "timestamps": {"created": "occurred_at"},
                },
            ],
        }
    ]
    if s3_endpoint is not None:
        stores.append(
            {
                "name": S3_STORE,
                "type": "s3",
                "region": REGION,
                "endpoint_url": s3_endpoint,
                "buckets": [
                    {
                        "name": BUCKET,
                        "categories": ["support"],
                        "key_templates": [PREFIX + "{customer_id}/"],
                    }
                ],
            }
        )
    policy = {
        "categories": [
            {"name": "contact", "description": "Benchmark e-mail addresses"},
            {"name": "telemetry", "description": "Benchmark events and IP addresses"},
            {"name": "support", "description": "Benchmark ticket attachments"},
        ],
        "requests": {
            "deadline_days": 30,
            "approval": {
                "required_for": ["erasure"],
                "approvers": ["privacy-officer"],
                "unverified_ui": True,
            },
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inventory.yaml").write_text(yaml.safe_dump({"stores": stores}, sort_keys=False))
    (folder / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


def window(rows: int) -> tuple[datetime, datetime, int]:
    """The scope's window (the middle third of the year) and the events inside it.

    Event ``g`` (1..rows) occurred at ``T0 + (g - 1) * step``: the rows in the window are
    exactly those of ``lo <= g - 1 < hi``."""
    step = YEAR_US // rows
    lo, hi = rows // 3, 2 * rows // 3
    start = T0 + timedelta(microseconds=lo * step)
    end = T0 + timedelta(microseconds=hi * step)
    return start, end, hi - lo


# -- PostgreSQL: the data -----------------------------------------------------------------


def build_postgres(url: str, rows: int) -> dict[str, Any]:
    """``customers`` and ``events``, keys, the foreign key and the index; build figures."""
    from core.engines import make_engine

    customers = max(1, rows // CUSTOMERS_PER_ROW)
    engine = make_engine(url, isolation_level="AUTOCOMMIT")
    start = time.perf_counter()
    steps: tuple[tuple[str, str, dict[str, Any]], ...] = (
        (
            "customers",
            "CREATE UNLOGGED TABLE customers WITH (autovacuum_enabled = false) AS "
            "SELECT g::bigint AS id, 'user' || g || '@example.com' AS email "
            "FROM generate_series(1::bigint, :customers) AS g",
            {"customers": customers},
        ),
        ("customers key", "ALTER TABLE customers ADD PRIMARY KEY (id)", {}),
        (
            "events",
            # hashint8 spreads the events over the customers (a customer's events are not
            # next to each other); (g - 1) * step microseconds after T0 is exact.
            "CREATE UNLOGGED TABLE events WITH (autovacuum_enabled = false) AS "
            "SELECT g::bigint AS id, "
            "(hashint8(g)::bigint + 2147483648) % :customers + 1 AS customer_id, "
            "CAST(:t0 AS timestamptz) + ((g - 1) * :step) * interval '1 microsecond' "
            "AS occurred_at, "
            "'10.' || (g / 65536) % 256 || '.' || (g / 256) % 256 || '.' || g % 256 AS ip "
            "FROM generate_series(1::bigint, :rows) AS g",
            {"customers": customers, "rows": rows, "t0": T0, "step": YEAR_US // rows},
        ),
        ("events key", "ALTER TABLE events ADD PRIMARY KEY (id)", {}),
        (
            "foreign key",
            "ALTER TABLE events ADD CONSTRAINT events_customer_fk "
            "FOREIGN KEY (customer_id) REFERENCES customers (id)",
            {},
        ),
        ("index", "CREATE INDEX events_occurred_at_idx ON events (occurred_at)", {}),
        ("vacuum", "VACUUM ANALYZE customers", {}),
        ("vacuum", "VACUUM ANALYZE events", {}),
    )
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET maintenance_work_mem = '256MB'")
            for label, statement, params in steps:
                begun = time.perf_counter()
                conn.execute(sa.text(statement), params)
                log(f"  {label}: {time.perf_counter() - begun:.1f} s")
            size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
    finally:
        engine.dispose()
    return {
        "customers": customers,
        "build_s": round(time.perf_counter() - start, 1),
        "database_gb": round(int(size or 0) / 1024**3, 2),
    }


# -- S3: the data -------------------------------------------------------------------------


def object_key(n: int, customers: int) -> str:
    """Object ``n`` (0-based) under the prefix: its customer is ``n % customers + 1``."""
    return f"{PREFIX}{n % customers + 1}/{n:06d}.txt"


def seed_s3(client: S3Client, objects: int) -> dict[str, Any]:
    """The bucket: ``objects`` under the prefix and a tenth as many outside; figures."""
    customers = max(1, objects // OBJECTS_PER_CUSTOMER)
    outside = objects // OUTSIDE_EVERY
    keys = [object_key(n, customers) for n in range(objects)]
    keys += [f"{OUTSIDE_PREFIXES[n % 2]}{n:06d}.txt" for n in range(outside)]
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    done = 0
    start = time.perf_counter()

    def put(key: str) -> None:
        nonlocal done
        client.put_object(Bucket=BUCKET, Key=key, Body=b"fictional benchmark ticket\n")
        done += 1  # read for progress only: an approximate count is fine
        if done % 2000 == 0:
            log(f"  seeded {done:,}/{len(keys):,} objects ({time.perf_counter() - start:.0f} s)")

    with ThreadPoolExecutor(max_workers=SEED_WORKERS) as pool:
        list(pool.map(put, keys))
    return {
        "s3_objects": objects,
        "s3_objects_outside_prefix": outside,
        "s3_customers": min(customers, objects),
        "seed_s": round(time.perf_counter() - start, 1),
    }


# -- the workers --------------------------------------------------------------------------


class _Statements:
    """Every statement's seconds, at the cursor (any engine of the process)."""

    def __init__(self) -> None:
        self.timed: list[tuple[float, str, Any]] = []  # seconds, statement, parameters
        self._started: dict[int, float] = {}

    def install(self) -> None:
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._before)
        sa.event.listen(sa.engine.Engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        self._started[id(cursor)] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        begun = self._started.pop(id(cursor), None)
        if begun is not None:
            self.timed.append((time.perf_counter() - begun, statement, parameters))

    def slowest(self) -> tuple[float, str, Any]:
        return max(self.timed, key=lambda t: t[0]) if self.timed else (0.0, "", None)


def plan_outline(url: str, statement: str, parameters: Any) -> list[str]:
    """The node types of ``EXPLAIN`` of ``statement`` (not run), depth-first."""
    from core.engines import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
            conn.rollback()
    finally:
        engine.dispose()
    outline: list[str] = []

    def walk(node: Mapping[str, Any], depth: int) -> None:
        name = str(node.get("Node Type"))
        detail = node.get("Index Name") or node.get("Relation Name")
        outline.append("  " * depth + name + (f" ({detail})" if detail else ""))
        for child in node.get("Plans", ()):
            walk(child, depth + 1)

    doc = plan if isinstance(plan, list) else json.loads(str(plan))
    walk(doc[0]["Plan"], 0)
    return outline


def _import_driver(url: str) -> None:
    # A process that has assessed before has the driver loaded; the baseline's too.
    sa.engine.make_url(url).get_dialect().import_dbapi()


def pg_baseline_worker(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The hand-written count on a fresh engine and connection."""
    from core.engines import make_engine

    url, start_at, end_at = spec["url"], _when(spec["start"]), _when(spec["end"])
    _import_driver(url)
    statements = _Statements()
    statements.install()
    stmt = sa.text(BASELINE_SQL).bindparams(
        sa.bindparam("s", type_=sa.DateTime(timezone=True)),
        sa.bindparam("e", type_=sa.DateTime(timezone=True)),
    )
    start = time.perf_counter()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            connected = time.perf_counter() - start
            records, subjects = conn.execute(stmt, {"s": start_at, "e": end_at}).one()
            conn.rollback()
    finally:
        engine.dispose()
    seconds = time.perf_counter() - start
    statement_s, text, params = statements.slowest()
    return {
        "seconds": seconds,
        "connect_s": round(connected, 4),
        "statement_s": round(statement_s, 4),
        "records": int(records),
        "subjects": int(subjects),
        "plan": plan_outline(url, text, params),
        "peak_rss_mb": round(process_peak_rss_mb(), 1),
    }


def _product_setup(spec: Mapping[str, Any], store_name: str) -> tuple[Any, Any, Any]:
    """Config, store and keys, loaded before the clock (a flow has them by then)."""
    from config.loader import load_config
    from core.keys import KeyRing

    config = load_config(Path(spec["config"]))
    keys = KeyRing.from_master(base64.b64decode(MASTER_KEY))
    return config, config.store(store_name), keys


def pg_count_worker(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``connector_for`` + ``count_impact`` of the window on ``events``, timed by part."""
    begun = time.perf_counter()
    import connectors.sql.connector
    import connectors.sql.impact  # noqa: F401  (imported by count_impact; before the clock)
    from connectors.base import ImpactCounting
    from connectors.registry import connector_for, require

    config, store, keys = _product_setup(spec, SQL_STORE)
    _import_driver(spec["url"])
    part = _scope_part(spec)
    import_s = time.perf_counter() - begun
    statements = _Statements()
    statements.install()
    rss_before = process_peak_rss_mb()
    start = time.perf_counter()
    connector: Any = connector_for(store, config.policy, keys)
    try:
        setup_s = time.perf_counter() - start
        # The schema is reflected on first use; asked for here so its time shows apart.
        # (The store's own attribute: this benchmark knows it runs a SQL connector.)
        connector.schema  # noqa: B018
        reflect_s = time.perf_counter() - start - setup_s
        count = require(connector, ImpactCounting, "incident assessment").count_impact(part)
    finally:
        connector.close()
    seconds = time.perf_counter() - start
    statement_s, text, params = statements.slowest()
    parts = {
        "setup": round(setup_s, 4),
        "reflect": round(reflect_s, 4),
        "statement": round(statement_s, 4),
    }
    parts["other"] = round(seconds - sum(parts.values()), 4)
    return {
        "seconds": seconds,
        "import_s": round(import_s, 3),
        "parts": parts,
        "statements": len(statements.timed),
        "records": count.records,
        "subjects": count.subjects,
        "identity": count.identity,
        "plan": plan_outline(spec["url"], text, params),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(process_peak_rss_mb(), 1),
    }


def s3_baseline_worker(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A default boto3 client and a ``list_objects_v2`` paginator over the prefix."""
    import boto3

    start = time.perf_counter()
    client: S3Client = boto3.session.Session().client(
        "s3", region_name=REGION, endpoint_url=spec["endpoint"]
    )
    records = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX):
        records += sum(1 for _ in page.get("Contents", []))
    seconds = time.perf_counter() - start
    client.close()
    return {"seconds": seconds, "records": records, "peak_rss_mb": round(process_peak_rss_mb(), 1)}


def s3_count_worker(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``connector_for`` + ``count_impact`` of the bucket + prefix part."""
    begun = time.perf_counter()
    import boto3  # noqa: F401  (the baseline has it imported too)

    import connectors.s3.connector  # noqa: F401  (the registry imports it on first use)
    from connectors.base import ImpactCounting
    from connectors.registry import connector_for, require

    config, store, keys = _product_setup(spec, S3_STORE)
    part = _scope_part(spec)
    import_s = time.perf_counter() - begun
    rss_before = process_peak_rss_mb()
    start = time.perf_counter()
    connector = connector_for(store, config.policy, keys)
    try:
        setup_s = time.perf_counter() - start
        count = require(connector, ImpactCounting, "incident assessment").count_impact(part)
    finally:
        connector.close()
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "import_s": round(import_s, 3),
        "parts": {"setup": round(setup_s, 4), "count": round(seconds - setup_s, 4)},
        "records": count.records,
        "subjects": count.subjects,
        "identity": count.identity,
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(process_peak_rss_mb(), 1),
    }


ACTOR = "benchmark"
ASSESS_PARTS = ("assessable", "at_rest", "count", "subjects", "record")
"""Where an assessment's time goes: ``engine.incident_assessment``'s steps, timed apart."""


def _scope_part(spec: Mapping[str, Any]) -> Any:
    """The scope part a spec names: the window on ``events``, or the bucket's prefix."""
    from incidents.scope import ScopePart, TimeWindow

    if spec["store"] == SQL_STORE:
        when = TimeWindow(start=_when(spec["start"]), end=_when(spec["end"]))
        return ScopePart(store=SQL_STORE, table="events", window=when)
    return ScopePart(store=S3_STORE, bucket=BUCKET, prefix=PREFIX)


def register_worker(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Not timed: a reported concern, declared a breach, scoped to the spec's part."""
    from audit.ledger import Ledger
    from incidents.scope import IncidentScope
    from state.incidents import IncidentRegister

    register = IncidentRegister(Ledger.open(actor=ACTOR))
    incident = register.report(
        "Benchmark: a scope exposed by a misconfigured export job",
        reported_by="security-team",
        actor=ACTOR,
    )
    register.declare(incident.id, kinds=["confidentiality"], actor=ACTOR)
    scope = IncidentScope(parts=(_scope_part(spec),))
    register.set_scope(incident.id, scope, key_compromised=None, actor=ACTOR)
    return {"incident_id": incident.id}


class _Clock:
    """Seconds spent inside the wrapped functions, by part."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(ASSESS_PARTS, 0.0)

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            begun = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - begun

        return timed_call


def assess_worker(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``assess_incident`` of the registered incident: the flow's steps without Prefect,
    every store's connector made on first use and closed at the end."""
    begun = time.perf_counter()
    from audit.keystore import keyring_from_settings
    from audit.ledger import Ledger
    from config.loader import load_config
    from engine import incident_assessment as engine
    from state.incidents import IncidentRegister

    if spec["store"] == SQL_STORE:
        import connectors.sql.connector
        import connectors.sql.impact
        import connectors.sql.posture

        _import_driver(spec["url"])
    else:
        import connectors.s3.connector
        import connectors.s3.posture  # noqa: F401
    config = load_config()
    keys = keyring_from_settings()
    register = IncidentRegister(Ledger.open(keys=keys, actor=ACTOR))  # migrates: not timed
    import_s = time.perf_counter() - begun
    clock = _Clock()
    for part, name in (
        ("assessable", "assessable"),
        ("at_rest", "store_at_rest"),
        ("count", "count_part"),
        ("subjects", "subjects_by_identity"),
        ("record", "record"),
    ):
        setattr(engine, name, clock.wrap(part, getattr(engine, name)))
    statements = _Statements()
    statements.install()
    rss_before = process_peak_rss_mb()
    start = time.perf_counter()
    with engine.StoreConnectors(config, keys) as made:
        outcome = engine.assess_incident(
            config, register, spec["incident_id"], actor=ACTOR, connectors=made
        )
    seconds = time.perf_counter() - start
    parts = {name: round(clock.seconds[name], 4) for name in ASSESS_PARTS}
    parts["other"] = round(seconds - sum(parts.values()), 4)
    (assessed,) = outcome.assessment.parts
    result = {
        "seconds": seconds,
        "import_s": round(import_s, 3),
        "parts": parts,
        "records": assessed.records,
        "subjects": assessed.subjects,
        "identity": assessed.identity,
        "total_subjects": outcome.assessment.subjects,
        "risk": outcome.assessment.risk,
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(process_peak_rss_mb(), 1),
    }
    if spec["store"] == SQL_STORE:
        statement_s, text, params = statements.slowest()
        result["statement_s"] = round(statement_s, 4)
        result["plan"] = plan_outline(spec["url"], text, params)
    return result


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


WORKERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "pg-baseline": pg_baseline_worker,
    "pg-count": pg_count_worker,
    "s3-baseline": s3_baseline_worker,
    "s3-count": s3_count_worker,
    "register": register_worker,
    "pg-assess": assess_worker,
    "s3-assess": assess_worker,
}


def run_worker(mode: str, spec: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``mode`` in a fresh interpreter; its JSON result (the last stdout line)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.incidents",
            "--worker",
            json.dumps({**spec, "mode": mode}),
        ],
        cwd=PROJECT_ROOT,
        env={k: v for k, v in {**os.environ, **env}.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"worker {mode} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- rounds -------------------------------------------------------------------------------


def _median(samples: Sequence[Mapping[str, Any]], key: str = "seconds") -> float:
    return float(statistics.median(float(r[key]) for r in samples))


def _median_parts(samples: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    names = samples[0]["parts"]
    return {name: round(_median([r["parts"] for r in samples], name), 3) for name in names}


class Expected(NamedTuple):
    """What a product round must count."""

    records: int
    subjects: int


def settings_env(tmp: Path, config: Path) -> dict[str, str]:
    """The settings a product worker runs with: the config, a SQLite audit database in the
    run's temp dir (the product's default), the benchmark's master key."""
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    return {
        "LIFECYCLE_CONFIG_DIR": str(config),
        "LIFECYCLE_DATA_DIR": str(data),
        "LIFECYCLE_AUDIT_URL": f"sqlite:///{tmp / 'audit.db'}",
        "LIFECYCLE_MASTER_KEY": MASTER_KEY,
    }


def compare(
    label: str,
    count: int,
    *,
    spec: Mapping[str, Any],
    env: Mapping[str, str],
    truth: Callable[[Mapping[str, Any]], tuple[Expected, list[str]]],
) -> tuple[dict[str, Any], list[str]]:
    """An incident registered for the part, then ``count`` rounds of the baseline, the bare
    count and the whole assessment; the figures (``<label>_...``) and the problems.

    ``truth`` checks a baseline round and says what the product must count; product rounds
    are checked against what the first baseline round (run first) said."""
    registered = run_worker("register", spec, env)
    spec = {**spec, "incident_id": registered["incident_id"]}
    key = "pg" if label == "postgresql" else "s3"
    modes = (f"{key}-baseline", f"{key}-count", f"{key}-assess")
    samples: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    problems: list[str] = []
    expected: list[Expected] = []
    for i in range(count):
        for mode in modes if i % 2 == 0 else tuple(reversed(modes)):
            result = run_worker(mode, spec, env)
            samples[mode].append(result)
            if mode == modes[0]:
                said, found = truth(result)
                expected.append(said)
            else:  # the first round runs the baseline first
                found = _product_problems(f"{label} {mode}", result, expected[0])
            problems += found
            parts = result.get("parts") or {}
            extra = "".join(f", {k} {v:.2f}" for k, v in parts.items())
            log(
                f"  [{label}] round {i + 1}/{count} {mode}: {result['seconds']:.2f} s{extra}; "
                f"records {result['records']:,}, peak RSS {result['peak_rss_mb']} MB"
            )
            for problem in found:
                log(f"  [{label}] PROBLEM: {problem}")
    base_s, count_s, assess_s = (_median(samples[mode]) for mode in modes)
    baseline, counts, assessments = (samples[mode] for mode in modes)
    figures: dict[str, Any] = {
        f"{label}_records": expected[0].records,
        f"{label}_subjects": expected[0].subjects,
        f"{label}_baseline_s": round(base_s, 3),
        f"{label}_assess_s": round(assess_s, 3),
        f"{label}_ratio": ratio(assess_s, base_s),
        f"{label}_count_s": round(count_s, 3),
        f"{label}_count_ratio": ratio(count_s, base_s),
        f"{label}_assess_parts_s": _median_parts(assessments),
        f"{label}_count_parts_s": _median_parts(counts),
        f"{label}_product_import_s": round(_median([*counts, *assessments], "import_s"), 3),
        f"{label}_peak_rss_mb": max(r["peak_rss_mb"] for r in (*counts, *assessments)),
        f"{label}_risk": assessments[0]["risk"],
    }
    if label == "postgresql":
        figures["postgresql_baseline_statement_s"] = round(_median(baseline, "statement_s"), 3)
        plans = {mode: samples[mode][0]["plan"] for mode in modes}
        figures["postgresql_same_plan"] = all(p == plans[modes[0]] for p in plans.values())
        for mode, plan in plans.items():
            log(f"[{label}] {mode} plan: {' / '.join(step.strip() for step in plan)}")
    log(
        f"[{label}] median baseline {base_s:.2f} s, assessment {assess_s:.2f} s "
        f"(ratio {figures[f'{label}_ratio']}), count {count_s:.2f} s "
        f"(ratio {figures[f'{label}_count_ratio']})"
    )
    return figures, problems


def _product_problems(label: str, result: Mapping[str, Any], expected: Expected) -> list[str]:
    """What a product round's answer says went wrong: counts other than expected, or
    subjects counted by another identity than ``customer_id``."""
    problems = []
    records, subjects = expected
    if result["records"] != records or result["subjects"] != subjects:
        problems.append(
            f"{label}: counted {result['records']} records and {result['subjects']} "
            f"subjects, expected {records} and {subjects}"
        )
    if result["identity"] != "customer_id":
        problems.append(f"{label}: subjects counted by {result['identity']!r}, not customer_id")
    if result.get("total_subjects", subjects) != subjects:
        problems.append(f"{label}: the assessment's total of subjects differs from its part's")
    return problems


def postgres_part(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Any], list[str]]:
    """The scratch database, built once; the rounds; figures and problems."""
    start_at, end_at, in_window = window(args.rows)
    figures: dict[str, Any] = {"rows": args.rows, "rows_in_window": in_window}
    with scratch_postgres() as url:
        log(f"[postgresql] building {args.rows:,} events")
        figures |= build_postgres(url, args.rows)
        log(f"[postgresql] built in {figures['build_s']} s, {figures['database_gb']} GB")
        config = write_config(tmp / "config-postgresql", url)
        spec = {
            "store": SQL_STORE,
            "url": url,
            "config": str(config),
            "start": start_at.isoformat(),
            "end": end_at.isoformat(),
        }
        subjects: list[int] = []

        def truth(result: Mapping[str, Any]) -> tuple[Expected, list[str]]:
            # The window holds exactly the rows seeded in it; its subjects are the baseline's.
            subjects.append(result["subjects"])
            said = Expected(result["records"], result["subjects"])
            if result["records"] != in_window:
                return said, [f"baseline counted {result['records']} records, seeded {in_window}"]
            if len(set(subjects)) > 1:
                return said, [
                    f"baseline rounds counted different subjects: {sorted(set(subjects))}"
                ]
            return said, []

        found, problems = compare(
            "postgresql", args.rounds, spec=spec, env=settings_env(tmp, config), truth=truth
        )
    return figures | found, problems


def s3_part(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Any], list[str]]:
    """The moto server and bucket, seeded once; the rounds; figures and problems."""
    from demo.s3_server import LocalS3

    figures: dict[str, Any] = {}
    with LocalS3(region=REGION) as s3:
        client = s3.client(max_pool_connections=SEED_WORKERS + 4)
        log(f"[s3] seeding {args.objects:,} objects (+{args.objects // OUTSIDE_EVERY:,} outside)")
        figures |= seed_s3(client, args.objects)
        log(f"[s3] seeded in {figures['seed_s']} s")
        config = write_config(tmp / "config-s3", f"sqlite:///{tmp / 'unused.db'}", s3.endpoint_url)
        spec = {"store": S3_STORE, "endpoint": s3.endpoint_url, "config": str(config)}
        objects, customers = args.objects, figures["s3_customers"]

        def truth(result: Mapping[str, Any]) -> tuple[Expected, list[str]]:
            # The bare listing counts keys only: what was seeded is the truth.
            n = result["records"]
            wrong = [] if n == objects else [f"s3: bare listing counted {n} of {objects}"]
            return Expected(objects, customers), wrong

        found, problems = compare(
            "s3", args.rounds, spec=spec, env={**settings_env(tmp, config), **s3.env()}, truth=truth
        )
    return figures | found, problems


# -- entry point --------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    figures: dict[str, Any] = {"rounds": args.rounds}
    problems: list[str] = []
    log(
        f"incident assessment vs bare queries: {args.rows:,} rows on PostgreSQL, "
        f"{args.objects:,} objects on S3, {args.rounds} rounds (ABBA)"
    )
    with tempfile.TemporaryDirectory(prefix="lc-bench-incidents-") as name:
        tmp = Path(name)
        if args.only in (None, "postgresql"):
            found, wrong = postgres_part(args, tmp)
            figures |= found
            problems += wrong
        if args.only in (None, "s3"):
            found, wrong = s3_part(args, tmp)
            figures |= found
            problems += wrong
    rss = [figures[k] for k in ("postgresql_peak_rss_mb", "s3_peak_rss_mb") if k in figures]
    figures["peak_rss_mb"] = max(rss)
    figures["problems"] = sorted(set(problems))
    for problem in figures["problems"]:
        log(f"  PROBLEM: {problem}")
    limits = {
        name: RATIO_TARGET
        for name, part in (("postgresql_ratio", "postgresql"), ("s3_ratio", "s3"))
        if args.only in (None, part)
    }
    targets: dict[str, str] = {name: f"<= {limit:g}" for name, limit in limits.items()}
    met = {name: figures[name] <= limit and not problems for name, limit in limits.items()}
    targets["peak_rss_mb"] = f"< {RSS_TARGET_MB:g}"
    met["peak_rss_mb"] = figures["peak_rss_mb"] < RSS_TARGET_MB
    emit_result("incidents", figures, targets, met)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--rows", type=int, help=f"PostgreSQL events (default {ROWS:,})")
    parser.add_argument("--objects", type=int, help=f"S3 objects in scope (default {OBJECTS:,})")
    parser.add_argument("--rounds", type=int, help=f"rounds per method (default {ROUNDS})")
    parser.add_argument("--only", choices=("postgresql", "s3"), help="run one part only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        try:
            result = WORKERS[spec["mode"]](spec)
        except Exception as e:  # a ConfigError's problems, on stderr for the parent to show
            sys.stderr.write("".join(f"{p}\n" for p in getattr(e, "problems", ())))
            raise
        sys.stdout.write(json.dumps(result) + "\n")
        return
    quick = args.quick
    defaults = {
        "rows": QUICK_ROWS if quick else ROWS,
        "objects": QUICK_OBJECTS if quick else OBJECTS,
        "rounds": 1 if quick else ROUNDS,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.rows < CUSTOMERS_PER_ROW or args.objects < 1 or args.rounds < 1:
        parser.error(f"--rows must be at least {CUSTOMERS_PER_ROW}; --objects, --rounds at least 1")
    run(args)


if __name__ == "__main__":
    main()
