"""What an audited, batched sweep must cost on PostgreSQL, guarantee by guarantee: the floor.

``benchmarks/retention.py`` times the whole sweep against one raw ``DELETE``. This one
strips the sweep down to the work each of its guarantees needs, on the same table
(``benchmarks.retention.PgTables``: 2,000,000 rows, half expired, an index on the
timestamp; ``--layout interleaved`` spreads the expired rows over the ids), each variant
on a fresh identical copy, rounds rotated, medians and ratios to the raw ``DELETE``
measured in the same run:

- ``raw``: ``DELETE FROM events WHERE ts < cutoff``, one statement (``PgTables.baseline``);
- ``batches``: the same rows deleted by key span, ``batch`` ids per transaction, nothing
  read, nothing digested: ``audit: range``'s batches (``connectors.sql.sweep``), and what
  bounded, short transactions cost by themselves;
- ``batches_digested``: ``audit: keys``' dense form: per batch, read the next keys from
  the key index with their SHA-256 digest, delete the range, compare the counts, in one
  REPEATABLE READ transaction;
- ``plan_count``: the plan's count of expired rows (before ``batches``);
- ``verify_count``: the same count after ``batches``, as the sweep's verification runs it
  (``SqlSweeper.recount``: no index-only scan); ``verify_count_indexonly``: the same count
  with the planner's default plan (an index-only scan), after ``batches_digested``;
- ``setup`` and ``audit`` (in a worker process, as the sweep runs, ``benchmarks.retention``
  ``audit_writes_worker``): the connector and sweeper the sweep makes first (imports,
  engine, schema reflection), and every batch's audit writes (intent, ledger event and
  bookkeeping in the SQLite audit file, one audit transaction per batch) for as many
  batches as ``batches`` takes, with no store work.

``floor_range`` is ``batches + plan_count + verify_count``: the least a range-mode sweep that
plans with exact counts and verifies can cost, with no audit record; ``floor_range_audited``
adds ``setup`` and ``audit``, the least the whole sweep can cost with this audit database;
``floor_keys`` is the ``audit: keys`` counterpart of ``floor_range``. Run:
``python -m benchmarks.retention_floor [--rows N] [--rounds N] [--batch N] [--layout L]``.
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
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from benchmarks.common import emit_result, log, ratio, scratch_postgres, timed
from benchmarks.retention import LAYOUTS, SPAN, Env, PgTables, run_worker, sql_config
from core.engines import make_engine

ROWS, ROUNDS, BATCH = 2_000_000, 5, 50_000
RULE_DAYS = 90  # benchmarks.retention.sql_config's rule
_EXPIRED = "ts < :cutoff"
_DIGEST = "encode(sha256(convert_to('[[' || string_agg(id::text, '],[') || ']]', 'UTF8')), 'hex')"
_CUTOFF = sa.bindparam("cutoff", type_=sa.DateTime())


def _text(sql: str) -> sa.TextClause:
    return sa.text(sql).bindparams(_CUTOFF) if ":cutoff" in sql else sa.text(sql)


def batches(engine: Engine, cutoff: datetime, expired: int, batch: int) -> int:
    """Delete by key span, ``batch`` ids per transaction, until ``expired`` rows are gone."""
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


def expired_count(engine: Engine, cutoff: datetime, *, after_deletes: bool = False) -> int:
    """The plan's (and the verification's) count, as the sweep's query has it; after
    deletes, planned as ``SqlSweeper.recount`` plans it (no index-only scan)."""
    with engine.connect() as conn:
        if after_deletes:
            conn.execute(sa.text("SET LOCAL enable_indexonlyscan = off"))
        query = _text(f"SELECT count(*) FROM events WHERE {_EXPIRED}")
        return int(conn.execute(query, {"cutoff": cutoff}).scalar_one())


BATCHED: dict[str, Callable[[Engine, datetime, int, int], int]] = {
    "batches": batches,
    "batches_digested": batches_digested,
}
VARIANTS = ("raw", *BATCHED, "audit")


class _Floor:
    """The run's tables, engine and audit worker settings."""

    def __init__(self, tables: PgTables, engine: Engine, tmp: Path, url: str) -> None:
        self.tables, self.engine, self.tmp = tables, engine, tmp
        self.config_dir = sql_config(tmp / "config", url)
        self.rounds = 0
        self._spans: dict[str, int] = {}

    def spans(self, layout: str, cutoff: datetime, batch: int) -> int:
        """How many batches ``batches`` takes: key spans up to the last expired id."""
        if layout not in self._spans:
            query = _text(f"SELECT max(id) FROM src_{layout} WHERE {_EXPIRED}")
            with self.engine.connect() as conn:
                last = int(conn.execute(query, {"cutoff": cutoff}).scalar_one())
            self._spans[layout] = -(-last // batch)
        return self._spans[layout]

    def audit(self, cutoff: datetime, spans: int, batch: int) -> dict[str, float]:
        """The worker's setup and the audit writes of ``spans`` batches, on a fresh audit
        database (SQLite file)."""
        expired = spans * batch  # what the worker's in-memory batches take, ``batch`` each
        self.rounds += 1
        audit_url = f"sqlite:///{self.tmp / f'audit-{self.rounds}.db'}"
        as_of = (cutoff + timedelta(days=RULE_DAYS)).replace(tzinfo=UTC)
        spec = {
            "mode": "audit-writes",
            "as_of": as_of.isoformat(),
            "batch_size": batch,
            "expired": expired,
        }
        result = run_worker(Env(self.config_dir, self.tmp, audit_url, {}), spec)
        if result["done"] != expired:
            raise SystemExit(f"audit writes covered {result['done']} rows, expected {expired}")
        return {"setup": result["setup_s"], "audit": result["audit_s"]}

    def round(
        self, layout: str, name: str, *, cutoff: datetime, expired: int, batch: int
    ) -> dict[str, float]:
        """One variant on a fresh copy: its seconds (and the counts' around the batches)."""
        if name == "audit":
            return self.audit(cutoff, self.spans(layout, cutoff, batch), batch)
        self.tables.fresh_copy(layout)
        if name == "raw":
            seconds, deleted = self.tables.baseline(cutoff)
            out = {"raw": seconds}
        else:
            out = {}
            engine = self.engine
            if name == "batches":
                out["plan_count"], _ = timed(partial(expired_count, engine, cutoff))
            out[name], deleted = timed(partial(BATCHED[name], engine, cutoff, expired, batch))
            after = name == "batches"  # as the sweep verifies; the other: the default plan
            verify = "verify_count" if after else "verify_count_indexonly"
            out[verify], left = timed(partial(expired_count, engine, cutoff, after_deletes=after))
            if left:
                raise SystemExit(f"{left} expired rows left after {name}")
        if deleted != expired:
            raise SystemExit(f"{name} deleted {deleted} rows, expected {expired}")
        return out


def run(rows: int, rounds: int, batch: int, layout: str) -> dict[str, Any]:
    """Every variant ``rounds`` times, rotated, each on a fresh copy; medians and ratios."""
    samples: dict[str, list[float]] = defaultdict(list)
    t0 = datetime(2020, 1, 1)
    cutoff = t0 + SPAN / 2  # the older half of the rows, as in benchmarks.retention
    n = len(VARIANTS)
    with scratch_postgres() as url, tempfile.TemporaryDirectory(prefix="lc-floor-") as tmp:
        tables, engine = PgTables(url), make_engine(url)
        floor = _Floor(tables, engine, Path(tmp), url)
        try:
            tables.build(layout, rows, t0)
            _, expired = tables.counts(f"src_{layout}", cutoff)
            for i in range(rounds):
                for name in VARIANTS[i % n :] + VARIANTS[: i % n]:
                    parts = floor.round(layout, name, cutoff=cutoff, expired=expired, batch=batch)
                    for part, seconds in parts.items():
                        samples[part].append(seconds)
                last = ", ".join(f"{k} {v[-1]:.3f} s" for k, v in samples.items())
                log(f"round {i + 1}: {last}")
        finally:
            engine.dispose()
            tables.close()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["raw"]
    counts = medians["plan_count"] + medians["verify_count"]
    floors = {
        "floor_range": medians["batches"] + counts,
        "floor_range_audited": medians["batches"] + counts + medians["setup"] + medians["audit"],
        "floor_keys": medians["batches_digested"] + counts,
    }
    return {
        "rows": rows,
        "layout": layout,
        "expired": expired,
        "rounds": rounds,
        "batch": batch,
        **{f"{name}_s": round(seconds, 3) for name, seconds in medians.items()},
        **{f"{name}_ratio": ratio(seconds, base) for name, seconds in medians.items()},
        **{f"{name}_s": round(seconds, 3) for name, seconds in floors.items()},
        **{f"{name}_ratio": ratio(seconds, base) for name, seconds in floors.items()},
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="rows (default 2,000,000)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds (default 5)")
    parser.add_argument("--batch", type=int, default=BATCH, help="rows per batch (default 50,000)")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="time_ordered")
    args = parser.parse_args(argv)
    figures = run(args.rows, args.rounds, args.batch, args.layout)
    log(
        f"raw DELETE {figures['raw_s']} s; batches {figures['batches_ratio']}x; "
        f"plan count {figures['plan_count_ratio']}x; verify count {figures['verify_count_ratio']}x "
        f"(index-only plan {figures['verify_count_indexonly_ratio']}x); floor "
        f"{figures['floor_range_ratio']}x; with setup {figures['setup_ratio']}x and audit "
        f"writes {figures['audit_ratio']}x: {figures['floor_range_audited_ratio']}x"
    )
    emit_result("retention_floor", figures, {}, {})


if __name__ == "__main__":
    main()
