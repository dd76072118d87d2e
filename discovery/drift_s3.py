"""Drift of an S3 store: its buckets' top-level prefixes, and the account's other buckets.

For each declared bucket, the top-level prefixes (``ListObjectsV2`` with ``Delimiter="/"``;
objects at the top level count as the prefix ``""``) are compared with the static start of
its key templates (``tickets/`` of ``tickets/{customer_id}/``); a prefix no template covers
is undeclared. With ``account_wide`` the account's buckets that no S3 store declares (as a
bucket or a replica) are undeclared too. Undeclared prefixes and buckets have a bounded
sample of their keys read, split into path segments (one list per depth, a file
extension dropped) and classified (``discovery.detectors``): keys named after people make
the finding high. Keys never leave ``_key_detection``; a top-level prefix whose own name
looks personal is counted, never named.

``s3_findings`` is pure (listings in, findings out); ``read_drift`` reads the listings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from audit.guard import looks_like_email, looks_like_phone
from config.schema.model import LifecycleConfig
from config.schema.stores import StoreConfig
from connectors.s3.client import error_code, make_client, s3_errors
from connectors.s3.config import Bucket, S3Ignore, S3Store
from discovery.detectors import Detection, classify
from discovery.drift import DriftFinding, StoreDrift, finding, without_ignored

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MAX_PREFIX_PAGES = 10
"""Top-level listing pages read per bucket (1,000 prefixes each): a bound, not a scan."""
KEY_SAMPLE_CAP = 1000
"""Keys sampled per undeclared prefix or bucket at most (one ListObjectsV2 page)."""
_EXTENSION = re.compile(
    r"\.(?:csv|tsv|json|jsonl|xml|txt|pdf|png|jpe?g|gif|zip|gz|tar|parquet|avro|docx?|xlsx?|eml|msg)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class KeySample:
    """What a bounded sample of keys looked like: how many keys, and a detection if the
    segments at some depth look personal; ``unreadable``: the error code S3 answered."""

    keys: int
    detection: Detection | None = None
    unreadable: str | None = None


@dataclass(frozen=True)
class BucketListing:
    """A declared bucket as listed: absent, or its top-level prefixes and their samples."""

    name: str
    exists: bool
    prefixes: tuple[str, ...] = ()
    samples: Mapping[str, KeySample] = field(default_factory=dict)
    """Undeclared prefix -> its key sample (prefixes named after people are left out)."""
    personal_names: int = 0
    """Undeclared top-level prefixes whose own name looks personal (never named)."""
    truncated: bool = False


def static_prefix(template: str) -> str:
    """The part of a key template before its first placeholder, cut after the last ``/``."""
    head = template.split("{", 1)[0]
    return head[: head.rfind("/") + 1]


def heads(bucket: Bucket) -> tuple[str, ...]:
    """The static starts of a bucket's key templates; a bucket without templates (its
    objects found by tag) is declared whole."""
    return tuple(static_prefix(t) for t in bucket.key_templates) or ("",)


def covered(prefix: str, heads: Iterable[str]) -> bool:
    """Whether a template with one of these static starts can produce keys under ``prefix``
    (a top-level prefix such as ``tickets/``; ``""`` for the top-level objects). A template
    starting with a placeholder covers the whole bucket."""
    return any(head == "" or (prefix and head.startswith(prefix)) for head in heads)


def segments_by_depth(keys: Iterable[str], prefix: str) -> dict[int, list[str]]:
    """The path segments of ``keys`` below ``prefix``, one list per depth, extensions cut."""
    out: dict[int, list[str]] = {}
    for key in keys:
        rest = key[len(prefix) :] if key.startswith(prefix) else key
        parts = [p for p in rest.split("/") if p]
        for depth, part in enumerate(parts):
            out.setdefault(depth, []).append(_EXTENSION.sub("", part))
    return out


def classify_keys(keys: list[str], prefix: str) -> Detection | None:
    """The first depth whose segments look personal, classified as a column named ``key``."""
    for _depth, values in sorted(segments_by_depth(keys, prefix).items()):
        detection = classify("key", values)
        if detection is not None:
            return detection
    return None


def _name_looks_personal(prefix: str) -> bool:
    name = prefix.rstrip("/")
    return bool(name) and (
        looks_like_email(name) or looks_like_phone(name) or classify("key", [name]) is not None
    )


def ignores(entries: tuple[S3Ignore, ...], bucket: str, prefix: str | None) -> bool:
    """Whether an entry names ``bucket`` (all of it), ``prefix`` in it, or ``prefix`` in any
    bucket; a prefix entry covers the prefixes that start with it."""
    for entry in entries:
        if entry.bucket is not None and entry.bucket != bucket:
            continue
        if entry.prefix is None or (prefix is not None and prefix.startswith(entry.prefix)):
            return True
    return False


def _sample_evidence(what: str, sample: KeySample) -> tuple[str, str, tuple[str, ...]]:
    """(evidence, rule suffix, categories) for an undeclared prefix or bucket."""
    if sample.unreadable is not None:
        return f"{what}; its keys could not be listed ({sample.unreadable})", "", ()
    if sample.detection is not None:
        d = sample.detection
        evidence = f"{what}; {sample.keys} keys sampled, their names look like {d.kind}: "
        return evidence + d.evidence, "personal-", (d.category,)
    return f"{what}; {sample.keys} keys sampled, their names do not look personal", "", ()


def s3_findings(
    store: S3Store,
    listings: Iterable[BucketListing],
    undeclared: Mapping[str, KeySample],
    account_ignore: tuple[S3Ignore, ...] = (),
) -> tuple[list[DriftFinding], int]:
    """The store's findings from its buckets' listings and the account's undeclared buckets
    (empty unless listed), without those its ``ignore:`` names (for undeclared buckets, also
    those of ``account_ignore``: every S3 store's entries), and how many it dropped."""
    about: list[tuple[DriftFinding, tuple[str, str | None]]] = []
    name = store.name
    for listing in listings:
        uri = f"s3://{listing.name}"
        if not listing.exists:
            evidence = "declared in inventory.yaml, not found"
            about.append((finding("s3.bucket-vanished", name, uri, evidence), (listing.name, None)))
            continue
        for prefix, sample in sorted(listing.samples.items()):
            where = "top-level objects" if not prefix else f"prefix '{prefix}'"
            evidence, personal, categories = _sample_evidence(
                f"{where} outside every key template of the bucket", sample
            )
            f = finding(
                f"s3.undeclared-{personal}prefix", name, f"{uri}/{prefix}", evidence, categories
            )
            about.append((f, (listing.name, prefix)))
        if listing.personal_names:
            evidence = (
                f"{listing.personal_names} top-level prefixes outside every key template are "
                "named like personal data (names not recorded)"
            )
            f = finding("s3.personal-prefix-names", name, f"{uri}/*", evidence)
            about.append((f, (listing.name, None)))
    for bucket, sample in sorted(undeclared.items()):
        evidence, personal, categories = _sample_evidence("no S3 store declares it", sample)
        f = finding(f"s3.undeclared-{personal}bucket", name, f"s3://{bucket}", evidence, categories)
        about.append((f, (bucket, None)))
    entries = store.ignore + account_ignore
    declared = {x.name for x in listings}
    return without_ignored(
        about,
        lambda bucket, prefix: ignores(
            store.ignore if bucket in declared else entries, bucket, prefix
        ),
    )


# -- reading -----------------------------------------------------------------------------


def _key_sample(
    s3: S3Client, bucket: str, prefix: str, rows: int, *, top_only: bool = False
) -> KeySample:
    """A bounded sample of the keys under ``prefix`` (``top_only``: without a ``/`` in
    them); the keys never leave this function."""
    limit = max(1, min(rows, KEY_SAMPLE_CAP))
    try:
        answer = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=limit)
    except ClientError as e:
        return KeySample(0, unreadable=error_code(e))
    keys = [o["Key"] for o in answer.get("Contents", [])]
    if top_only:  # the top-level objects: the prefixes are sampled on their own
        keys = [k for k in keys if "/" not in k]
    detection = classify_keys(keys, prefix) if rows > 0 else None
    return KeySample(len(keys), detection)


def list_bucket(
    s3: S3Client, store: S3Store, bucket: str, heads: tuple[str, ...], rows: int
) -> BucketListing:
    """A declared bucket's top-level prefixes; undeclared ones sampled."""
    prefixes: list[str] = []
    truncated = False
    with s3_errors(store.name, "ListObjectsV2", bucket):
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Delimiter="/")
            for n, page in enumerate(pages):
                if n == MAX_PREFIX_PAGES:
                    truncated = True
                    break
                prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
                if page.get("Contents") and "" not in prefixes:
                    prefixes.append("")
        except ClientError as e:
            if error_code(e) == "NoSuchBucket":
                return BucketListing(bucket, exists=False)
            raise
        samples: dict[str, KeySample] = {}
        personal_names = 0
        for prefix in prefixes:
            if covered(prefix, heads):
                continue
            if _name_looks_personal(prefix):
                personal_names += 1
                continue
            samples[prefix] = _key_sample(s3, bucket, prefix, rows, top_only=not prefix)
    return BucketListing(bucket, True, tuple(prefixes), samples, personal_names, truncated)


def _s3_stores(config: LifecycleConfig) -> list[S3Store]:
    return [s for s in config.inventory.stores if isinstance(s, S3Store)]


def declared_bucket_names(config: LifecycleConfig) -> frozenset[str]:
    """Every bucket the S3 stores of ``config`` declare, as buckets or replicas."""
    names: set[str] = set()
    for other in _s3_stores(config):
        names |= {b.name for b in other.buckets}
        names |= {r.bucket for b in other.buckets for r in b.replicas}
    return frozenset(names)


def read_drift(
    config: LifecycleConfig, store: StoreConfig, *, account_wide: bool, sample_rows: int
) -> StoreDrift:
    """List ``store``'s buckets (and, with ``account_wide``, the account's), sample what no
    key template covers, and compare."""
    if not isinstance(store, S3Store):
        raise TypeError(f"store '{store.name}' is not an S3 store")
    s3 = make_client(store, 1)
    try:
        listings = [list_bucket(s3, store, b.name, heads(b), sample_rows) for b in store.buckets]
        undeclared: dict[str, KeySample] = {}
        if account_wide:
            known = declared_bucket_names(config)
            with s3_errors(store.name, "ListBuckets"):
                pages = s3.get_paginator("list_buckets").paginate()
                listed = sorted({b["Name"] for page in pages for b in page.get("Buckets", [])})
            for bucket in listed:
                if bucket not in known:
                    undeclared[bucket] = _key_sample(s3, bucket, "", sample_rows)
    finally:
        s3.close()
    account_ignore = tuple(e for other in _s3_stores(config) for e in other.ignore)
    findings, ignored = s3_findings(store, listings, undeclared, account_ignore)
    counts = {
        "buckets": len(listings) + len(undeclared),
        "prefixes": sum(len(x.prefixes) for x in listings),
    }
    return StoreDrift(store.name, tuple(findings), counts, ignored)
