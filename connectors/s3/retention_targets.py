"""An S3 store's retention sweep targets: the objects of a bucket under a prefix (delete).

The ``sweep_targets`` hook of the S3 type (``connectors.catalog``), a
``retention.targets.SweepTargets``: ``retention.targets`` assembles every store's targets
through it, ``retention.explain`` parses and words ``store/bucket[/key]`` with it. Pure
data: no bucket is touched.

Resolution, per bucket: bucket rules (optionally under a prefix) and category rules on a
category the bucket is tagged with delete objects (every version) by ``LastModified``.
With nested prefixes the narrower prefix takes the wider rule's conditions too, and the
wider target leaves the narrower prefix to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from config.schema.policy import HoldScope, RetentionRule
from config.schema.stores import StoreConfig
from connectors.s3.config import S3Store
from core.errors import NotFoundError
from retention.targets import Clock, Reach, Subject, SweepTarget, expiry_condition


def _s3(store: StoreConfig) -> S3Store:
    if not isinstance(store, S3Store):
        raise TypeError(f"store '{store.name}' is not an S3 store")
    return store


def _covers(outer: str | None, inner: str | None) -> bool:
    """Whether prefix ``outer`` (None: the whole bucket) contains prefix ``inner``."""
    return outer is None or (inner is not None and inner.startswith(outer))


class S3SweepTargets:
    """The ``retention.targets.SweepTargets`` of S3 stores: bucket prefixes."""

    noun = "an S3 store"
    syntax = ("store/bucket/key",)
    deletes = "objects (every version) are deleted"

    def resolve(
        self, store: StoreConfig, rules: Sequence[RetentionRule], now: datetime
    ) -> list[SweepTarget]:
        s3 = _s3(store)
        out: list[SweepTarget] = []
        clock = Clock(None)
        for bucket in s3.buckets:
            scoped: list[tuple[str | None, RetentionRule]] = []
            for rule in rules:
                if (
                    rule.target_kind == "bucket"
                    and rule.store == s3.name
                    and rule.bucket == bucket.name
                ):
                    scoped.append((rule.prefix, rule))
                elif rule.target_kind == "category" and rule.category in bucket.categories:
                    scoped.append((None, rule))
            prefixes = sorted({p for p, _ in scoped}, key=lambda p: (p is not None, p or ""))
            for prefix in prefixes:
                conds = tuple(
                    expiry_condition(r, clock, now) for p, r in scoped if _covers(p, prefix)
                )
                narrower = tuple(
                    p for p in prefixes if p is not None and p != prefix and _covers(prefix, p)
                )
                path = f"{s3.name}/{bucket.name}/{prefix or ''}"
                out.append(
                    SweepTarget(
                        id=path,
                        kind=s3.type,
                        store=s3.name,
                        label=path,
                        action="delete",
                        conditions=conds,
                        bucket=bucket.name,
                        prefix=prefix,
                        exclude_prefixes=narrower,
                        keys_personal=bucket.keys_contain_personal_data,
                    )
                )
        return out

    def hold_reach(self, scope: HoldScope, target: SweepTarget) -> Reach:
        if scope.table is not None or (scope.bucket is not None and scope.bucket != target.bucket):
            return "none"
        if scope.prefix is not None and not _covers(scope.prefix, target.prefix):
            inside = target.prefix is None or scope.prefix.startswith(target.prefix)
            return "part" if inside else "none"
        return "part" if scope.subject is not None or scope.tag is not None else "whole"

    def store_of(self, text: str) -> str | None:
        return text.partition("/")[0] if "/" in text else None

    def subject(self, store: StoreConfig, text: str) -> Subject:
        s3 = _s3(store)
        store_name, _, rest = text.partition("/")
        bucket, _, key = rest.partition("/")
        if bucket not in {b.name for b in s3.buckets}:
            known = ", ".join(b.name for b in s3.buckets)
            raise NotFoundError(f"no bucket '{bucket}' in store '{store_name}' (known: {known})")
        return Subject(store_name, s3.type, bucket=bucket, key=key or None)

    def covers(self, target: SweepTarget, subject: Subject) -> bool:
        if target.bucket != subject.bucket:
            return False
        key = subject.key
        if key is None:
            return True
        inside = target.prefix is None or key.startswith(target.prefix)
        return inside and not any(key.startswith(p) for p in target.exclude_prefixes)
