"""Seed the demo object storage: the S3 store ``files`` of ``config/demo/inventory.yaml``.

Two buckets, deterministic for a given ``seed`` and obviously fictional contents:

- ``demo-ticket-attachments`` (versioned): for each customer, 1-3 attachments under
  ``tickets/{customer_id}/``, each with 2-3 versions; every customer's first attachment also
  has a delete marker on top, so it is hidden from a plain listing but its versions remain
  (what a plain ``delete_object`` leaves behind on a versioned bucket).
- ``demo-legal-archive`` (Object Lock enabled at creation, hence versioned): one
  ``contracts/{customer_id}/contract.pdf`` per customer. The demo subject's contract is under
  COMPLIANCE retention until about a year from now, and the subject also has
  ``contracts/{customer_id}/amendment-1.pdf`` under a legal hold (ON, no retention date):
  an erasure must defer both and say why.

The buckets are set up as the demo policy's transfer and posture check expects
(``demo_posture``): default encryption and the public access block as AWS gives new
buckets, the S3 lifecycle rules the retention policy renders, and a bucket policy that
refuses requests made without TLS. moto alone refuses *every* object call under that last
policy, so on a plain-HTTP ``LocalS3`` it can only come after the objects are written and
erased; a ``LocalS3(tls_dir=...)`` judges it per request as AWS does, so the buckets get it
before anything is written (what ``lifecycle demo`` and ``lifecycle server start`` do).

Re-seeding: every version and delete marker that S3 lets us delete is removed and seeded
again, so a second run ends with the same keys and counts. Locked versions (COMPLIANCE
retention, legal hold) cannot be deleted, on AWS or moto, so they are kept and *not* put
again (a new put would add a version). A demo run that needs a truly empty archive (e.g. to
change the subject) uses a fresh server: ``demo.s3_server.LocalS3`` resets moto on start.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

    from connectors.s3.lifecycle import Rule

TICKETS_BUCKET = "demo-ticket-attachments"
ARCHIVE_BUCKET = "demo-legal-archive"
DEMO_BUCKETS = {TICKETS_BUCKET: False, ARCHIVE_BUCKET: True}
"""The demo inventory's buckets (store ``files``) -> Object Lock enabled at creation."""
DEFAULT_REGION = "eu-central-1"
DELETE_CHUNK = 1000  # AWS refuses DeleteObjects with more keys (moto does not: cap it here)
RETENTION_DAYS = 365
PUT_WORKERS = 8  # bounded: moto's server is one process; more threads only queue

_ATTACHMENT_NAMES = ("screenshot.txt", "invoice-question.txt", "delivery-note.txt")


@dataclass(frozen=True)
class BucketCounts:
    """What one bucket holds after seeding (from ``list_object_versions``, not from intent)."""

    objects: int  # distinct keys, including keys whose latest version is a delete marker
    versions: int  # object versions (delete markers not included)
    delete_markers: int


@dataclass(frozen=True)
class S3DemoData:
    """What ``seed_s3`` created: counts per bucket and the demo subject's keys."""

    buckets: Mapping[str, BucketCounts]
    subject_customer_id: int
    subject_keys: Mapping[str, tuple[str, ...]]  # bucket -> the subject's object keys
    retained_key: str  # in the archive: COMPLIANCE retention
    held_key: str  # in the archive: legal hold ON
    retain_until: datetime = field(compare=False)  # the retention date that was requested

    @property
    def total_versions(self) -> int:
        return sum(c.versions for c in self.buckets.values())


@dataclass(frozen=True)
class _Put:
    """One object's versions to write, in order; the last entry ``None`` is a delete marker."""

    bucket: str
    key: str
    bodies: tuple[bytes | None, ...]
    lock_mode: str | None = None
    legal_hold: bool = False


def seed_s3(
    client: S3Client,
    *,
    customer_ids: Sequence[int],
    subject_customer_id: int,
    seed: int = 7,
    region: str = DEFAULT_REGION,
) -> S3DemoData:
    """Create (or empty and refill) the demo buckets; see the module docstring for details."""
    if subject_customer_id not in customer_ids:
        raise ValueError("subject_customer_id must be one of customer_ids")
    rng = random.Random(seed)
    retain_until = (datetime.now(UTC) + timedelta(days=RETENTION_DAYS)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    for bucket, object_lock in DEMO_BUCKETS.items():
        ensure_bucket(client, bucket, region, object_lock=object_lock)
    _empty(client, TICKETS_BUCKET)
    kept = _empty(client, ARCHIVE_BUCKET)  # locked versions stay; their keys are not re-put

    puts = [*_ticket_puts(rng, customer_ids), *_archive_puts(customer_ids, subject_customer_id)]
    puts = [p for p in puts if not (p.bucket == ARCHIVE_BUCKET and p.key in kept)]
    with ThreadPoolExecutor(max_workers=PUT_WORKERS) as pool:
        # Versions of one key are written in order by one worker; keys run concurrently.
        for _ in pool.map(lambda p: _write(client, p, retain_until), puts):
            pass

    subject_prefix = {
        TICKETS_BUCKET: f"tickets/{subject_customer_id}/",
        ARCHIVE_BUCKET: f"contracts/{subject_customer_id}/",
    }
    return S3DemoData(
        buckets={b: _count(client, b) for b in (TICKETS_BUCKET, ARCHIVE_BUCKET)},
        subject_customer_id=subject_customer_id,
        subject_keys={b: _keys(client, b, prefix) for b, prefix in subject_prefix.items()},
        retained_key=_contract_key(subject_customer_id),
        held_key=_amendment_key(subject_customer_id),
        retain_until=retain_until,
    )


def _contract_key(customer_id: int) -> str:
    return f"contracts/{customer_id}/contract.pdf"


def _amendment_key(customer_id: int) -> str:
    return f"contracts/{customer_id}/amendment-1.pdf"


def _ticket_puts(rng: random.Random, customer_ids: Iterable[int]) -> list[_Put]:
    """1-3 attachments per customer, 2-3 versions each; the first one ends in a delete marker."""
    puts: list[_Put] = []
    for cid in customer_ids:
        for n in range(rng.randint(1, 3)):
            key = f"tickets/{cid}/ticket-{n + 1}/{_ATTACHMENT_NAMES[n]}"
            bodies: list[bytes | None] = [
                (
                    f"Fictional attachment {n + 1} of demo customer {cid}, revision {v + 1}.\n"
                    "Demo data only: no real person, order or address.\n"
                ).encode()
                for v in range(rng.randint(2, 3))
            ]
            if n == 0:
                bodies.append(None)
            puts.append(_Put(TICKETS_BUCKET, key, tuple(bodies)))
    return puts


def _archive_puts(customer_ids: Iterable[int], subject_id: int) -> list[_Put]:
    """One contract per customer; the subject's is retained, and an amendment is on hold."""
    puts: list[_Put] = []
    for cid in customer_ids:
        body = f"%PDF-1.4\n% Fictional demo contract of customer {cid} (example.com)\n".encode()
        mode = "COMPLIANCE" if cid == subject_id else None
        puts.append(_Put(ARCHIVE_BUCKET, _contract_key(cid), (body,), lock_mode=mode))
    amendment = f"%PDF-1.4\n% Fictional amendment to the contract of customer {subject_id}\n"
    puts.append(
        _Put(ARCHIVE_BUCKET, _amendment_key(subject_id), (amendment.encode(),), legal_hold=True)
    )
    return puts


def _write(client: S3Client, put: _Put, retain_until: datetime) -> None:
    for body in put.bodies:
        if body is None:
            client.delete_object(Bucket=put.bucket, Key=put.key)  # adds a delete marker
        elif put.lock_mode == "COMPLIANCE":
            client.put_object(
                Bucket=put.bucket,
                Key=put.key,
                Body=body,
                ContentType="application/pdf",
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=retain_until,
            )
        elif put.legal_hold:
            client.put_object(
                Bucket=put.bucket,
                Key=put.key,
                Body=body,
                ContentType="application/pdf",
                ObjectLockLegalHoldStatus="ON",
            )
        else:
            content_type = "application/pdf" if put.key.endswith(".pdf") else "text/plain"
            client.put_object(Bucket=put.bucket, Key=put.key, Body=body, ContentType=content_type)


def ensure_bucket(client: S3Client, bucket: str, region: str, *, object_lock: bool) -> None:
    """Create ``bucket`` in ``region`` unless it exists; versioning on (Object Lock implies it)."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
        if region == "us-east-1":  # AWS refuses a LocationConstraint of us-east-1
            client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=object_lock)
        else:
            client.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
                ObjectLockEnabledForBucket=object_lock,
            )
    if not object_lock:
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    # As AWS sets up new buckets (SSE-S3 and the public access block by default); moto does not.
    client.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    client.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )


def tls_only_policy(bucket: str) -> str:
    """A bucket policy refusing every request to ``bucket`` made without TLS (as JSON)."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    return json.dumps(policy)


def enforce_tls(client: S3Client, bucket: str) -> None:
    """Put ``tls_only_policy``: see the module docstring for when moto allows it."""
    client.put_bucket_policy(Bucket=bucket, Policy=tls_only_policy(bucket))


def demo_posture(
    client: S3Client, lifecycle: Mapping[str, Sequence[Rule]], *, tls_only: bool = True
) -> None:
    """Give the demo buckets what the demo's transfer and posture check expects.

    ``ensure_bucket`` already set default encryption and the public access block; this puts
    each bucket's S3 lifecycle rules (``lifecycle``: bucket -> the rules the retention policy
    renders, ``connectors.s3.lifecycle.desired_rules``; a bucket without an entry gets none)
    and, with ``tls_only``, the TLS-only bucket policy. Repeatable: rules are replaced.
    """
    from connectors.s3.lifecycle import apply, current_rules

    for bucket in DEMO_BUCKETS:
        apply(client, bucket, lifecycle.get(bucket, []), current_rules(client, bucket))
        if tls_only:
            enforce_tls(client, bucket)


def _versions(client: S3Client, bucket: str, prefix: str = "") -> list[ObjectIdentifierTypeDef]:
    """Every object version and delete marker under ``prefix``, as DeleteObjects identifiers."""
    found: list[ObjectIdentifierTypeDef] = []
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            found.append({"Key": entry["Key"], "VersionId": entry["VersionId"]})
    return found


def _empty(client: S3Client, bucket: str) -> set[str]:
    """Delete every version and delete marker S3 allows; the keys of locked ones that stayed."""
    kept: set[str] = set()
    versions = _versions(client, bucket)
    for start in range(0, len(versions), DELETE_CHUNK):
        chunk = versions[start : start + DELETE_CHUNK]
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
        for error in response.get("Errors", []):
            if error.get("Code") != "AccessDenied":  # AccessDenied: Object Lock protects it
                raise RuntimeError(f"could not empty {bucket}: {error.get('Code')}")
            kept.add(error["Key"])
    return kept


def _count(client: S3Client, bucket: str) -> BucketCounts:
    keys: set[str] = set()
    versions = markers = 0
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []):
            keys.add(v["Key"])
            versions += 1
        for m in page.get("DeleteMarkers", []):
            keys.add(m["Key"])
            markers += 1
    return BucketCounts(objects=len(keys), versions=versions, delete_markers=markers)


def _keys(client: S3Client, bucket: str, prefix: str) -> tuple[str, ...]:
    """Distinct keys under ``prefix`` that have versions or delete markers, sorted."""
    return tuple(sorted({v["Key"] for v in _versions(client, bucket, prefix)}))
