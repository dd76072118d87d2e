"""Subject-request benchmark: erasure cost follows the subject's rows, not the table size.

Run: ``python -m benchmarks.requests [--customers N] [--rounds N]``.

Bulk requests (1,000 erasures as one batch against the same requests one flow run each)
are measured by ``benchmarks/request_batch.py``: ``python -m benchmarks.requests --batch
[its options]`` runs that benchmark instead of this one (``make bench`` runs each once).

On PostgreSQL it builds, server-side (``demo.bulk_pg``, with households), a LARGE demo CRM of
``--customers`` customers (default 1,000,000, with about ten related rows each over five
tables) and a SMALL one 100 times smaller, each in a scratch database dropped at the end.
Both have an ``addresses`` table that ``customers.home_address_id`` and
``orders.shipping_address_id`` point at, a third of the addresses shared by two customers (a
household); the inventory declares it with personal fields, so an address is *linked* to the
subject (``follow: target``): erased when only the request's rows point at it, kept when
rows outside the request do (the shared-row check). It measures:

1. the erasure through the SQL connector, without Prefect (locate + plan + execute + verify;
   no ledger), of two subjects per round: one sharing its address (kept) and one living
   alone (deleted); median over ``--rounds`` rounds of the pair's time on each database,
   rounds interleaved. Target: LARGE / SMALL <= 1.5 (indexed, set-based statements do not
   scan tables). After every erasure it checks, outside the timing, that the shared
   address and the other household member's references to it are still there and the
   unshared address is gone. The time per phase (locate, plan, execute, verify, and the
   SQL time of the shared-row check across them) is printed as the profile.
2. the shared-row check's statements (grouped counts, counted with SQLAlchemy's
   ``before_cursor_execute``): the same number per erasure on both sizes, and PostgreSQL's
   ``EXPLAIN`` of each on LARGE shows index scans, never a Seq Scan. Both are asserted.
3. for a subject with 1,000 related rows (and an address of its own), the connector
   executing its erasure plan against the approach of the leading open-source tool: one
   UPDATE or DELETE statement per row, each on its own pooled connection and transaction
   (checkout, execute, commit, return), same rows, same run; the subject is restored from
   a saved copy between runs. Target: the connector at least 10 times faster.
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
import re
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
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
from config.schema import Policy
from connectors.base import SHARED_REASON, Action, Identities, StorePlan
from connectors.sql.config import SqlStore
from connectors.sql.connector import SqlConnector
from connectors.sql.masks import Masker
from connectors.sql.schema import coerce_key, key_clause
from core.engines import make_engine
from core.keys import KeyRing
from core.pseudonym import Pseudonym, Pseudonymizer
from demo.bulk_pg import (
    HOUSEHOLD_TABLES,
    ORDERS_PER_CUSTOMER,
    RELATED_PER_CUSTOMER,
    HeavyFootprint,
    add_heavy_subject,
    address_count,
    address_of,
    build_crm,
    customer_email,
    household_inventory,
    household_metadata,
    household_partner,
)

DEFAULT_CUSTOMERS = 1_000_000
SMALL_FACTOR = 100
DEFAULT_ROUNDS = 11
HEAVY_ROUNDS = 3
RATIO_TARGET = 1.5
SPEEDUP_TARGET = 10.0
HEAVY_EMAIL = "heavy.subject@example.com"
KEYS = KeyRing.from_master(b"benchmark-master-key-not-secret!")
KINDS = ("shared", "alone")  # a household member (address kept), a customer living alone
PHASES = ("locate", "plan", "execute", "verify", "shared_check")

Rows = dict[str, list[dict[str, Any]]]


def _identities(email: str) -> Identities:
    return {"email": frozenset({email})}


def _pseudonym(email: str) -> Pseudonym:
    return Pseudonymizer(KEYS.pseudonym_hmac).of_identity({"email": email})


def is_shared_check(statement: str) -> bool:
    """Whether SQL text is a shared-row check: a grouped count of holders."""
    return "GROUP BY" in statement and "count(*)" in statement


class StatementLog:
    """What one engine sends (``before/after_cursor_execute``): statements, shared checks.

    Keeps the last shared-check statement of each kind (referencing table; all holders or
    the request's own among them) with its parameters, to ``EXPLAIN`` it afterwards.
    """

    def __init__(self, engine: Engine) -> None:
        self.statements = self.shared_checks = 0
        self.shared_seconds = 0.0
        self.samples: dict[str, tuple[str, Any]] = {}
        self._started = 0.0
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def reset(self) -> None:
        self.statements = self.shared_checks = 0
        self.shared_seconds = 0.0

    def _before(self, *args: Any) -> None:
        statement, parameters = args[2], args[3]
        self.statements += 1
        if is_shared_check(statement):
            self.shared_checks += 1
            held = re.search(r"FROM (\w+)", statement)
            kind = (
                f"{held.group(1) if held else '?'}{' (own rows)' if ' AND ' in statement else ''}"
            )
            self.samples[kind] = (statement, parameters)
            self._started = time.perf_counter()

    def _after(self, *args: Any) -> None:
        if is_shared_check(args[2]):
            self.shared_seconds += time.perf_counter() - self._started


@dataclass(frozen=True)
class Erasure:
    """One measured erasure: rows found, the plan, seconds per phase, statements sent."""

    rows: int
    plan: StorePlan
    seconds: float
    phases: dict[str, float]
    statements: int
    shared_checks: int


class Crm:
    """One benchmark database: its engine and a connector on the inventory with addresses."""

    def __init__(self, url: str, store: SqlStore, policy: Policy) -> None:
        self.engine = make_engine(url)
        self.store = household_inventory(store).model_copy(update={"url": SecretStr(url)})
        self.connector = SqlConnector(self.store, policy, keys=KEYS)
        self.log = StatementLog(self.connector.engine)
        self.today = datetime.now(UTC).date().isoformat()
        self.md = household_metadata()

    def plan(self, email: str) -> tuple[int, StorePlan]:
        """Locate and plan the erasure of ``email``: rows found, and the plan."""
        findings = self.connector.locate(_identities(email))
        return findings.total, self.connector.plan_erasure(findings, self.today, _pseudonym(email))

    def erase(self, email: str) -> Erasure:
        """Locate, plan, execute and verify the erasure of one subject, timed per phase."""
        self.log.reset()
        marks = [time.perf_counter()]
        findings = self.connector.locate(_identities(email))
        marks.append(time.perf_counter())
        plan = self.connector.plan_erasure(findings, self.today, _pseudonym(email))
        marks.append(time.perf_counter())
        self.connector.execute(plan, lambda _batch: None)
        marks.append(time.perf_counter())
        verification = self.connector.verify(_identities(email), plan)
        marks.append(time.perf_counter())
        if not verification.clean:
            raise SystemExit(f"verification found rows left: {dict(verification.remaining)}")
        phases = {name: marks[i + 1] - marks[i] for i, name in enumerate(PHASES[:4])}
        phases["shared_check"] = self.log.shared_seconds
        return Erasure(
            findings.total,
            plan,
            marks[-1] - marks[0],
            phases,
            self.log.statements,
            self.log.shared_checks,
        )

    def check_household(self, customer: int, erasure: Erasure) -> None:
        """After erasing ``customer``: a shared address and its other holders stay; else gone."""
        address, partner = address_of(customer), household_partner(customer)
        addresses, customers = self.md.tables["addresses"], self.md.tables["customers"]
        orders = self.md.tables["orders"]
        steps = {(s.target, s.action): s for s in erasure.plan.steps}
        with self.engine.connect() as conn:
            present = conn.execute(sa.select(sa.func.count()).where(addresses.c.id == address))
            left = int(present.scalar_one())
            if partner is None:
                delete = steps.get(("addresses", Action.DELETE))
                ok = left == 0 and delete is not None and delete.keys == ((address,),)
            else:
                keep = steps.get(("addresses", Action.KEEP))
                homes = sa.select(customers.c.home_address_id).where(customers.c.id == partner)
                shipped = sa.select(sa.func.count()).where(
                    orders.c.customer_id == partner, orders.c.shipping_address_id == address
                )
                ok = (
                    left == 1
                    and keep is not None
                    and keep.reason == SHARED_REASON
                    and keep.keys == ((address,),)
                    and conn.execute(homes).scalar_one() == address
                    and conn.execute(shipped).scalar_one() == ORDERS_PER_CUSTOMER
                )
        if not ok:
            raise SystemExit(f"customer {customer}: address {address} not handled as planned")

    def explain(self) -> dict[str, list[str]]:
        """PostgreSQL's scan nodes for each kind of shared-check statement the log kept."""
        found: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for kind, (statement, parameters) in sorted(self.log.samples.items()):
                lines = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars()
                found[kind] = [
                    re.sub(r"^(->)?\s*|\s+\(cost=.*$", "", line.strip())
                    for line in lines
                    if "Scan" in line
                ]
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
        log(f"[{label}] building {customers:,} customers server-side, with households")
        build = partial(build_crm, engine, customers, progress=log, households=True)
        seconds, counts = timed(build)
    finally:
        engine.dispose()
    total = sum(counts.values())
    log(f"[{label}] {total:,} rows in {len(counts)} tables in {seconds:.1f} s")
    return counts


def household_subjects(customers: int, rounds: int) -> list[tuple[int, int]]:
    """Per round plus a warm-up: a customer sharing its address, and one living alone.

    Spread over the id range, each the first of a block of four: ``b + 1`` lives with
    ``b + 2`` (never erased), ``b + 3`` alone. Needs ``customers >= 4 * (rounds + 2)``.
    """
    step = customers // (rounds + 2)
    bases = [4 * (step * (i + 1) // 4) for i in range(rounds + 1)]
    return [(b + 1, b + 3) for b in bases]


def _profile(erasures: Sequence[Erasure]) -> dict[str, float]:
    return {p: round(statistics.median(e.phases[p] for e in erasures) * 1000, 1) for p in PHASES}


def _statement_counts(by: Mapping[str, Sequence[Erasure]]) -> dict[str, Any]:
    """Shared-check and total statements per erasure, per database and kind of subject."""
    figures: dict[str, Any] = {}
    for what in ("shared_checks", "statements"):
        counts = {k: sorted({getattr(e, what) for e in v}) for k, v in by.items()}
        figures[f"{what}_per_erasure"] = {k: c[0] if len(c) == 1 else c for k, c in counts.items()}
    checks = figures["shared_checks_per_erasure"]
    figures["shared_checks_constant"] = all(
        isinstance(checks[f"large_{k}"], int) and checks[f"large_{k}"] == checks[f"small_{k}"]
        for k in KINDS
    )
    return figures


def erasure_medians(large: Crm, small: Crm, sizes: tuple[int, int], rounds: int) -> dict[str, Any]:
    """Erasure figures: median seconds per round (a shared and an alone subject), per size.

    Rounds alternate large and small (different subjects), so a change in the shared
    machine's load lands on both sides instead of skewing the ratio.
    """
    large_ids, small_ids = (household_subjects(n, rounds) for n in sizes)
    for crm, ids in ((large, large_ids), (small, small_ids)):
        for customer in ids[0]:  # warm-up: reflection, connection pool, caches
            crm.check_household(customer, crm.erase(customer_email(customer)))
    by: dict[str, list[Erasure]] = {f"{s}_{k}": [] for s in ("large", "small") for k in KINDS}
    pairs: dict[str, list[float]] = {"large": [], "small": []}
    for i in range(1, rounds + 1):
        for label, crm, ids in (("large", large, large_ids), ("small", small, small_ids)):
            pair = 0.0
            for kind, customer in zip(KINDS, ids[i], strict=True):
                erasure = crm.erase(customer_email(customer))
                crm.check_household(customer, erasure)
                by[f"{label}_{kind}"].append(erasure)
                pair += erasure.seconds
                log(
                    f"  [{label}] round {i}/{rounds} {kind}: {erasure.rows} rows in "
                    f"{erasure.seconds * 1000:.1f} ms, {erasure.statements} statements, "
                    f"{erasure.shared_checks} shared checks"
                )
            pairs[label].append(pair)
    medians = {label: statistics.median(values) for label, values in pairs.items()}
    figures: dict[str, Any] = {
        "subject_rows": {k: v[-1].rows for k, v in by.items() if k.startswith("large")},
        "erasure_large_ms": round(medians["large"] * 1000, 1),
        "erasure_small_ms": round(medians["small"] * 1000, 1),
        "erasure_ratio_large_small": ratio(medians["large"], medians["small"]),
    }
    for kind in KINDS:
        kind_medians = [statistics.median(e.seconds for e in by[f"{s}_{kind}"]) for s in pairs]
        figures[f"erasure_ratio_{kind}"] = ratio(*kind_medians)
    for label in pairs:
        profile = _profile([e for k, v in by.items() if k.startswith(label) for e in v])
        figures[f"profile_{label}_ms"] = profile
        log(f"[{label}] erasure pair median {medians[label] * 1000:.1f} ms; phases {profile}")
    figures.update(_statement_counts(by))
    explained = large.explain()
    figures["shared_check_scans_large"] = explained
    figures["shared_check_index_scans"] = bool(explained) and all(
        any("Index" in n for n in nodes) and not any("Seq Scan" in n for n in nodes)
        for nodes in explained.values()
    )
    return figures


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
        for name in reversed(HOUSEHOLD_TABLES):
            rows = saved.get(name)
            if rows:
                table = md.tables[name]
                columns = [c.name for c in table.primary_key.columns]
                keys = [tuple(r[c] for c in columns) for r in rows]
                conn.execute(sa.delete(table).where(key_clause(table, columns, keys)))
        for name in HOUSEHOLD_TABLES:
            if saved.get(name):
                conn.execute(sa.insert(md.tables[name]), saved[name])


def _row_statements(md: sa.MetaData, plan: StorePlan, saved: Rows) -> list[sa.Executable]:
    """The baseline: one DELETE or UPDATE per row, in the plan's order, same values."""
    masker = Masker(KEYS)
    statements: list[sa.Executable] = []
    for step in plan.steps:
        if step.action not in (Action.DELETE, Action.MASK):
            if step.action == Action.UNLINK:  # not needed by this schema: not reproduced
                raise SystemExit(f"unexpected UNLINK step on {step.target}")
            continue  # KEEP and DEFER touch nothing
        table = md.tables[step.target]
        columns = [c.name for c in table.primary_key.columns]
        by_key = {tuple(r[c] for c in columns): r for r in saved[step.target]}
        for key in step.keys:
            row = by_key[coerce_key([table.c[c] for c in columns], key) or ()]
            where = sa.and_(*(table.c[c] == row[c] for c in columns))
            if step.action == Action.DELETE:
                statements.append(sa.delete(table).where(where))
            else:
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
    add_heavy_subject(crm.engine, HEAVY_EMAIL, footprint, households=True)
    found, plan = crm.plan(HEAVY_EMAIL)
    md = crm.md
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
    small = max(customers // SMALL_FACTOR, 4 * (rounds + 2))
    figures: dict[str, Any] = {
        "customers_large": customers,
        "customers_small": small,
        "related_rows_per_customer": RELATED_PER_CUSTOMER,
        "addresses_large": address_count(customers)[0],
        "shared_addresses_large": address_count(customers)[1],
        "rounds": rounds,
    }
    with ExitStack() as stack:
        large_url = stack.enter_context(scratch_postgres())
        small_url = stack.enter_context(scratch_postgres())
        figures["rows_large"] = sum(_build(large_url, customers, "large").values())
        figures["rows_small"] = sum(_build(small_url, small, "small").values())
        large = stack.enter_context(_crm(large_url, crm_store, config.policy))
        small_crm = stack.enter_context(_crm(small_url, crm_store, config.policy))
        figures["doctor_index_warnings"] = len(large.connector.index_warnings())
        figures.update(erasure_medians(large, small_crm, (customers, small), rounds))
        figures.update(heavy_speedup(large, max(rounds, HEAVY_ROUNDS)))
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    met = {
        "erasure_ratio_large_small": figures["erasure_ratio_large_small"] <= RATIO_TARGET,
        "heavy_speedup": figures["heavy_speedup"] >= SPEEDUP_TARGET,
        "shared_checks_constant": figures["shared_checks_constant"],
        "shared_check_index_scans": figures["shared_check_index_scans"],
        "doctor_index_warnings": figures["doctor_index_warnings"] == 0,
    }
    targets = {
        "erasure_ratio_large_small": f"<= {RATIO_TARGET}",
        "heavy_speedup": f">= {SPEEDUP_TARGET}",
        "shared_checks_constant": "same shared-check statements per erasure on both sizes",
        "shared_check_index_scans": "EXPLAIN: index scans, no Seq Scan",
        "doctor_index_warnings": "0 (every reference column indexed)",
    }
    emit_result("requests", figures, targets, met)
    structural = ("shared_checks_constant", "shared_check_index_scans", "doctor_index_warnings")
    failed = [name for name in structural if not met[name]]
    if failed:  # asserted, not only reported: these are properties, not timings
        raise SystemExit(f"failed: {', '.join(failed)}")


def main(argv: list[str] | None = None) -> None:
    args_given = sys.argv[1:] if argv is None else argv
    if "--batch" in args_given and not {"-h", "--help"} & set(args_given):
        from benchmarks.request_batch import main as batch_main

        batch_main([a for a in args_given if a != "--batch"])
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--batch",
        action="store_true",
        help="run the bulk-request benchmark instead (benchmarks/request_batch.py, its options)",
    )
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS, help="LARGE size")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="subjects per size")
    args = parser.parse_args(argv)
    least = max(SMALL_FACTOR, 4 * (args.rounds + 2))
    if args.customers < least or args.rounds < 1:
        parser.error(f"--customers must be at least {least} and --rounds at least 1")
    run(args.customers, args.rounds)


if __name__ == "__main__":
    main()
