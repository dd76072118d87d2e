"""Tasks of the transfer and posture check: gather facts per store, judge, record.

Facts are gathered one task per store by the posture hook of the store's type
(``connectors.catalog``; ``transfers.posture``): a type without one is reported as
unchecked, not as an error. Judging is pure (each fact judges itself,
``transfers.evaluate``); the result is compared with the previous run, stored in
``transfer_checks`` and written to the ledger: one event per current finding, one per
resolved finding, and a summary counting the facts per kind (buckets, databases, ...).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from audit.events import EventStatus, NewEvent
from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from config.loader import load_config
from config.schema.model import LifecycleConfig
from config.schema.stores import StoreConfig
from connectors.catalog import spec_for
from connectors.hooks import load_hook
from engine.events import ledger_event, run_ids
from engine.request_support import clean_errors
from state.transfer_checks import TransferChecks, new_check_id
from tasks.lifecycle_task import lifecycle_task
from transfers.evaluate import evaluate
from transfers.findings import Comparison, Finding, compare
from transfers.posture import NO_POSTURE, PostureFacts, PostureHook

CHECK_ACTOR = "flow:transfer-check"


@dataclass(frozen=True)
class Unchecked:
    """A store the check could not judge, and why (its type offers no posture facts)."""

    store: str
    type: str
    reason: str = NO_POSTURE

    def to_json(self) -> dict[str, str]:
        return {"store": self.store, "type": self.type, "reason": self.reason}

    def __str__(self) -> str:
        return f"store '{self.store}' (type {self.type}): {self.reason}"


@dataclass(frozen=True)
class Gathered:
    """The facts of every store, each resource once, and the stores left unchecked."""

    facts: tuple[PostureFacts, ...]
    unchecked: tuple[Unchecked, ...] = ()


@dataclass(frozen=True)
class CheckOutcome:
    """A judged run: its id, the comparison with the last run, the facts counted per kind
    (``{"buckets": 3, "databases": 1}``) and the stores left unchecked."""

    check_id: str
    comparison: Comparison
    counts: Mapping[str, int] = field(default_factory=dict)
    unchecked: tuple[Unchecked, ...] = ()


def posture_hook(store: StoreConfig) -> PostureHook | None:
    """The posture hook of ``store``'s type, its module imported now; None if it has none."""
    ref = spec_for(store).posture
    return None if ref is None else cast(PostureHook, load_hook(ref))


def unchecked_stores(config: LifecycleConfig) -> tuple[Unchecked, ...]:
    """The stores whose type offers no posture facts, in inventory order."""
    out: list[Unchecked] = []
    for store in config.inventory.stores:
        spec = spec_for(store)
        if spec.posture is None:
            out.append(Unchecked(store.name, spec.name))
    return tuple(out)


@lifecycle_task("posture-facts")
def posture_facts_task(
    config: LifecycleConfig, store: str, account_wide: bool
) -> list[PostureFacts]:
    """The posture facts of one store (and, with ``account_wide``, of its account)."""
    declared = config.store(store)
    with clean_errors(f"reading the posture of store '{store}'"):
        hook = posture_hook(declared)
        return [] if hook is None else list(hook(config, declared, account_wide=account_wide))


def gather(config: LifecycleConfig, account_wide: bool) -> Gathered:
    """Facts of every store, one task each; with ``account_wide``, what each type's account
    holds undeclared is read once, by the type's first store. A resource reached from two
    stores (a bucket both declare) is kept once."""
    facts: list[PostureFacts] = []
    seen: set[str] = set()
    types_done: set[str] = set()
    for store in config.inventory.stores:
        spec = spec_for(store)
        if spec.posture is None:
            continue
        first = spec.name not in types_done
        types_done.add(spec.name)
        for fact in posture_facts_task(config, store.name, account_wide and first):
            if fact.posture_key not in seen:
                seen.add(fact.posture_key)
                facts.append(fact)
    return Gathered(tuple(facts), unchecked_stores(config))


def _finding_event(
    kind: str, status: EventStatus, check_id: str, f: Finding, state: str
) -> NewEvent:
    return ledger_event(
        kind,
        status,
        check_id,
        actor=CHECK_ACTOR,
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


@lifecycle_task("judge-and-record")
def judge_task(gathered: Gathered, config: LifecycleConfig) -> CheckOutcome:
    """Judge the facts, compare with the last run, record the run and audit every finding."""
    with clean_errors("recording the transfer check"):
        today = datetime.now(UTC).date()
        findings = evaluate(gathered.facts, config.policy.transfers, today)
        counts = dict(Counter(f.counted_as for f in gathered.facts))
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
        unchecked = gathered.unchecked
        events.append(
            ledger_event(
                "transfer.checked",
                EventStatus.FAILED if high else EventStatus.SUCCEEDED,
                check_id,
                actor=CHECK_ACTOR,
                counts={
                    **counts,
                    "findings": len(comparison.current),
                    "high": high,
                    "new": len(comparison.new),
                    "persisting": len(comparison.persisting),
                    "resolved": len(comparison.resolved),
                    **({"unchecked": len(unchecked)} if unchecked else {}),
                },
                detail={"unchecked": [u.to_json() for u in unchecked]} if unchecked else {},
            )
        )
        store = checks.record(check_id, [f.to_json() for f in findings], run_ids()["flow_run_id"])
        ledger.append_many(events, also=store)
        return CheckOutcome(check_id, comparison, counts, unchecked)


def check_context() -> LifecycleConfig:
    """The configuration the check runs against."""
    return load_config()
