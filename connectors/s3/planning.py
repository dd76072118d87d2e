"""Planning an S3 erasure: every version and delete marker goes, unless something holds it.

Per target (a bucket or a replica of one), each found version is decided in order:

1. a policy legal hold covering it (bucket, bucket+prefix, tag, subject scopes; a hold on
   a bucket covers its replicas too) -> DEFER with the hold's reason and end;
2. Object Lock on the version (buckets with Object Lock enabled only): an object legal
   hold or COMPLIANCE retention in force -> DEFER (until the retain-until date);
   GOVERNANCE retention in force -> DELETE with ``BypassGovernanceRetention`` when the
   bucket allows it (a step of its own, reason ``GOVERNANCE_BYPASS``), else DEFER;
3. otherwise DELETE.

Delete markers carry no lock or tags: only prefix/bucket/subject holds defer them.
Planning reads (lock configuration, HEAD per version, tags when a hold needs them) and
never writes. The findings' warnings (undeclared replicas) become the plan's warnings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from config.schema import Bucket
from config.schema.policy import LegalHold
from connectors.base import Action, Findings, Key, StorePlan, TargetFinding, TargetPlan
from connectors.s3.client import s3_errors
from connectors.s3.config import S3Store
from connectors.s3.locate import REPLICA_VIA
from connectors.s3.locks import (
    Deferral,
    applicable_holds,
    hold_deferral,
    lock_deferral,
    lock_enabled,
    lock_state,
    version_tags,
)
from core.pseudonym import Pseudonym

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

GOVERNANCE_BYPASS = "Object Lock GOVERNANCE retention bypassed (allow_governance_bypass)"
"""The reason of DELETE steps that execute with ``BypassGovernanceRetention``."""

_BYPASS = Deferral(GOVERNANCE_BYPASS, None)  # marker decision, not a deferral


def source_bucket(store: S3Store, finding: TargetFinding) -> Bucket:
    """The inventory bucket a target belongs to (a replica's source bucket)."""
    if finding.via.startswith(REPLICA_VIA):
        return store.bucket(finding.via.removeprefix(REPLICA_VIA))
    return store.bucket(finding.target)


def _decide(
    client: S3Client,
    target: str,
    key: Key,
    *,
    holds: Sequence[LegalHold],
    locked_bucket: bool,
    may_bypass: bool,
    today: date,
) -> Deferral | None:
    name, version_id, is_marker = str(key[0]), str(key[1]), bool(key[2])
    tags = None
    if not is_marker and any(h.scope.tag for h in holds):
        tags = version_tags(client, target, name, version_id)
    held = hold_deferral(holds, name, tags)
    if held is not None or is_marker or not locked_bucket:
        return held
    state = lock_state(client, target, name, version_id)
    if state is None:
        return None  # already gone: deleting it again is a no-op
    deferral = lock_deferral(state, today, may_bypass)
    if deferral is None and may_bypass and lock_deferral(state, today, False) is not None:
        return _BYPASS
    return deferral


def plan_target(
    client: S3Client,
    store: S3Store,
    finding: TargetFinding,
    *,
    holds: Sequence[LegalHold],
    today: date,
    subject: Pseudonym | None,
) -> list[TargetPlan]:
    """The steps for one bucket or replica: DELETE, DELETE with bypass, DEFER per reason."""
    if not finding.keys:
        return []
    source = source_bucket(store, finding)
    own = next((b for b in store.buckets if b.name == finding.target), source)
    active = applicable_holds(holds, store.name, (finding.target, source.name), today, subject)
    with s3_errors(store.name, "plan", finding.target):
        has_versions = any(not k[2] for k in finding.keys)
        locked = has_versions and lock_enabled(client, finding.target)
        groups: dict[Deferral | None, list[Key]] = {}
        for key in finding.keys:
            decision = _decide(
                client,
                finding.target,
                key,
                holds=active,
                locked_bucket=locked,
                may_bypass=own.allow_governance_bypass,
                today=today,
            )
            groups.setdefault(decision, []).append(key)
    steps = []
    if None in groups:
        steps.append(TargetPlan(finding.target, Action.DELETE, tuple(groups.pop(None))))
    if _BYPASS in groups:
        keys = tuple(groups.pop(_BYPASS))
        steps.append(TargetPlan(finding.target, Action.DELETE, keys, reason=GOVERNANCE_BYPASS))
    for deferral, keys_ in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        assert deferral is not None
        steps.append(
            TargetPlan(
                finding.target,
                Action.DEFER,
                tuple(keys_),
                reason=deferral.reason,
                until=deferral.until,
            )
        )
    return steps


def plan_erasure(
    client: S3Client,
    store: S3Store,
    findings: Findings,
    *,
    holds: Sequence[LegalHold],
    today: date,
    subject: Pseudonym | None,
) -> StorePlan:
    """The store's erasure plan: per target, what goes now and what waits, and why."""
    steps: list[TargetPlan] = []
    for finding in findings.targets:
        steps.extend(plan_target(client, store, finding, holds=holds, today=today, subject=subject))
    return StorePlan(store=store.name, steps=tuple(steps), warnings=findings.warnings)
