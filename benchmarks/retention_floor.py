"""What a batched, digested sweep must cost on PostgreSQL, before any audit: the floor.

``benchmarks/retention.py`` times the whole sweep against one raw ``DELETE``. This one
strips the sweep down to the database work each of its guarantees needs, on the same
table (2,000,000 rows in time order, half expired, an index on the timestamp), each
variant on a fresh identical copy, rounds interleaved, medians and ratios to the raw
``DELETE`` measured in the same run:

- ``raw``: ``DELETE FROM events WHERE ts < cutoff``, one statement;
- ``batches``: the same rows deleted by key range, ``batch`` rows per transaction,
  nothing read, nothing digested (what bounded, short transactions cost by themselves);
- ``batches_digested``: the sweep's dense form (``connectors.sql.sweep``): per batch, read
  the next keys from the key index with their SHA-256 digest, delete the range, compare
  the counts, in one REPEATABLE READ transaction;
- ``plan_count`` and ``verify_count``: the plan's count of expired rows, and the same count
  after the deletes (what proves none is left).

The sum of ``batches_digested``, ``plan_count`` and ``verify_count`` is the least a sweep
that plans, digests every batch and verifies can cost, with no ledger at all. Run:
``python -m benchmarks.retention_floor [--rows N] [--rounds N] [--batch N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from benchmarks.common import emit_result, log, ratio, scratch_postgres
from core.engines import make_engine

ROWS, ROUNDS, BATCH = 2_000_000, 5, 50_000
CUTOFF = "timestamp '2020-01-01' + (:half) * interval '1 second'"
_DIGEST = "encode(sha256(convert_to('[[' || string_agg(id::text, '],[') || ']]', 'UTF8')), 'hex')"


def build(engine: Engine, rows: int) -> None:
    """``src``: ids and timestamps rising together (one second apart), 100-byte payloads."""
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS src"))
        conn.execute(sa.text("CREATE TABLE src (id bigint, ts timestamp, payload text)"))
        conn.execute(
            sa.text(
                "INSERT INTO src SELECT g, timestamp '2020-01-01' + g * interval '1 second', "
                "md5(g::text) || md5((-g)::text) FROM generate_series(1::bigint, :n) AS g"
            ),
            {"n": rows},
        )


def fresh_copy(engine: Engine) -> None:
    """``events``: an identical copy of ``src`` with key, timestamp index, vacuumed, flushed."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for statement in (
            "DROP TABLE IF EXISTS events",
            "CREATE TABLE events AS SELECT * FROM src",
            "ALTER TABLE events ADD PRIMARY KEY (id)",
            "CREATE INDEX events_ts_idx ON events (ts)",
            "ALTER TABLE events SET (autovacuum_enabled = false)",
            "VACUUM (ANALYZE) events",
            "CHECKPOINT",
        ):
            conn.execute(sa.text(statement))


def raw(engine: Engine, half: int, _batch: int) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.text(f"DELETE FROM events WHERE ts < {CUTOFF}"), {"half": half}
            ).rowcount
        )


def batches(engine: Engine, half: int, batch: int) -> int:
    delete = sa.text(f"DELETE FROM events WHERE ts < {CUTOFF} AND id > :lo AND id <= :hi")
    done = lo = 0
    with engine.connect() as conn:
        while done < half - 1:
            done += conn.execute(delete, {"half": half, "lo": lo, "hi": lo + batch}).rowcount
            conn.commit()
            lo += batch
    return done


def batches_digested(engine: Engine, half: int, batch: int) -> int:
    probe = sa.text(
        f"SELECT count(*), max(id), {_DIGEST} FROM "
        "(SELECT id FROM events WHERE id > :lo ORDER BY id LIMIT :n) AS s"
    )
    delete = sa.text(f"DELETE FROM events WHERE ts < {CUTOFF} AND id > :lo AND id <= :hi")
    done = lo = 0
    rr = engine.execution_options(isolation_level="REPEATABLE READ")
    with rr.connect() as conn:
        while done < half - 1:
            count, hi, _digest = conn.execute(probe, {"lo": lo, "n": batch}).one()
            deleted = conn.execute(delete, {"half": half, "lo": lo, "hi": hi}).rowcount
            if deleted != count:  # the boundary batch: the sweep searches instead
                conn.rollback()
                deleted = conn.execute(delete, {"half": half, "lo": lo, "hi": hi}).rowcount
            conn.commit()
            done, lo = done + deleted, hi
    return done


def expired_count(engine: Engine, half: int) -> int:
    with engine.connect() as conn:
        query = sa.text(f"SELECT count(*) FROM events WHERE ts < {CUTOFF}")
        return int(conn.execute(query, {"half": half}).scalar_one())


VARIANTS: dict[str, Callable[[Engine, int, int], int]] = {
    "raw": raw,
    "batches": batches,
    "batches_digested": batches_digested,
}


def run(rows: int, rounds: int, batch: int) -> dict[str, Any]:
    half = rows // 2  # rows 1 .. half-1 are older than the cut-off
    samples: dict[str, list[float]] = {
        name: [] for name in (*VARIANTS, "plan_count", "verify_count")
    }
    with scratch_postgres() as url:
        engine = make_engine(url)
        build(engine, rows)
        for i in range(rounds):
            order = list(VARIANTS)[i % 3 :] + list(VARIANTS)[: i % 3]
            for name in order:
                fresh_copy(engine)
                if name == "batches_digested":
                    start = time.perf_counter()
                    expired_count(engine, half)
                    samples["plan_count"].append(time.perf_counter() - start)
                start = time.perf_counter()
                deleted = VARIANTS[name](engine, half, batch)
                samples[name].append(time.perf_counter() - start)
                if deleted != half - 1:
                    raise SystemExit(f"{name} deleted {deleted} rows, expected {half - 1}")
                if name == "batches_digested":
                    start = time.perf_counter()
                    left = expired_count(engine, half)
                    samples["verify_count"].append(time.perf_counter() - start)
                    if left:
                        raise SystemExit(f"{left} expired rows left after {name}")
            log(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in samples.items()))
        engine.dispose()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["raw"]
    floor = medians["batches_digested"] + medians["plan_count"] + medians["verify_count"]
    return {
        "rows": rows,
        "rounds": rounds,
        "batch": batch,
        **{f"{name}_s": round(seconds, 3) for name, seconds in medians.items()},
        **{f"{name}_ratio": ratio(medians[name], base) for name in VARIANTS if name != "raw"},
        "floor_s": round(floor, 3),
        "floor_ratio": ratio(floor, base),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="rows (default 2,000,000)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds (default 5)")
    parser.add_argument("--batch", type=int, default=BATCH, help="rows per batch (default 50,000)")
    args = parser.parse_args(argv)
    figures = run(args.rows, args.rounds, args.batch)
    log(
        f"raw DELETE {figures['raw_s']} s; batches {figures['batches_ratio']}x; "
        f"digested batches {figures['batches_digested_ratio']}x; with plan and verify counts "
        f"{figures['floor_ratio']}x (no ledger, no intents)"
    )
    emit_result("retention_floor", figures, {}, {})


if __name__ == "__main__":
    main()
