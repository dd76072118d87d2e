"""What a batched, digested sweep must cost on PostgreSQL, before any audit: the floor.

``benchmarks/retention.py`` times the whole sweep against one raw ``DELETE``. This one
strips the sweep down to the database work each of its guarantees needs, on the same
table (``benchmarks.retention.PgTables``: 2,000,000 rows in time order, half expired, an
index on the timestamp), each variant on a fresh identical copy, rounds interleaved,
medians and ratios to the raw ``DELETE`` measured in the same run:

- ``raw``: ``DELETE FROM events WHERE ts < cutoff``, one statement (``PgTables.baseline``);
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
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from benchmarks.common import emit_result, log, ratio, scratch_postgres, timed
from benchmarks.retention import SPAN, PgTables
from core.engines import make_engine

ROWS, ROUNDS, BATCH = 2_000_000, 5, 50_000
LAYOUT = "time_ordered"
_EXPIRED = "ts < :cutoff"
_DIGEST = "encode(sha256(convert_to('[[' || string_agg(id::text, '],[') || ']]', 'UTF8')), 'hex')"
_CUTOFF = sa.bindparam("cutoff", type_=sa.DateTime())


def _text(sql: str) -> sa.TextClause:
    return sa.text(sql).bindparams(_CUTOFF) if ":cutoff" in sql else sa.text(sql)


def batches(engine: Engine, cutoff: datetime, expired: int, batch: int) -> int:
    """Delete by key range, ``batch`` ids per transaction, until ``expired`` rows are gone."""
    delete = _text(f"DELETE FROM events WHERE {_EXPIRED} AND id > :lo AND id <= :hi")
    done = lo = 0
    with engine.connect() as conn:
        while done < expired:
            done += conn.execute(delete, {"cutoff": cutoff, "lo": lo, "hi": lo + batch}).rowcount
            conn.commit()
            lo += batch
    return done


def batches_digested(engine: Engine, cutoff: datetime, expired: int, batch: int) -> int:
    """As the sweep's dense read: keys and digest from the key index, then the range."""
    read = _text(
        f"SELECT count(*), max(id), {_DIGEST} FROM "
        "(SELECT id FROM events WHERE id > :lo ORDER BY id LIMIT :n) AS s"
    )
    delete = _text(f"DELETE FROM events WHERE {_EXPIRED} AND id > :lo AND id <= :hi")
    done = lo = 0
    rr = engine.execution_options(isolation_level="REPEATABLE READ")
    with rr.connect() as conn:
        while done < expired:
            count, hi, _digest = conn.execute(read, {"lo": lo, "n": batch}).one()
            deleted = conn.execute(delete, {"cutoff": cutoff, "lo": lo, "hi": hi}).rowcount
            if deleted != count:  # the boundary batch: the sweep searches instead
                conn.rollback()
                deleted = conn.execute(delete, {"cutoff": cutoff, "lo": lo, "hi": hi}).rowcount
            conn.commit()
            done, lo = done + deleted, hi
    return done


def expired_count(engine: Engine, cutoff: datetime) -> int:
    """The plan's (and the verification's) count, as the sweep's query has it."""
    with engine.connect() as conn:
        query = _text(f"SELECT count(*) FROM events WHERE {_EXPIRED}")
        return int(conn.execute(query, {"cutoff": cutoff}).scalar_one())


BATCHED: dict[str, Callable[[Engine, datetime, int, int], int]] = {
    "batches": batches,
    "batches_digested": batches_digested,
}


def _round(
    tables: PgTables, engine: Engine, name: str, *, cutoff: datetime, expired: int, batch: int
) -> dict[str, float]:
    """One variant on a fresh copy: its seconds (and the two counts' around the digested one)."""
    tables.fresh_copy(LAYOUT)
    if name == "raw":
        seconds, deleted = tables.baseline(cutoff)
        out = {"raw": seconds}
    else:
        out = {}
        if name == "batches_digested":
            out["plan_count"], _ = timed(partial(expired_count, engine, cutoff))
        out[name], deleted = timed(partial(BATCHED[name], engine, cutoff, expired, batch))
        if name == "batches_digested":
            out["verify_count"], left = timed(partial(expired_count, engine, cutoff))
            if left:
                raise SystemExit(f"{left} expired rows left after {name}")
    if deleted != expired:
        raise SystemExit(f"{name} deleted {deleted} rows, expected {expired}")
    return out


def run(rows: int, rounds: int, batch: int) -> dict[str, Any]:
    """Every variant ``rounds`` times, rotated, each on a fresh copy; medians and ratios."""
    names = ["raw", *BATCHED]
    samples: dict[str, list[float]] = defaultdict(list)
    t0 = datetime(2020, 1, 1)
    cutoff = t0 + SPAN / 2  # the older half of the rows, as in benchmarks.retention
    with scratch_postgres() as url:
        tables, engine = PgTables(url), make_engine(url)
        try:
            tables.build(LAYOUT, rows, t0)
            _, expired = tables.counts(f"src_{LAYOUT}", cutoff)
            for i in range(rounds):
                for name in names[i % 3 :] + names[: i % 3]:
                    parts = _round(
                        tables, engine, name, cutoff=cutoff, expired=expired, batch=batch
                    )
                    for part, seconds in parts.items():
                        samples[part].append(seconds)
                last = ", ".join(f"{k} {v[-1]:.3f} s" for k, v in samples.items())
                log(f"round {i + 1}: {last}")
        finally:
            engine.dispose()
            tables.close()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["raw"]
    floor = medians["batches_digested"] + medians["plan_count"] + medians["verify_count"]
    return {
        "rows": rows,
        "expired": expired,
        "rounds": rounds,
        "batch": batch,
        **{f"{name}_s": round(seconds, 3) for name, seconds in medians.items()},
        **{f"{name}_ratio": ratio(medians[name], base) for name in BATCHED},
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
