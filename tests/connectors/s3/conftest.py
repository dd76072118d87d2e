"""Shared fixtures for the S3 connector tests: moto in-process (``mock_aws``).

``s3`` is a client inside a fresh moto account per test; ``make_store`` and
``make_policy`` build the inventory and policy models; ``seed`` writes versions;
``listing`` snapshots every version and delete marker of a bucket, so tests compare
"before minus the subject" with "after". Identities and addresses use example.com.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import boto3
import pytest
from moto import mock_aws

from config.schema import Policy
from connectors.base import BatchResult, Key
from connectors.s3.config import S3Store
from connectors.s3.connector import S3Connector
from core.keys import KeyRing

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION: Final = "eu-central-1"
KEYS = KeyRing.from_master(b"s" * 32)
SUBJECT = {"customer_id": frozenset({"1"}), "email": frozenset({"alice@example.com"})}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Client]:
    """A client of a fresh in-process moto S3 (no network, fake credentials)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client: S3Client = boto3.client("s3", region_name=REGION)
        yield client


def create_bucket(
    s3: S3Client,
    name: str,
    *,
    versioning: Literal["Enabled", "Suspended"] | None = "Enabled",
    lock: bool = False,
) -> None:
    """A bucket in REGION; versioning ``Enabled``, ``Suspended`` or None (never enabled)."""
    s3.create_bucket(
        Bucket=name,
        CreateBucketConfiguration={"LocationConstraint": REGION},
        ObjectLockEnabledForBucket=lock,
    )
    if versioning is not None and not lock:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning})


def seed(s3: S3Client, bucket: str, keys: Sequence[str], versions: int = 1, **extra: Any) -> None:
    """``versions`` puts of each key (small bodies)."""
    for key in keys:
        for n in range(versions):
            s3.put_object(Bucket=bucket, Key=key, Body=f"v{n} of {key}".encode(), **extra)


def ignore(_batch: BatchResult) -> None:
    """An ``on_batch`` that records nothing."""


def listing(s3: S3Client, bucket: str) -> set[Key]:
    """Every (key, version id, is delete marker) in the bucket."""
    out: set[Key] = set()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        out |= {(v["Key"], v["VersionId"], False) for v in page.get("Versions", [])}
        out |= {(m["Key"], m["VersionId"], True) for m in page.get("DeleteMarkers", [])}
    return out


def under(keys: set[Key], prefix: str) -> set[Key]:
    return {k for k in keys if str(k[0]).startswith(prefix)}


def make_store(*buckets: dict[str, Any]) -> S3Store:
    """An S3 store with the given bucket entries (defaults: support category)."""
    return S3Store.model_validate(
        {
            "type": "s3",
            "name": "files",
            "region": REGION,
            "buckets": [{"categories": ["support"], **b} for b in buckets],
        }
    )


def make_policy(holds: Sequence[dict[str, Any]] = ()) -> Policy:
    return Policy.model_validate(
        {
            "categories": [{"name": "support"}, {"name": "contract"}],
            "requests": {},
            "legal_holds": list(holds),
        }
    )


ConnectorFactory = Callable[..., S3Connector]


@pytest.fixture
def connector(s3: S3Client) -> ConnectorFactory:
    """Build a connector on the moto client (no retry delays)."""

    def build(store: S3Store, policy: Policy | None = None, **kw: Any) -> S3Connector:
        kw.setdefault("retry_base_delay", 0.0)
        kw.setdefault("client", s3)
        return S3Connector(store, policy or make_policy(), keys=KEYS, **kw)

    return build
