"""Tasks of the inventory-drift check: read each store's live catalog, compare, record.

One task per store runs its type's drift reader (``discovery.drift.drift_reader``): it
reads the catalog, samples what the inventory does not name and returns findings that
name tables, columns, buckets and prefixes only (never a sampled value). The record task
compares them with the previous run, stores them in ``drift_checks`` and writes the
ledger: one event per current finding, one per resolved finding, and a summary with the
counts (tables, sampled columns, buckets, findings, ignored).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from audit.events import EventStatus, NewEvent
from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from config.loader import load_config
from config.schema.model import LifecycleConfig
from discovery.drift import DriftComparison, DriftFinding, StoreDrift, compare, drift_reader
from engine.events import ledger_event, run_ids
from engine.request_support import clean_errors
from state.drift_checks import DriftChecks, new_drift_id
from tasks.lifecycle_task import lifecycle_task

DRIFT_ACTOR = "flow:inventory-drift"


@dataclass(frozen=True)
class DriftOutcome:
    """A recorded run: its id, the comparison with the last run, what was read (counts
    summed over the stores), how many findings ``ignore:`` dropped, the stores unchecked."""

    check_id: str
    comparison: DriftComparison
    counts: dict[str, int] = field(default_factory=dict)
    ignored: int = 0
    unchecked: tuple[str, ...] = ()


@lifecycle_task("store-drift")
def store_drift_task(
    config: LifecycleConfig, store: str, account_wide: bool, sample_rows: int
) -> StoreDrift:
    """One store's drift findings (with ``account_wide``, also its account's)."""
    declared = config.store(store)
    with clean_errors(f"reading the catalog of store '{store}'"):
        reader = drift_reader(declared)
        if reader is None:
            return StoreDrift(store, ())
        return reader(config, declared, account_wide=account_wide, sample_rows=sample_rows)


def _finding_event(
    kind: str, status: EventStatus, check_id: str, f: DriftFinding, state: str
) -> NewEvent:
    return ledger_event(
        kind,
        status,
        check_id,
        actor=DRIFT_ACTOR,
        connector=f.store,
        target=f.resource[:512],
        detail={
            "rule": f.rule,
            "severity": f.severity,
            "state": state,
            "evidence": f.evidence[:1000],
            "categories": list(f.categories),
        },
    )


@lifecycle_task("record-drift")
def record_drift_task(drifts: Sequence[StoreDrift], unchecked: Sequence[str]) -> DriftOutcome:
    """Compare with the last run, record this one and audit every finding."""
    with clean_errors("recording the inventory-drift check"):
        findings = [f for d in drifts for f in d.findings]
        counts: Counter[str] = Counter()
        for d in drifts:
            counts.update(d.counts)
        ignored = sum(d.ignored for d in drifts)
        ledger = Ledger.open(keys=keyring_from_settings(), actor=DRIFT_ACTOR)
        checks = DriftChecks(ledger.engine)
        last = checks.latest()
        previous = [DriftFinding.from_json(f) for f in last.findings] if last else []
        comparison = compare(previous, findings)
        check_id = new_drift_id()
        events = [
            _finding_event(
                "drift.finding", EventStatus.FAILED, check_id, f, comparison.status_of(f)
            )
            for f in comparison.current
        ]
        events += [
            _finding_event("drift.resolved", EventStatus.SUCCEEDED, check_id, f, "resolved")
            for f in comparison.resolved
        ]
        high = len(comparison.high)
        events.append(
            ledger_event(
                "drift.checked",
                EventStatus.FAILED if high else EventStatus.SUCCEEDED,
                check_id,
                actor=DRIFT_ACTOR,
                counts={
                    **counts,
                    "stores": len(drifts),
                    "findings": len(comparison.current),
                    "high": high,
                    "new": len(comparison.new),
                    "persisting": len(comparison.persisting),
                    "resolved": len(comparison.resolved),
                    "ignored": ignored,
                    **({"unchecked": len(unchecked)} if unchecked else {}),
                },
                detail={"unchecked": list(unchecked)} if unchecked else {},
            )
        )
        store = checks.record(
            check_id, [f.to_json() for f in comparison.current], run_ids()["flow_run_id"]
        )
        ledger.append_many(events, also=store)
        return DriftOutcome(check_id, comparison, dict(counts), ignored, tuple(unchecked))


def drift_context() -> LifecycleConfig:
    """The configuration the check runs against."""
    return load_config()
