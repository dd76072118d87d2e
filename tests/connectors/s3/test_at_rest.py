"""Encryption at rest of a bucket, from its default encryption (``BucketFacts.at_rest``).

moto in-process (``mock_aws``). AWS behaviour modelled, and where moto 5.2.5 differs:

- New buckets have no default encryption in moto; AWS applies SSE-S3 to every bucket since
  January 2023, so "none" models a bucket on an S3-compatible store (or before 2023).
- GetBucketEncryption returns the rule as written: SSEAlgorithm AES256 (SSE-S3),
  aws:kms (SSE-KMS) or aws:kms:dsse (DSSE-KMS), with KMSMasterKeyID only when one was
  given (aws:kms without it means the AWS-managed key aws/s3). moto stores any key id
  without checking it exists (AWS refuses an unknown key when objects are written).
- AccessDenied is simulated by replacing the client method (moto does not enforce IAM).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.exceptions import ClientError

from connectors.processor.posture_facts import ProcessorFacts
from connectors.s3.posture import bucket_facts, unclassified_facts
from connectors.s3.posture_facts import BucketFacts
from tests.connectors.s3.conftest import REGION, create_bucket, make_store
from transfers.at_rest import NOT_REPORTED, AtRest, AtRestFacts, at_rest_of

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "enc-tickets"
TODAY = date(2026, 1, 15)


def _facts(s3: S3Client, bucket: str = BUCKET) -> BucketFacts:
    store = make_store({"name": bucket})
    return bucket_facts(
        s3, bucket, store=store, declared=store.bucket(bucket), desired_lifecycle=None
    )


def _encrypt(s3: S3Client, algorithm: str, key: str | None = None) -> None:
    default: dict[str, str] = {"SSEAlgorithm": algorithm}
    if key is not None:
        default["KMSMasterKeyID"] = key
    rules = cast(Any, [{"ApplyServerSideEncryptionByDefault": default}])
    s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": rules})


def _customer_key() -> str:
    kms = boto3.client("kms", region_name=REGION)
    try:
        meta = kms.create_key(Description="tickets at rest")["KeyMetadata"]
    finally:
        kms.close()
    assert meta["KeyManager"] == "CUSTOMER"
    return str(meta["Arn"])


def test_no_default_encryption(s3: S3Client) -> None:
    create_bucket(s3, BUCKET)
    got = _facts(s3).at_rest
    assert (got.encrypted, got.key_held_by) == (False, None)
    assert got.evidence.startswith("no default encryption configured")


def test_sse_s3(s3: S3Client) -> None:
    create_bucket(s3, BUCKET)
    _encrypt(s3, "AES256")
    assert _facts(s3).at_rest == AtRest(
        True, "AWS (S3-managed keys)", "default encryption SSE-S3 (AES256)"
    )


def test_sse_kms_with_a_customer_key(s3: S3Client) -> None:
    create_bucket(s3, BUCKET)
    arn = _customer_key()
    _encrypt(s3, "aws:kms", arn)
    facts = _facts(s3)
    assert (facts.encryption, facts.kms_key) == ("aws:kms", arn)
    assert facts.at_rest == AtRest(
        True, f"AWS KMS key {arn} (customer-managed)", "default encryption SSE-KMS (aws:kms)"
    )
    # The transfer check judges the algorithm as before: encrypted, no finding for it.
    assert "s3.encryption-missing" not in {f.rule for f in facts.findings(None, TODAY)}


def test_dsse_kms_with_a_customer_key(s3: S3Client) -> None:
    create_bucket(s3, BUCKET)
    arn = _customer_key()
    _encrypt(s3, "aws:kms:dsse", arn)
    assert _facts(s3).at_rest == AtRest(
        True,
        f"AWS KMS key {arn} (customer-managed)",
        "default encryption DSSE-KMS (aws:kms:dsse)",
    )


@pytest.mark.parametrize(
    "key", [None, "alias/aws/s3", f"arn:aws:kms:{REGION}:123456789012:alias/aws/s3"]
)
def test_sse_kms_with_the_aws_managed_key(s3: S3Client, key: str | None) -> None:
    create_bucket(s3, BUCKET)
    _encrypt(s3, "aws:kms", key)
    got = _facts(s3).at_rest
    assert (got.encrypted, got.key_held_by) == (True, "AWS KMS key alias/aws/s3 (AWS-managed)")


def test_unreadable_encryption_is_not_known(s3: S3Client, monkeypatch: pytest.MonkeyPatch) -> None:
    create_bucket(s3, BUCKET)
    _encrypt(s3, "AES256")

    def refused(**_kw: Any) -> Any:  # a role without s3:GetEncryptionConfiguration
        answer = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}
        raise ClientError(cast(Any, answer), "GetBucketEncryption")

    monkeypatch.setattr(s3, "get_bucket_encryption", refused)
    assert _facts(s3).at_rest == AtRest(
        None, None, "default encryption could not be read (encryption: AccessDenied)"
    )


def test_a_missing_or_undeclared_bucket_is_not_known(s3: S3Client) -> None:
    missing = _facts(s3, "enc-never-created").at_rest
    assert (missing.encrypted, missing.key_held_by) == (None, None)
    assert "NoSuchBucket" in missing.evidence
    create_bucket(s3, BUCKET)
    _encrypt(s3, "AES256")
    stray = unclassified_facts(s3, BUCKET)  # encryption is not read for such buckets
    assert stray is not None and stray.at_rest.encrypted is None


def test_any_facts_answer_through_at_rest_of(s3: S3Client) -> None:
    create_bucket(s3, BUCKET)
    _encrypt(s3, "AES256")
    facts = _facts(s3)
    assert isinstance(facts, AtRestFacts) and at_rest_of(facts) == facts.at_rest
    processor = ProcessorFacts(store="newsletter", provider="Example Mail", region="eu-west-1")
    assert at_rest_of(processor) is NOT_REPORTED
