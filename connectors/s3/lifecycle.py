"""S3 lifecycle rules rendered from the retention policy, compared with a bucket's, applied.

Each S3 target S3 can enforce itself (plain prefix, age from LastModified, no legal hold of
any kind) becomes ``lifecycle-<rule id>`` (Expiration Days and NoncurrentVersionExpiration)
and ``lifecycle-<rule id>-markers`` (expired delete markers: AWS refuses
ExpiredObjectDeleteMarker next to Days in one Expiration); the rest stays with the nightly
sweep, with the reason. Rules with other IDs are unmanaged: reported and kept.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from config.durations import Duration, DurationError
from config.schema.policy import LegalHold
from connectors.s3.client import error_code, s3_errors
from retention.targets import Condition, SweepTarget, hold_reach

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MANAGED_PREFIX = "lifecycle-"  # our rule IDs; rules with other IDs are never changed
MARKERS_SUFFIX = "-markers"
COMPARED = ("Prefix", "Status", "ExpirationDays", "ExpiredObjectDeleteMarker", "NoncurrentDays")

Rule = dict[str, Any]  # a lifecycle rule as the S3 API takes and returns it


@dataclass(frozen=True)
class LeftToSweep:
    """An S3 target no lifecycle rule can enforce, and why: the nightly sweep keeps it."""

    target: str
    store: str
    bucket: str
    prefix: str | None
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "prefix": self.prefix, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class DesiredLifecycle:
    """Our rules per bucket (every bucket of an S3 target, ``[]`` when none is enforceable)."""

    rules: dict[str, list[Rule]]
    left_to_sweep: tuple[LeftToSweep, ...]


@dataclass(frozen=True)
class RuleChange:
    """A managed rule present on the bucket whose compared fields differ from the policy."""

    id: str
    fields: dict[str, tuple[Any, Any]]  # field -> (bucket has, policy wants)

    def to_json(self) -> dict[str, Any]:
        return {k: {"before": b, "after": a} for k, (b, a) in self.fields.items()}


@dataclass(frozen=True)
class LifecycleDiff:
    """How a bucket's lifecycle rules differ from the policy (rules as ``normalise`` shows)."""

    bucket: str
    add: tuple[Rule, ...] = ()
    change: tuple[RuleChange, ...] = ()
    remove: tuple[Rule, ...] = ()
    unmanaged: tuple[Rule, ...] = ()
    unchanged: tuple[str, ...] = ()

    @property
    def in_sync(self) -> bool:
        """No managed rule to add, change or remove (unmanaged rules do not count)."""
        return not (self.add or self.change or self.remove)

    def to_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "in_sync": self.in_sync,
            "add": list(self.add),
            "change": [{"id": c.id, "fields": c.to_json()} for c in self.change],
            "remove": list(self.remove),
            "unmanaged": list(self.unmanaged),
            "unchanged": list(self.unchanged),
        }


def is_managed(rule: Mapping[str, Any]) -> bool:
    """Whether a lifecycle rule is one of ours (its ID starts with ``lifecycle-``)."""
    return str(rule.get("ID", "")).startswith(MANAGED_PREFIX)


@lru_cache(maxsize=256)
def _longest_span(duration: Duration) -> int:
    """The most days ``duration`` reaches back from any day of a 400-year Gregorian cycle.

    Within a month the span is constant, then grows once the day is clamped: first and last
    days suffice."""
    spans = []
    for year in range(2400, 2800):
        for month in range(1, 13):
            last = (date(year + month // 12, month % 12 + 1, 1) - date(year, month, 1)).days
            for day in (1, last):
                moment = datetime(year, month, day)
                spans.append((moment - duration.before(moment)).days)
    return max(spans)


def expiration_days(condition: Condition) -> int:
    """S3 Days for a condition: its age's longest calendar length, so S3 is never early.

    ``approx_days`` rounded up falls short for months: ``6m`` averages 182.6 days, but Jul 1
    to Jan 1 is 184. (S3 counts from creation and rounds up to midnight UTC.)"""
    days = math.ceil(condition.approx_days)
    try:
        return max(days, _longest_span(Duration.parse(condition.age)))
    except DurationError:
        return days


def _why_not(target: SweepTarget, upcoming: Sequence[LegalHold]) -> tuple[str, ...]:
    reasons = []  # a lifecycle rule cannot spare held, tagged or excluded objects
    if target.holds:
        reasons.append(f"held by {', '.join(target.holds)}")
    if target.partial_holds:
        ids = ", ".join(h.id for h in target.partial_holds)
        reasons.append(f"partial hold {ids}")
    later = [h for h in upcoming if hold_reach(h, target) != "none"]
    reasons += [f"hold {h.id} from {h.starts.isoformat()}" for h in later]
    if target.exclude_prefixes:
        reasons.append(f"excluded prefixes {', '.join(target.exclude_prefixes)}")
    if target.action != "delete":
        reasons.append(f"action {target.action}")
    if any(c.clock.column is not None for c in target.conditions):
        reasons.append("age not measured from LastModified")
    return tuple(reasons)


def _render(base: str, prefix: str, days: int) -> list[Rule]:
    # Policy rule ids are at most 128 characters, so IDs stay far below AWS's 255.
    expire = {"Expiration": {"Days": days}, "NoncurrentVersionExpiration": {"NoncurrentDays": days}}
    markers = {"Expiration": {"ExpiredObjectDeleteMarker": True}}
    return [
        {"ID": f"{MANAGED_PREFIX}{base}{suffix}", "Filter": {"Prefix": prefix}, "Status": "Enabled"}
        | action
        for suffix, action in (("", expire), (MARKERS_SUFFIX, markers))
    ]


def desired_rules(
    targets: Iterable[SweepTarget], upcoming: Sequence[LegalHold] = ()
) -> DesiredLifecycle:
    """Our rules per bucket for the S3 targets S3 can enforce, and why the rest are not.

    ``upcoming``: holds not started yet (a lifecycle rule outlives today). Days cover every
    condition; IDs come from the governing rule (plus a prefix digest if it governs two
    targets in one bucket)."""
    s3 = [t for t in targets if t.kind == "s3" and t.bucket is not None and t.conditions]
    rules: dict[str, list[Rule]] = {str(t.bucket): [] for t in s3}
    reasons = {t.id: _why_not(t, upcoming) for t in s3}
    enforced = [t for t in s3 if not reasons[t.id]]
    for target in enforced:
        bucket, governing = str(target.bucket), target.governing.rule_id
        shared = sum(1 for t in enforced if t.bucket == bucket and t.governing.rule_id == governing)
        prefix = target.prefix or ""
        base = governing
        if shared > 1:
            base = f"{governing}-{hashlib.sha256(prefix.encode()).hexdigest()[:8]}"
        days = max(expiration_days(c) for c in target.conditions)
        rules[bucket].extend(_render(base, prefix, days))
    left = tuple(
        LeftToSweep(t.id, t.store, str(t.bucket), t.prefix, reasons[t.id])
        for t in s3
        if reasons[t.id]
    )
    for bucket_rules in rules.values():
        bucket_rules.sort(key=lambda r: str(r["ID"]))
    return DesiredLifecycle(rules=rules, left_to_sweep=left)


def current_rules(client: S3Client, bucket: str, *, store: str = "s3") -> list[Rule]:
    """The bucket's lifecycle rules, raw so ``apply`` keeps unmanaged ones as they are."""
    with s3_errors(store, "GetBucketLifecycleConfiguration", bucket):
        try:
            answer = client.get_bucket_lifecycle_configuration(Bucket=bucket)
        except ClientError as e:
            if error_code(e) == "NoSuchLifecycleConfiguration":
                return []
            raise
    return [dict(rule) for rule in answer.get("Rules", [])]


_RENDERED = {"ID", "Status", "Prefix", "Filter", "Filter.Prefix", "Expiration.Days"}
_RENDERED |= {"Expiration.ExpiredObjectDeleteMarker", "NoncurrentVersionExpiration.NoncurrentDays"}


def _paths(rule: Mapping[str, Any]) -> Iterable[str]:
    for key, value in rule.items():
        if isinstance(value, Mapping) and value:
            yield from (f"{key}.{sub}" for sub in value)
        else:
            yield key


def normalise(rule: Mapping[str, Any]) -> Rule:
    """The compared fields of a rule; ``Other`` lists the parts we never render ourselves.

    A legacy ``Prefix`` is read like ``Filter.Prefix``; a missing ExpiredObjectDeleteMarker is
    False (S3 and moto may omit it)."""
    filt = rule.get("Filter")
    prefix = rule.get("Prefix", "") if filt is None else filt.get("And", filt).get("Prefix", "")
    expiration = rule.get("Expiration", {})
    noncurrent = rule.get("NoncurrentVersionExpiration", {})
    other = sorted(p for p in _paths(rule) if p not in _RENDERED)
    return {
        "ID": str(rule.get("ID", "")),
        "Prefix": prefix,
        "Status": rule.get("Status"),
        "ExpirationDays": expiration.get("Days"),
        "ExpiredObjectDeleteMarker": bool(expiration.get("ExpiredObjectDeleteMarker", False)),
        "NoncurrentDays": noncurrent.get("NoncurrentDays"),
        "Other": other,
    }


def diff(desired: Sequence[Rule], current: Sequence[Rule], *, bucket: str = "") -> LifecycleDiff:
    """Managed rules to add, change (field by field) and remove; foreign rules as unmanaged."""
    want = {r["ID"]: r for r in map(normalise, desired)}
    have = [normalise(r) for r in current]
    ours = {r["ID"]: r for r in have if is_managed(r)}
    changes: list[RuleChange] = []
    unchanged: list[str] = []
    for rule_id, wanted in want.items():
        found = ours.get(rule_id)
        if found is None:
            continue
        fields = {k: (found[k], wanted[k]) for k in (*COMPARED, "Other") if found[k] != wanted[k]}
        if fields:
            changes.append(RuleChange(rule_id, fields))
        else:
            unchanged.append(rule_id)
    return LifecycleDiff(
        bucket=bucket,
        add=tuple(r for i, r in want.items() if i not in ours),
        change=tuple(changes),
        remove=tuple(r for i, r in ours.items() if i not in want),
        unmanaged=tuple(r for r in have if not is_managed(r)),
        unchanged=tuple(unchanged),
    )


def drift(
    client: S3Client, bucket: str, desired: Sequence[Rule], *, store: str = "s3"
) -> LifecycleDiff:
    """How ``bucket``'s lifecycle rules drift from ``desired`` (for the posture check too)."""
    return diff(desired, current_rules(client, bucket, store=store), bucket=bucket)


def _kept(rule: Rule) -> Rule:
    # A legacy top-level Prefix means Filter.Prefix; AWS refuses configurations mixing both.
    if "Prefix" in rule and "Filter" not in rule:
        rest = {k: v for k, v in rule.items() if k != "Prefix"}
        return {**rest, "Filter": {"Prefix": rule["Prefix"]}}
    return rule


def apply(
    client: S3Client,
    bucket: str,
    desired: Sequence[Rule],
    current: Sequence[Rule],
    *,
    store: str = "s3",
) -> list[Rule]:
    """Put ``desired`` plus the unmanaged rules of ``current`` (or delete the configuration
    when nothing is left: S3 refuses an empty one); returns the rules put. S3 has no
    conditional put: a rule added on the bucket since ``current`` was read is lost."""
    rules = [*desired, *(_kept(r) for r in current if not is_managed(r))]
    if rules:
        with s3_errors(store, "PutBucketLifecycleConfiguration", bucket):
            client.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration=cast(Any, {"Rules": rules})
            )
    elif current:
        with s3_errors(store, "DeleteBucketLifecycle", bucket):
            client.delete_bucket_lifecycle(Bucket=bucket)
    return rules
