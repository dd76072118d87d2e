"""Verifying an S3 erasure: a fresh listing compared with the plan.

Remaining, per target: versions the plan said to delete that still exist, plus versions
the plan never saw (written since the plan, under the subject's prefixes). Deferred:
what the plan deferred (expected to remain). Nothing is masked on S3.
"""

from __future__ import annotations

from connectors.base import Action, Findings, Key, StorePlan, Verification


def verify_erasure(plan: StorePlan, after: Findings) -> Verification:
    """Compare a fresh locate with the plan."""
    deferred_keys: dict[str, set[Key]] = {}
    deferred: dict[str, int] = {}
    for step in plan.steps:
        if step.action is Action.DEFER:
            deferred_keys.setdefault(step.target, set()).update(step.keys)
            deferred[step.target] = deferred.get(step.target, 0) + step.count
    remaining: dict[str, int] = {}
    for target in after.targets:
        held = deferred_keys.get(target.target, set())
        remaining[target.target] = sum(1 for k in target.keys if k not in held)
    for step in plan.steps:
        remaining.setdefault(step.target, 0)
    return Verification(store=plan.store, remaining=remaining, deferred=deferred, masked={})
