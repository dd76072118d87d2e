"""Discovery benchmark: ``lifecycle inventory draft`` on a wide schema against its floor.

Run: ``python -m benchmarks.discovery [--quick] [--tables N] [--rows N] [--rounds N]
[--sample N]`` (``--quick``: 10 tables of 20,000 rows, one round).

The schema (issue 16), built server-side in a scratch PostgreSQL database dropped at the
end: ``--tables`` tables (default 200) of ``--rows`` rows each (default 1,000,000), every
one a copy of a template made with ``generate_series``: ``id bigint`` primary key, an
e-mail (``user<n>@example.com``), an E.164 phone number, ``created_at timestamptz``, an
``amount numeric(10,2)`` and a short free text; every tenth table also holds a
``customer_id`` foreign key to the first table. Tables are UNLOGGED (no WAL to write while
building), autovacuum off (no vacuum starts in the middle of a round), and each is
``VACUUM ANALYZE``d once built (hint bits set, so a first read writes nothing, and the
row estimate the sampler uses is in ``pg_class``). Built by two sessions at once; the
build time is printed and reported (``build_s``), not judged.

Rounds alternate (ABBA), each method in a fresh interpreter (this module with
``--worker``) that imports its modules and the database driver before its clock starts:

- baseline, the floor the issue names, "reading the catalog alone plus one sample query
  per table": on one connection, three plain catalog queries (``pg_class`` tables with
  ``reltuples``, ``pg_attribute`` columns with ``format_type``, ``pg_constraint`` primary
  and foreign keys), then per table one ``SELECT <cols> FROM t TABLESAMPLE SYSTEM (p)
  LIMIT n``, with the columns the product samples (not dates, booleans, binaries or
  floats), the product's ``n`` (``--sample``, default the CLI's 1,000) and its ``p``
  (twice ``n`` over the row estimate), every row fetched;
- product: ``discovery.pipeline.draft_inventory(url, rows=n)``, the whole SQL path of
  ``lifecycle inventory draft --url URL`` in-process (the command calls it and prints the
  result; no Prefect): engine, ``read_catalog``, ``sample_table`` and ``classify`` for every
  table, ``plan_draft`` and ``render``. Its time is split (printed, not judged) into
  catalog, sampling, classification and plan + render.

Targets (issue 16): median product / median baseline <= 5, and the product worker's peak
RSS (``VmHWM``, its own address space: see ``process_peak_rss_mb``) < 300 MB. After every
product round the draft is checked: every table drafted, e-mail and phone found in each.
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
import json
import os
import statistics
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa

from benchmarks.common import emit_result, log, process_peak_rss_mb, ratio, scratch_postgres
from core.engines import make_engine

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TABLES, QUICK_TABLES = 200, 10
ROWS, QUICK_ROWS = 1_000_000, 20_000
ROUNDS = 5
SAMPLE = 1000  # the CLI's --sample default
FK_EVERY = 10  # every tenth table holds a foreign key to the first
BUILD_SESSIONS = 2
RATIO_TARGET = 5.0
RSS_TARGET_MB = 300.0
SKIPPED_TYPES = ("DATE", "TIME", "BOOL", "BLOB", "BYTEA", "BINARY", "FLOAT", "DOUBLE", "REAL")
"""Type names the product does not sample (``discovery.pipeline.sampled_columns``)."""
OVERSAMPLE = 2.0  # as discovery.sampling: SYSTEM picks pages, ask for twice the rows

T = TypeVar("T")


# -- the schema ---------------------------------------------------------------------------


def table_name(i: int) -> str:
    return f"t_{i:04d}"


def referring(i: int) -> bool:
    """Whether table ``i`` holds a foreign key to the first table."""
    return i % FK_EVERY == FK_EVERY - 1 and i > 0


def build_schema(url: str, tables: int, rows: int) -> dict[str, Any]:
    """The template, then ``tables`` copies of it (two sessions at once); build figures."""
    engine = make_engine(url, isolation_level="AUTOCOMMIT")
    start = time.perf_counter()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET maintenance_work_mem = '256MB'")
            conn.execute(
                sa.text(
                    "CREATE UNLOGGED TABLE template WITH (autovacuum_enabled = false) AS "
                    "SELECT g::bigint AS id, "
                    "'user' || g || '@example.com' AS email, "
                    "'+49151' || lpad((g % 100000000)::text, 8, '0') AS phone, "
                    "timestamptz '2020-01-01 00:00:00+00' + g * interval '1 minute' "
                    "AS created_at, "
                    "((g * 7919) % 100000 / 100.0)::numeric(10, 2) AS amount, "
                    "'order ' || (g % 997) || ' left at the door' AS note "
                    "FROM generate_series(1::bigint, :rows) AS g"
                ),
                {"rows": rows},
            )
        template_s = time.perf_counter() - start
        log(f"  template of {rows:,} rows: {template_s:.1f} s")
        done = 0

        def copy(i: int) -> None:
            nonlocal done
            name = table_name(i)
            extra = f", mod(id, {rows}) + 1 AS customer_id" if referring(i) else ""
            with engine.connect() as conn:
                conn.exec_driver_sql("SET maintenance_work_mem = '256MB'")
                conn.exec_driver_sql(
                    f"CREATE UNLOGGED TABLE {name} WITH (autovacuum_enabled = false) AS "
                    f"SELECT *{extra} FROM template"
                )
                conn.exec_driver_sql(f"ALTER TABLE {name} ADD PRIMARY KEY (id)")
                if referring(i):
                    conn.exec_driver_sql(
                        f"ALTER TABLE {name} ADD CONSTRAINT {name}_customer_fk "
                        f"FOREIGN KEY (customer_id) REFERENCES {table_name(0)} (id)"
                    )
                conn.exec_driver_sql(f"VACUUM ANALYZE {name}")
            done += 1
            if done % 20 == 0 or done == tables:
                log(f"  {done}/{tables} tables ({time.perf_counter() - start:.0f} s)")

        copy(0)  # the table the foreign keys refer to, first
        with ThreadPoolExecutor(max_workers=BUILD_SESSIONS) as pool:
            list(pool.map(copy, range(1, tables)))
        with engine.connect() as conn:
            conn.exec_driver_sql("DROP TABLE template")
            size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
    finally:
        engine.dispose()
    build_s = time.perf_counter() - start
    return {"build_s": round(build_s, 1), "database_gb": round(int(size or 0) / 1024**3, 2)}


# -- the workers --------------------------------------------------------------------------

_CATALOG_QUERIES = (
    # tables and their row estimates
    "SELECT c.oid, c.relname, c.reltuples FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public'",
    # columns
    "SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public' "
    "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum",
    # primary and foreign keys
    "SELECT con.conrelid, con.contype, con.conkey, con.confrelid, con.confkey "
    "FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace "
    "WHERE n.nspname = 'public' AND con.contype IN ('p', 'f')",
)


def baseline_worker(url: str, sample: int) -> dict[str, Any]:
    """The floor: the catalog in three queries, then one TABLESAMPLE query per table."""
    sa.engine.make_url(url).set(drivername="postgresql+psycopg").get_dialect().import_dbapi()
    start = time.perf_counter()
    engine = make_engine(url)
    fetched = 0
    try:
        with engine.connect() as conn:
            tables, columns, _keys = (
                conn.exec_driver_sql(query).all() for query in _CATALOG_QUERIES
            )
            catalog_s = time.perf_counter() - start
            wanted: dict[int, list[str]] = defaultdict(list)
            for relid, column, type_name, _notnull in columns:
                if not any(t in str(type_name).upper() for t in SKIPPED_TYPES):
                    wanted[relid].append(column)
            for relid, name, estimate in sorted(tables, key=lambda t: str(t[1])):
                cols = ", ".join(f'"{c}"' for c in wanted[relid])
                if not cols:
                    continue
                plain = f'SELECT {cols} FROM "{name}" LIMIT {sample}'
                if estimate is None or float(estimate) <= sample * OVERSAMPLE:
                    rows = conn.exec_driver_sql(plain).all()
                else:
                    percent = min(100.0, 100.0 * sample * OVERSAMPLE / float(estimate))
                    rows = conn.exec_driver_sql(
                        f'SELECT {cols} FROM "{name}" TABLESAMPLE SYSTEM ({percent!r}) '
                        f"LIMIT {sample}"
                    ).all()
                    if not rows:  # as the product: no page picked, LIMIT instead
                        rows = conn.exec_driver_sql(plain).all()
                fetched += len(rows)
            conn.rollback()
    finally:
        engine.dispose()
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "catalog_s": round(catalog_s, 4),
        "tables": len(tables),
        "rows_fetched": fetched,
        "peak_rss_mb": round(process_peak_rss_mb(), 1),
    }


class _Clock:
    """Seconds spent inside the wrapped functions, by part."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, part: str, fn: Callable[..., T]) -> Callable[..., T]:
        def timed_call(*args: Any, **kwargs: Any) -> T:
            begun = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - begun
                self.calls[part] += 1

        return timed_call


def product_worker(url: str, sample: int) -> dict[str, Any]:
    """``draft_inventory`` as ``lifecycle inventory draft --url URL`` runs it; timed."""
    from discovery import pipeline

    sa.engine.make_url(url).set(drivername="postgresql+psycopg").get_dialect().import_dbapi()
    clock = _Clock()
    for part, name in (
        ("catalog", "read_catalog"),
        ("sampling", "sample_table"),
        ("classify", "classify"),
        ("plan_render", "plan_draft"),
        ("plan_render", "render"),
    ):
        setattr(pipeline, name, clock.wrap(part, getattr(pipeline, name)))
    rss_before = process_peak_rss_mb()
    start = time.perf_counter()
    result = pipeline.draft_inventory(url, rows=sample)
    seconds = time.perf_counter() - start
    parts = {p: round(clock.seconds.get(p, 0.0), 4) for p in PARTS}
    parts["other"] = round(seconds - sum(parts.values()), 4)
    with_email = sum(1 for t in result.tables if t.identities >= 2)
    return {
        "seconds": seconds,
        "parts": parts,
        "tables": len(result.tables),
        "tables_with_email_and_phone": with_email,
        "left_out": len(result.left_out),
        "draft_chars": len(result.text),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(process_peak_rss_mb(), 1),
    }


PARTS = ("catalog", "sampling", "classify", "plan_render")

WORKERS: dict[str, Callable[[str, int], dict[str, Any]]] = {
    "baseline": baseline_worker,
    "product": product_worker,
}


def run_worker(mode: str, url: str, sample: int) -> dict[str, Any]:
    """``mode`` in a fresh interpreter; its JSON result (the last stdout line)."""
    spec = json.dumps({"mode": mode, "url": url, "sample": sample})
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.discovery", "--worker", spec],
        cwd=PROJECT_ROOT,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"worker {mode} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def product_problems(result: Mapping[str, Any], tables: int) -> list[str]:
    """What a product round's draft says went wrong: a table missing, or e-mail and phone
    not proposed as identities of a table holding no reference (a referring table's are
    held back, as it is reached through its reference)."""
    problems = []
    if result["tables"] != tables:
        problems.append(f"draft declares {result['tables']} tables of {tables}")
    roots = sum(1 for i in range(tables) if not referring(i))
    if result["tables_with_email_and_phone"] != roots:
        problems.append(
            f"e-mail and phone identities found in {result['tables_with_email_and_phone']} "
            f"tables, expected {roots}"
        )
    return problems


# -- entry point --------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    figures: dict[str, Any] = {
        "tables": args.tables,
        "rows_per_table": args.rows,
        "sample_rows": args.sample,
        "rounds": args.rounds,
    }
    log(
        f"discovery draft vs catalog + one sample per table: {args.tables} tables of "
        f"{args.rows:,} rows, sample {args.sample:,}, {args.rounds} rounds (ABBA)"
    )
    with scratch_postgres() as url:
        log("building the schema")
        figures |= build_schema(url, args.tables, args.rows)
        log(f"  built in {figures['build_s']} s, database {figures['database_gb']} GB")
        samples: dict[str, list[dict[str, Any]]] = {"baseline": [], "product": []}
        problems: list[str] = []
        for i in range(args.rounds):
            order = ("baseline", "product") if i % 2 == 0 else ("product", "baseline")
            for mode in order:
                result = run_worker(mode, url, args.sample)
                samples[mode].append(result)
                extra = ""
                if mode == "product":
                    problems += product_problems(result, args.tables)
                    extra = ", " + ", ".join(f"{k} {v:.2f}" for k, v in result["parts"].items())
                else:
                    extra = f", catalog {result['catalog_s']:.2f}"
                log(
                    f"  round {i + 1}/{args.rounds} {mode}: {result['seconds']:.2f} s"
                    f"{extra}; peak RSS {result['peak_rss_mb']} MB"
                )
    base = statistics.median(r["seconds"] for r in samples["baseline"])
    prod = statistics.median(r["seconds"] for r in samples["product"])
    figures["baseline_s"] = round(base, 3)
    figures["product_s"] = round(prod, 3)
    figures["ratio"] = ratio(prod, base)
    figures["baseline_catalog_s"] = round(
        statistics.median(r["catalog_s"] for r in samples["baseline"]), 3
    )
    figures["product_parts_s"] = {
        part: round(statistics.median(r["parts"][part] for r in samples["product"]), 3)
        for part in (*PARTS, "other")
    }
    figures["peak_rss_mb"] = max(r["peak_rss_mb"] for r in samples["product"])
    figures["baseline_peak_rss_mb"] = max(r["peak_rss_mb"] for r in samples["baseline"])
    figures["problems"] = sorted(set(problems))
    log(
        f"median baseline {base:.2f} s, product {prod:.2f} s, ratio {figures['ratio']}; "
        f"product peak RSS {figures['peak_rss_mb']} MB"
    )
    for problem in figures["problems"]:
        log(f"  PROBLEM: {problem}")
    targets = {"ratio": f"<= {RATIO_TARGET:g}", "peak_rss_mb": f"< {RSS_TARGET_MB:g}"}
    met = {
        "ratio": figures["ratio"] <= RATIO_TARGET and not problems,
        "peak_rss_mb": figures["peak_rss_mb"] < RSS_TARGET_MB,
    }
    emit_result("discovery", figures, targets, met)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--tables", type=int, help=f"tables (default {TABLES})")
    parser.add_argument("--rows", type=int, help=f"rows per table (default {ROWS:,})")
    parser.add_argument("--rounds", type=int, help=f"rounds per method (default {ROUNDS})")
    parser.add_argument(
        "--sample", type=int, default=SAMPLE, help=f"rows sampled per table (default {SAMPLE})"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        result = WORKERS[spec["mode"]](spec["url"], int(spec["sample"]))
        sys.stdout.write(json.dumps(result) + "\n")
        return
    quick = args.quick
    defaults = {
        "tables": QUICK_TABLES if quick else TABLES,
        "rows": QUICK_ROWS if quick else ROWS,
        "rounds": 1 if quick else ROUNDS,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.tables < 1 or args.rows < 1 or args.rounds < 1 or args.sample < 1:
        parser.error("--tables, --rows, --rounds and --sample must be at least 1")
    run(args)


if __name__ == "__main__":
    main()
