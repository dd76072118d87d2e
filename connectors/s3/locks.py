"""Object Lock and legal holds: which versions an erasure must leave in place.

Lock fields are read from ``HeadObject(VersionId=...)`` (``ObjectLockMode``,
``ObjectLockRetainUntilDate``, ``ObjectLockLegalHoldStatus``): one request instead of two
(``GetObjectRetention`` plus ``GetObjectLegalHold``), and moto answers the former with a
500. Only buckets with Object Lock enabled are asked, so other buckets cost no HEAD per
version. Policy legal holds (``policy.legal_holds``) with bucket, prefix, tag or subject
scopes are matched per version; tags are fetched only when an active hold has a tag scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from config.schema.policy import LegalHold
from connectors.s3.client import error_code
from core.pseudonym import Pseudonym

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_GONE = frozenset({"404", "405", "NoSuchKey", "NoSuchVersion", "MethodNotAllowed"})


@dataclass(frozen=True)
class LockState:
    """The Object Lock fields of one version."""

    mode: str | None
    retain_until: datetime | None
    legal_hold: bool


@dataclass(frozen=True)
class Deferral:
    """Why a version stays, and until when (ISO date), if known."""

    reason: str
    until: str | None


def lock_enabled(client: S3Client, bucket: str) -> bool:
    """Whether the bucket has Object Lock enabled (else no version can be locked)."""
    try:
        config = client.get_object_lock_configuration(Bucket=bucket)
    except ClientError as e:
        if error_code(e) == "ObjectLockConfigurationNotFoundError":
            return False
        raise
    return config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"


def lock_state(client: S3Client, bucket: str, key: str, version_id: str) -> LockState | None:
    """The lock fields of one version; None if the version is already gone."""
    try:
        head = client.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as e:
        if error_code(e) in _GONE:
            return None
        raise
    return LockState(
        mode=head.get("ObjectLockMode"),
        retain_until=head.get("ObjectLockRetainUntilDate"),
        legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
    )


def version_tags(client: S3Client, bucket: str, key: str, version_id: str) -> dict[str, str]:
    """The tags of one version (empty if it is gone)."""
    try:
        tags = client.get_object_tagging(Bucket=bucket, Key=key, VersionId=version_id)["TagSet"]
    except ClientError as e:
        if error_code(e) in _GONE:
            return {}
        raise
    return {t["Key"]: t["Value"] for t in tags}


def in_force(until: datetime, today: date) -> bool:
    """A retention is in force if it ends after now or on/after the plan's day.

    Both are checked so a plan made for ``today`` never schedules a deletion that S3
    would refuse at the moment it is made (conservative by at most a day).
    """
    return until > datetime.now(UTC) or until.date() >= today


def lock_deferral(state: LockState, today: date, may_bypass: bool) -> Deferral | None:
    """The deferral an Object Lock imposes on a version, if any.

    COMPLIANCE retention and object legal holds cannot be lifted by anyone; GOVERNANCE
    retention can, with ``s3:BypassGovernanceRetention``, which we use only when the
    bucket's policy says so (``allow_governance_bypass``).
    """
    if state.legal_hold:
        return Deferral("object legal hold (Object Lock)", None)
    if state.mode is None or state.retain_until is None:
        return None
    until = state.retain_until.astimezone(UTC)
    if not in_force(until, today):
        return None
    if state.mode == "COMPLIANCE":
        return Deferral("Object Lock COMPLIANCE retention", until.date().isoformat())
    if state.mode == "GOVERNANCE" and not may_bypass:
        return Deferral(
            "Object Lock GOVERNANCE retention (bucket has no allow_governance_bypass)",
            until.date().isoformat(),
        )
    return None


def applicable_holds(
    holds: Sequence[LegalHold],
    store: str,
    buckets: Sequence[str],
    today: date,
    subject: Pseudonym | None,
) -> list[LegalHold]:
    """Active holds whose store/bucket/subject conditions fit this bucket (or its source)."""
    found = []
    for hold in holds:
        scope = hold.scope
        if not hold.active_on(today) or scope.table is not None:
            continue  # table scopes are SQL holds
        if scope.store is not None and scope.store != store:
            continue
        if scope.bucket is not None and scope.bucket not in buckets:
            continue
        if scope.subject is not None and (subject is None or scope.subject != subject):
            continue
        found.append(hold)
    return found


def hold_deferral(
    holds: Sequence[LegalHold], key: str, tags: dict[str, str] | None
) -> Deferral | None:
    """The policy hold covering one version (prefix and tag conditions), longest first."""
    matching = [
        h
        for h in holds
        if (h.scope.prefix is None or key.startswith(h.scope.prefix))
        and (
            h.scope.tag is None
            or (tags is not None and all(tags.get(k) == v for k, v in h.scope.tag.items()))
        )
    ]
    if not matching:
        return None
    hold = min(
        matching, key=lambda h: (h.ends is not None, -(h.ends or date.min).toordinal(), h.id)
    )
    until = hold.ends.isoformat() if hold.ends is not None else None
    return Deferral(f"legal hold {hold.id}: {hold.reason}", until)
