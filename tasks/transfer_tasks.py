"""Tasks of the transfer and posture check: gather facts per store, judge, record.

Facts are gathered one task per store (S3 stores read their buckets on a bounded pool);
judging is pure (``transfers.evaluate``); the result is compared with the previous run,
stored in ``transfer_checks`` and written to the ledger: one event per current finding,
one per resolved finding, and a summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from audit.events import EventStatus, NewEvent
from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from audit.transfer_checks import TransferChecks, new_check_id
from config.loader import load_config
from config.schema import S3Store, SqlStore
from config.schema.model import LifecycleConfig
from connectors.posture_facts import BucketFacts, DatabaseFacts
from tasks.request_support import clean_errors, request_task, run_ids
from transfers.evaluate import evaluate
from transfers.findings import Comparison, Finding, compare

CHECK_ACTOR = "flow:transfer-check"
S3_WORKERS = 16


@dataclass(frozen=True)
class CheckOutcome:
    """A judged run: its id, the comparison with the last run, and the facts' counts."""

    check_id: str
    comparison: Comparison
    buckets: int
    databases: int


@request_task("s3-posture-facts")
def s3_facts_task(config: LifecycleConfig, store: str, all_buckets: bool) -> list[BucketFacts]:
    """Every bucket of one S3 store (and, once, the account's undeclared buckets)."""
    from connectors.s3.client import make_client
    from connectors.s3.posture import store_facts

    declared = config.store(store)
    assert isinstance(declared, S3Store)
    with clean_errors(f"reading S3 posture of store '{store}'"):
        client = make_client(declared, S3_WORKERS)
        try:
            return store_facts(
                client, declared, config, max_workers=S3_WORKERS, all_buckets=all_buckets
            )
        finally:
            client.close()


@request_task("sql-posture-facts")
def sql_facts_task(config: LifecycleConfig, store: str) -> DatabaseFacts:
    """Where one SQL store is, its RDS replicas, and whether its connection requires TLS."""
    from connectors.sql.posture import database_facts
    from core.engines import make_engine

    declared = config.store(store)
    assert isinstance(declared, SqlStore)
    with clean_errors(f"reading SQL posture of store '{store}'"):
        engine = make_engine(declared.url.get_secret_value())
        try:
            return database_facts(declared, engine=engine)
        finally:
            engine.dispose()


def gather(
    config: LifecycleConfig, all_buckets: bool
) -> tuple[list[BucketFacts], list[DatabaseFacts]]:
    """Facts of every store, one task each; undeclared buckets are listed by the first S3 store."""
    buckets: list[BucketFacts] = []
    databases: list[DatabaseFacts] = []
    seen: set[str] = set()
    first = True
    for store in config.inventory.stores:
        if isinstance(store, S3Store):
            for fact in s3_facts_task(config, store.name, all_buckets and first):
                if fact.bucket not in seen:
                    seen.add(fact.bucket)
                    buckets.append(fact)
            first = False
        else:
            databases.append(sql_facts_task(config, store.name))
    return buckets, databases


def _event(kind: str, status: EventStatus, check_id: str, **fields: Any) -> NewEvent:
    ids = run_ids()
    return NewEvent(
        kind=kind,
        status=status,
        request_id=check_id,
        actor=CHECK_ACTOR,
        flow_run_id=ids["flow_run_id"],
        task_run_id=ids["task_run_id"],
        **fields,
    )


def _finding_event(
    kind: str, status: EventStatus, check_id: str, f: Finding, state: str
) -> NewEvent:
    return _event(
        kind,
        status,
        check_id,
        connector=f.store,
        target=f.resource[:512],
        detail={
            "rule": f.rule,
            "severity": f.severity,
            "state": state,
            "evidence": f.evidence[:1000],
            "categories": list(f.categories),
            "safeguard": f.safeguard,
        },
    )


@request_task("judge-and-record")
def judge_task(
    buckets: list[BucketFacts], databases: list[DatabaseFacts], config: LifecycleConfig
) -> CheckOutcome:
    """Judge the facts, compare with the last run, record the run and audit every finding."""
    with clean_errors("recording the transfer check"):
        today = datetime.now(UTC).date()
        findings = evaluate(buckets, databases, config.policy.transfers, today)
        ledger = Ledger.open(keys=keyring_from_settings(), actor=CHECK_ACTOR)
        checks = TransferChecks(ledger.engine)
        last = checks.latest()
        previous = [Finding.from_json(f) for f in last.findings] if last else []
        comparison = compare(previous, findings)
        check_id = new_check_id()
        events = [
            _finding_event(
                "transfer.finding", EventStatus.FAILED, check_id, f, comparison.status_of(f)
            )
            for f in comparison.current
        ]
        events += [
            _finding_event("transfer.resolved", EventStatus.SUCCEEDED, check_id, f, "resolved")
            for f in comparison.resolved
        ]
        high = len(comparison.high)
        events.append(
            _event(
                "transfer.checked",
                EventStatus.FAILED if high else EventStatus.SUCCEEDED,
                check_id,
                counts={
                    "buckets": len(buckets),
                    "databases": len(databases),
                    "findings": len(comparison.current),
                    "high": high,
                    "new": len(comparison.new),
                    "persisting": len(comparison.persisting),
                    "resolved": len(comparison.resolved),
                },
            )
        )
        store = checks.record(check_id, [f.to_json() for f in findings], run_ids()["flow_run_id"])
        ledger.append_many(events, also=store)
        return CheckOutcome(check_id, comparison, len(buckets), len(databases))


def check_context() -> LifecycleConfig:
    """The configuration the check runs against."""
    return load_config()
