"""The demo S3 seed, checked over HTTP against a local moto server.

Modelled AWS behaviour: a versioned bucket keeps every version and a delete marker hides
them from a plain listing only; Object Lock (COMPLIANCE retention, legal hold) makes a
version undeletable, and ``head_object`` reports the lock (moto 5.2.5 answers
``get_object_retention`` with HTTP 500, so the lock is read from ``head_object``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from demo.s3_server import LocalS3
from demo.seed_s3 import ARCHIVE_BUCKET, TICKETS_BUCKET, S3DemoData, seed_s3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CUSTOMERS = list(range(1, 25))
SUBJECT = 7


@dataclass(frozen=True)
class S3Fixture:
    s3: LocalS3
    client: S3Client
    data: S3DemoData


@pytest.fixture(scope="module")
def seeded() -> Iterator[S3Fixture]:
    with LocalS3() as s3:
        client = s3.client()
        data = seed_s3(client, customer_ids=CUSTOMERS, subject_customer_id=SUBJECT)
        yield S3Fixture(s3=s3, client=client, data=data)


def _versions(fx: S3Fixture, bucket: str, prefix: str = "") -> tuple[list[str], list[str]]:
    """(keys of object versions, keys of delete markers) under ``prefix``."""
    versions: list[str] = []
    markers: list[str] = []
    for page in fx.client.get_paginator("list_object_versions").paginate(
        Bucket=bucket, Prefix=prefix
    ):
        versions += [v["Key"] for v in page.get("Versions", [])]
        markers += [m["Key"] for m in page.get("DeleteMarkers", [])]
    return versions, markers


def test_ticket_bucket_is_versioned_with_several_versions_and_delete_markers(
    seeded: S3Fixture,
) -> None:
    client, data = seeded.client, seeded.data
    assert client.get_bucket_versioning(Bucket=TICKETS_BUCKET)["Status"] == "Enabled"
    versions, markers = _versions(seeded, TICKETS_BUCKET)
    counts = data.buckets[TICKETS_BUCKET]
    assert (counts.versions, counts.delete_markers) == (len(versions), len(markers))
    assert counts.objects == len(set(versions))
    for cid in CUSTOMERS:
        keys = {k for k in versions if k.startswith(f"tickets/{cid}/")}
        assert 1 <= len(keys) <= 3  # 1-3 attachments per customer
        assert all(versions.count(k) >= 2 for k in keys)  # several versions each
        assert sum(m.startswith(f"tickets/{cid}/") for m in markers) == 1


def test_a_delete_marker_hides_the_key_but_its_versions_remain(seeded: S3Fixture) -> None:
    client = seeded.client
    subject_keys = seeded.data.subject_keys[TICKETS_BUCKET]
    versions, markers = _versions(seeded, TICKETS_BUCKET, f"tickets/{SUBJECT}/")
    assert set(subject_keys) == set(versions)
    (hidden,) = markers
    with pytest.raises(ClientError) as err:
        client.head_object(Bucket=TICKETS_BUCKET, Key=hidden)
    assert err.value.response["Error"]["Code"] == "404"
    listed = client.list_objects_v2(Bucket=TICKETS_BUCKET, Prefix=f"tickets/{SUBJECT}/")
    assert hidden not in {o["Key"] for o in listed.get("Contents", [])}
    assert versions.count(hidden) >= 2


def test_archive_has_object_lock_retention_and_legal_hold(seeded: S3Fixture) -> None:
    client, data = seeded.client, seeded.data
    lock = client.get_object_lock_configuration(Bucket=ARCHIVE_BUCKET)
    assert lock["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    assert data.subject_keys[ARCHIVE_BUCKET] == (data.held_key, data.retained_key)

    retained = client.head_object(Bucket=ARCHIVE_BUCKET, Key=data.retained_key)
    assert retained["ObjectLockMode"] == "COMPLIANCE"
    until = retained["ObjectLockRetainUntilDate"]
    now = datetime.now(UTC)
    assert now + timedelta(days=300) < until < now + timedelta(days=400)  # about a year ahead

    held = client.head_object(Bucket=ARCHIVE_BUCKET, Key=data.held_key)
    assert held["ObjectLockLegalHoldStatus"] == "ON"
    assert "ObjectLockMode" not in held

    other = client.head_object(Bucket=ARCHIVE_BUCKET, Key="contracts/8/contract.pdf")
    assert "ObjectLockMode" not in other
    assert other.get("ObjectLockLegalHoldStatus", "OFF") == "OFF"
    assert data.buckets[ARCHIVE_BUCKET].objects == len(CUSTOMERS) + 1  # + the amendment


def test_locked_versions_cannot_be_deleted(seeded: S3Fixture) -> None:
    client, data = seeded.client, seeded.data
    for key in (data.retained_key, data.held_key):
        version = client.head_object(Bucket=ARCHIVE_BUCKET, Key=key)["VersionId"]
        with pytest.raises(ClientError) as err:
            client.delete_object(Bucket=ARCHIVE_BUCKET, Key=key, VersionId=version)
        assert err.value.response["Error"]["Code"] == "AccessDenied"


def test_contents_are_fictional(seeded: S3Fixture) -> None:
    key = seeded.data.subject_keys[TICKETS_BUCKET][0]
    versions = seeded.client.list_object_versions(Bucket=TICKETS_BUCKET, Prefix=key)
    version_id = versions["Versions"][0]["VersionId"]
    body = seeded.client.get_object(Bucket=TICKETS_BUCKET, Key=key, VersionId=version_id)
    assert b"Fictional" in body["Body"].read()


def test_reseeding_the_same_server_gives_the_same_state(seeded: S3Fixture) -> None:
    """Idempotent: unlocked data is emptied and recreated; locked versions stay as they are."""
    client = seeded.client
    locked_before = {
        key: client.head_object(Bucket=ARCHIVE_BUCKET, Key=key)["VersionId"]
        for key in (seeded.data.retained_key, seeded.data.held_key)
    }
    again = seed_s3(client, customer_ids=CUSTOMERS, subject_customer_id=SUBJECT)
    assert again == seeded.data  # same counts and keys (the retention date is not compared)
    for key, version in locked_before.items():  # kept, not re-put (no extra version)
        assert client.head_object(Bucket=ARCHIVE_BUCKET, Key=key)["VersionId"] == version


def test_same_seed_same_layout_on_a_fresh_server() -> None:
    def layout() -> tuple[S3DemoData, list[str]]:
        with LocalS3() as s3:
            client = s3.client()
            data = seed_s3(client, customer_ids=[1, 2, 3], subject_customer_id=2, seed=11)
            keys = [
                v["Key"] for v in client.list_object_versions(Bucket=TICKETS_BUCKET)["Versions"]
            ]
            return data, sorted(keys)

    assert layout() == layout()


def test_subject_must_be_a_customer() -> None:
    with pytest.raises(ValueError, match="subject_customer_id"):
        seed_s3(None, customer_ids=[1, 2], subject_customer_id=3)  # type: ignore[arg-type]
