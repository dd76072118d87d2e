"""Subject-request benchmark: erasure cost follows the subject's rows, not the table size.

Run: ``python -m benchmarks.requests [--customers N] [--rounds N]``.

On PostgreSQL it builds, server-side (``demo.bulk_pg``), a LARGE demo CRM of ``--customers``
customers (default 1,000,000, with about ten related rows each over five tables) and a SMALL
one 100 times smaller, each in a scratch database dropped at the end, and measures:

1. the erasure of one subject (11 rows) through the SQL connector, without Prefect:
   locate + plan + execute + verify, median over ``--rounds`` subjects on each database.
   Target: LARGE / SMALL <= 1.5 (indexed, set-based statements do not scan tables).
2. for a subject with 1,000 related rows, the connector executing its erasure plan against
   the approach of the leading open-source tool: one UPDATE or DELETE statement per row,
   each on its own pooled connection and transaction (checkout, execute, commit,
   return), same rows, same run; the subject is restored from a saved copy between runs.
   Target: the connector at least 10 times faster.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy import Engine

from benchmarks.common import (
    emit_result,
    log,
    peak_rss_mb,
    ratio,
    scratch_postgres,
    timed,
)
from config.loader import load_config
from config.schema import Policy, SqlStore
from connectors.base import Action, Identities, StorePlan
from connectors.sql import SqlConnector
from connectors.sql.masks import Masker
from connectors.sql.schema import coerce_key, key_clause
from core.engines import make_engine
from core.keys import KeyRing
from core.pseudonym import Pseudonym, Pseudonymizer
from demo.bulk_pg import (
    RELATED_PER_CUSTOMER,
    HeavyFootprint,
    add_heavy_subject,
    build_crm,
    customer_email,
)
from demo.crm_schema import TABLES, crm_metadata

DEFAULT_CUSTOMERS = 1_000_000
SMALL_FACTOR = 100
DEFAULT_ROUNDS = 11
HEAVY_ROUNDS = 3
RATIO_TARGET = 1.5
SPEEDUP_TARGET = 10.0
HEAVY_EMAIL = "heavy.subject@example.com"
KEYS = KeyRing.from_master(b"benchmark-master-key-not-secret!")

Rows = dict[str, list[dict[str, Any]]]


def _identities(email: str) -> Identities:
    return {"email": frozenset({email})}


def _pseudonym(email: str) -> Pseudonym:
    return Pseudonymizer(KEYS.pseudonym_hmac).of_identity({"email": email})


class Crm:
    """One benchmark database: its engine and a connector on the demo inventory's store."""

    def __init__(self, url: str, store: SqlStore, policy: Policy) -> None:
        self.engine = make_engine(url)
        self.store = store.model_copy(update={"url": SecretStr(url)})
        self.connector = SqlConnector(self.store, policy, keys=KEYS)
        self.today = datetime.now(UTC).date().isoformat()

    def plan(self, email: str) -> tuple[int, StorePlan]:
        """Locate and plan the erasure of ``email``: rows found, and the plan."""
        findings = self.connector.locate(_identities(email))
        return findings.total, self.connector.plan_erasure(findings, self.today, _pseudonym(email))

    def erase(self, email: str) -> int:
        """Locate, plan, execute and verify the erasure of one subject; rows found."""
        found, plan = self.plan(email)
        self.connector.execute(plan, lambda _batch: None)
        verification = self.connector.verify(_identities(email), plan)
        if not verification.clean:
            raise SystemExit(f"verification found rows left: {dict(verification.remaining)}")
        return found

    def close(self) -> None:
        self.connector.close()
        self.engine.dispose()


@contextmanager
def _crm(url: str, store: SqlStore, policy: Policy) -> Iterator[Crm]:
    crm = Crm(url, store, policy)
    try:
        yield crm
    finally:
        crm.close()


def _build(url: str, customers: int, label: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        log(f"[{label}] building {customers:,} customers server-side")
        seconds, counts = timed(lambda: build_crm(engine, customers, progress=log))
    finally:
        engine.dispose()
    total = sum(counts.values())
    log(f"[{label}] {total:,} rows in {len(counts)} tables in {seconds:.1f} s")
    return counts


def subject_ids(customers: int, rounds: int) -> list[int]:
    """Customers spread over the id range, one per round plus a warm-up (distinct)."""
    step = customers // (rounds + 2)
    return [step * (i + 1) for i in range(rounds + 1)]


def erasure_medians(
    large: Crm, small: Crm, sizes: tuple[int, int], rounds: int
) -> tuple[float, float, int]:
    """Median seconds to erase one subject on each database; rows per subject.

    Rounds alternate large and small (each a different subject), so a change in the
    shared machine's load lands on both sides instead of skewing the ratio.
    """
    large_ids, small_ids = (subject_ids(n, rounds) for n in sizes)
    for crm, ids in ((large, large_ids), (small, small_ids)):
        crm.erase(customer_email(ids[0]))  # warm-up: reflection, connection pool, caches
    samples: dict[str, list[float]] = {"large": [], "small": []}
    rows = 0
    for i in range(1, rounds + 1):
        for label, crm, ids in (("large", large, large_ids), ("small", small, small_ids)):
            seconds, rows = timed(partial(crm.erase, customer_email(ids[i])))
            samples[label].append(seconds)
            log(f"  [{label}] erasure {i}/{rounds}: {rows} rows in {seconds * 1000:.1f} ms")
    medians = {label: statistics.median(values) for label, values in samples.items()}
    for label, median in medians.items():
        log(f"[{label}] erasure median {median * 1000:.1f} ms")
    return medians["large"], medians["small"], rows


# --- the 1,000-row subject: connector execute against one statement per row ----------


def _saved_rows(engine: Engine, md: sa.MetaData, plan: StorePlan) -> Rows:
    """The current rows of every key the plan touches (to restore them between runs)."""
    saved: Rows = {}
    with engine.connect() as conn:
        for step in plan.steps:
            table = md.tables[step.target]
            columns = [c.name for c in table.primary_key.columns]
            where = key_clause(table, columns, step.keys)
            result = conn.execute(sa.select(table).where(where)).mappings()
            saved[step.target] = [dict(r) for r in result]
    return saved


def _restore(engine: Engine, md: sa.MetaData, saved: Rows) -> None:
    """Put the saved rows back as they were: remove what is left, re-insert the copies."""
    with engine.begin() as conn:
        for name in reversed(TABLES):
            rows = saved.get(name)
            if rows:
                table = md.tables[name]
                columns = [c.name for c in table.primary_key.columns]
                keys = [tuple(r[c] for c in columns) for r in rows]
                conn.execute(sa.delete(table).where(key_clause(table, columns, keys)))
        for name in TABLES:
            if saved.get(name):
                conn.execute(sa.insert(md.tables[name]), saved[name])


def _row_statements(md: sa.MetaData, plan: StorePlan, saved: Rows) -> list[sa.Executable]:
    """The baseline: one DELETE or UPDATE per row, in the plan's order, same values."""
    masker = Masker(KEYS)
    statements: list[sa.Executable] = []
    for step in plan.steps:
        table = md.tables[step.target]
        columns = [c.name for c in table.primary_key.columns]
        by_key = {tuple(r[c] for c in columns): r for r in saved[step.target]}
        for key in step.keys:
            row = by_key[coerce_key([table.c[c] for c in columns], key) or ()]
            where = sa.and_(*(table.c[c] == row[c] for c in columns))
            if step.action == Action.DELETE:
                statements.append(sa.delete(table).where(where))
            elif step.action == Action.MASK:
                values = {
                    m.column: masker.value(m.mask, table.c[m.column], row[m.column])
                    for m in step.masks
                }
                statements.append(sa.update(table).where(where).values(values))
    return statements


def _one_per_row(engine: Engine, statements: Sequence[sa.Executable]) -> int:
    affected = 0
    for statement in statements:
        # Its own connection and transaction per row: checkout, execute, commit, return.
        with engine.begin() as conn:
            affected += conn.execute(statement).rowcount
    return affected


def _alternate(
    runs: Mapping[str, Callable[[], int]], restore: Callable[[], None], rounds: int
) -> dict[str, list[float]]:
    """Time each run ``rounds`` times, alternating, restoring the data before every run."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(rounds):
        for name, run in runs.items():
            restore()
            seconds, affected = timed(run)
            samples[name].append(seconds)
            log(f"  {name} round {i + 1}/{rounds}: {affected} rows in {seconds * 1000:.1f} ms")
    return samples


def heavy_speedup(crm: Crm, rounds: int) -> dict[str, float | int]:
    """Connector execute against one statement per row, for a 1,000-row subject."""
    footprint = HeavyFootprint()
    add_heavy_subject(crm.engine, HEAVY_EMAIL, footprint)
    found, plan = crm.plan(HEAVY_EMAIL)
    md = crm_metadata()
    saved = _saved_rows(crm.engine, md, plan)
    statements = _row_statements(md, plan, saved)
    log(f"[heavy] {found} rows found ({footprint.related} related), plan: {plan.summary()}")

    def connector() -> int:
        return sum(b.affected for b in crm.connector.execute(plan, lambda _b: None))

    samples = _alternate(
        {
            "connector execute": connector,
            "one statement per row": partial(_one_per_row, crm.engine, statements),
        },
        lambda: _restore(crm.engine, md, saved),
        rounds,
    )
    _restore(crm.engine, md, saved)
    fast = statistics.median(samples["connector execute"])
    slow = statistics.median(samples["one statement per row"])
    log(f"[heavy] connector {fast * 1000:.1f} ms, per row {slow * 1000:.1f} ms")
    return {
        "heavy_rows": found,
        "heavy_statements_per_row_baseline": len(statements),
        "heavy_connector_execute_ms": round(fast * 1000, 1),
        "heavy_row_by_row_ms": round(slow * 1000, 1),
        "heavy_speedup": ratio(slow, fast),
    }


def run(customers: int, rounds: int) -> None:
    """Build both databases, measure, print the JSON line; scratch databases always dropped."""
    config = load_config()
    crm_store = config.store("crm")
    if not isinstance(crm_store, SqlStore):
        raise SystemExit("the demo inventory's 'crm' store is not a SQL store")
    small = max(customers // SMALL_FACTOR, rounds + 2)
    figures: dict[str, Any] = {
        "customers_large": customers,
        "customers_small": small,
        "related_rows_per_customer": RELATED_PER_CUSTOMER,
        "rounds": rounds,
    }
    with ExitStack() as stack:
        large_url = stack.enter_context(scratch_postgres())
        small_url = stack.enter_context(scratch_postgres())
        figures["rows_large"] = sum(_build(large_url, customers, "large").values())
        figures["rows_small"] = sum(_build(small_url, small, "small").values())
        large = stack.enter_context(_crm(large_url, crm_store, config.policy))
        small_crm = stack.enter_context(_crm(small_url, crm_store, config.policy))
        large_s, small_s, rows = erasure_medians(large, small_crm, (customers, small), rounds)
        figures.update(
            {
                "subject_rows": rows,
                "erasure_large_ms": round(large_s * 1000, 1),
                "erasure_small_ms": round(small_s * 1000, 1),
                "erasure_ratio_large_small": ratio(large_s, small_s),
            }
        )
        figures.update(heavy_speedup(large, max(rounds, HEAVY_ROUNDS)))
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    met = {
        "erasure_ratio_large_small": figures["erasure_ratio_large_small"] <= RATIO_TARGET,
        "heavy_speedup": figures["heavy_speedup"] >= SPEEDUP_TARGET,
    }
    targets = {
        "erasure_ratio_large_small": f"<= {RATIO_TARGET}",
        "heavy_speedup": f">= {SPEEDUP_TARGET}",
    }
    emit_result("requests", figures, targets, met)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS, help="LARGE size")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="subjects per size")
    args = parser.parse_args(argv)
    if args.customers < SMALL_FACTOR or args.rounds < 1:
        parser.error(f"--customers must be at least {SMALL_FACTOR} and --rounds at least 1")
    run(args.customers, args.rounds)


if __name__ == "__main__":
    main()
