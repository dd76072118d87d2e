"""The demo buckets carry the posture the demo's transfer check expects, and still work.

A TLS-only bucket policy (a Deny on ``aws:SecureTransport = false``) makes moto alone refuse
every object call, over HTTPS too (``tests/connectors/s3/test_posture.py`` shows it). The
demo's local S3 over TLS (``LocalS3(tls_dir=...)``) judges the condition per request as AWS
does, so the buckets get the policy before anything is written: seeding, an erasure through
the S3 connector and the posture check all pass under it, and a request without TLS would
still be refused.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.exceptions import ClientError
from moto.iam.access_control import PermissionResult

from config.loader import load_config
from config.schema import LifecycleConfig
from connectors.base import BatchResult
from connectors.s3.config import S3Store
from connectors.s3.connector import S3Connector
from connectors.s3.lifecycle import desired_rules
from connectors.s3.posture import store_facts
from core.keys import KeyRing
from demo.s3_server import LocalS3
from demo.s3_transport import condition_holds, permission
from demo.seed_s3 import (
    ARCHIVE_BUCKET,
    DEMO_BUCKETS,
    TICKETS_BUCKET,
    demo_posture,
    enforce_tls,
    ensure_bucket,
    seed_s3,
    tls_only_policy,
)
from ops.demo_setup import DEMO_CONFIG_DIR
from retention.targets import resolve_targets
from transfers.evaluate import evaluate

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

NOW = datetime(2026, 3, 1, tzinfo=UTC)  # HOLD-2026-001 (legal archive) in force
CUSTOMERS = list(range(1, 13))
SUBJECT = 5
OBJECT = f"arn:aws:s3:::{TICKETS_BUCKET}/tickets/1/a.txt"


# -- the policy, judged per transport -----------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "secure", "holds"),
    [
        ({"Bool": {"aws:SecureTransport": "false"}}, False, True),
        ({"Bool": {"aws:SecureTransport": "false"}}, True, False),
        ({"Bool": {"AWS:SecureTransport": ["FALSE"]}}, False, True),
        ({"Bool": {"aws:SecureTransport": False}}, True, False),
        ({"Bool": {"aws:SecureTransport": "true"}}, True, True),
        ({"StringEquals": {"aws:SecureTransport": "false"}}, False, None),  # not ours to judge
        ({"Bool": {"aws:MultiFactorAuthPresent": "false"}}, False, None),
        ({}, False, None),
    ],
)
def test_condition_holds(condition: dict[str, Any], secure: bool, holds: bool | None) -> None:
    assert condition_holds(condition, secure) is holds


def test_the_tls_only_policy_refuses_plain_http_only() -> None:
    policy = tls_only_policy(TICKETS_BUCKET)
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert permission(policy, action, OBJECT, secure=False) is PermissionResult.DENIED
        assert permission(policy, action, OBJECT, secure=True) is PermissionResult.NEUTRAL
    other = f"arn:aws:s3:::{ARCHIVE_BUCKET}/contracts/1/contract.pdf"
    assert permission(policy, "s3:GetObject", other, secure=False) is PermissionResult.NEUTRAL


def test_statements_without_a_transport_condition_are_left_to_moto() -> None:
    deny_all = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": OBJECT}
    allow = {**deny_all, "Effect": "Allow"}
    for statements, expected in (
        ([deny_all], PermissionResult.DENIED),
        ([allow], PermissionResult.PERMITTED),
        ([allow, json.loads(tls_only_policy(TICKETS_BUCKET))["Statement"][0]], None),
    ):
        text = json.dumps({"Version": "2012-10-17", "Statement": statements})
        if expected is None:  # the Allow stands over TLS; the Deny wins without
            assert permission(text, "s3:GetObject", OBJECT, True) is PermissionResult.PERMITTED
            assert permission(text, "s3:GetObject", OBJECT, False) is PermissionResult.DENIED
        else:
            assert permission(text, "s3:GetObject", OBJECT, True) is expected
            assert permission(text, "s3:GetObject", OBJECT, False) is expected


# -- the served buckets ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> LifecycleConfig:
    return load_config(DEMO_CONFIG_DIR)


@pytest.fixture
def tls_s3(tmp_path: Path, demo: LifecycleConfig) -> Iterator[tuple[LocalS3, S3Client]]:
    """A local S3 over TLS with the demo buckets set up as ``lifecycle server start`` does."""
    with LocalS3(tls_dir=tmp_path / "tls") as s3:
        client = s3.client()
        for bucket, lock in DEMO_BUCKETS.items():
            ensure_bucket(client, bucket, s3.region, object_lock=lock)
        demo_posture(client, desired_rules(resolve_targets(demo, NOW)).rules)
        yield s3, client
        client.close()


def _files(demo: LifecycleConfig, s3: LocalS3) -> S3Store:
    files = cast(S3Store, demo.store("files"))
    return files.model_copy(update={"endpoint_url": s3.endpoint_url})


def _findings(demo: LifecycleConfig, client: S3Client) -> list[tuple[str, str, str]]:
    facts = store_facts(client, cast(S3Store, demo.store("files")), demo, all_buckets=True)
    found = evaluate(facts, demo.policy.transfers, NOW.date())
    return [(f.severity, f.rule, f.resource) for f in found]


def test_demo_buckets_carry_the_posture_and_the_check_finds_nothing(
    tls_s3: tuple[LocalS3, S3Client], demo: LifecycleConfig
) -> None:
    s3, client = tls_s3
    assert s3.endpoint_url.startswith("https://127.0.0.1:")
    for bucket in DEMO_BUCKETS:
        policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
        assert policy == json.loads(tls_only_policy(bucket))
    assert _findings(demo, client) == []


def test_seeding_and_an_erasure_work_under_the_tls_only_policy(
    tls_s3: tuple[LocalS3, S3Client], demo: LifecycleConfig
) -> None:
    s3, client = tls_s3
    data = seed_s3(client, customer_ids=CUSTOMERS, subject_customer_id=SUBJECT)
    assert data.buckets[TICKETS_BUCKET].versions > 0
    assert data.subject_keys[ARCHIVE_BUCKET] == (data.held_key, data.retained_key)

    connector = S3Connector(
        _files(demo, s3), demo.policy, keys=KeyRing.from_master(b"d" * 32), client=client
    )
    subject = {"customer_id": frozenset({str(SUBJECT)})}
    plan = connector.plan_erasure(connector.locate(subject), NOW.date().isoformat())
    batches: list[BatchResult] = []
    connector.execute(plan, batches.append)
    result = connector.verify(subject, plan)

    assert sum(b.affected for b in batches) > 0
    assert result.clean and result.remaining[TICKETS_BUCKET] == 0
    assert result.deferred.get(ARCHIVE_BUCKET)  # the legal hold keeps the contracts
    prefix = f"tickets/{SUBJECT}/"
    left = client.list_object_versions(Bucket=TICKETS_BUCKET, Prefix=prefix)
    assert not left.get("Versions") and not left.get("DeleteMarkers")
    others = client.list_object_versions(Bucket=TICKETS_BUCKET, Prefix="tickets/1/")
    assert others.get("Versions")  # other customers' objects stay
    assert _findings(demo, client) == []  # the policy is still there


def test_nothing_reaches_it_without_its_ca(tls_s3: tuple[LocalS3, S3Client]) -> None:
    s3, _client = tls_s3
    tls = s3.tls
    assert tls is not None and s3.env()["AWS_CA_BUNDLE"] == str(tls.ca)
    assert tls.key.stat().st_mode & 0o777 == 0o600
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"{s3.endpoint_url}/", timeout=5)  # the system trust store
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)
    context = ssl.create_default_context(cafile=str(tls.ca))
    with urllib.request.urlopen(f"{s3.endpoint_url}/", timeout=5, context=context) as answer:
        assert answer.status == 200


def test_moto_alone_still_refuses_after_the_server_stops(tmp_path: Path) -> None:
    """The per-request judgement lasts while a TLS server runs; moto is itself again after."""
    with LocalS3(tls_dir=tmp_path / "tls"):
        pass
    with LocalS3() as s3:  # plain HTTP: moto's own behaviour, as the posture tests expect
        client = s3.client()
        ensure_bucket(client, TICKETS_BUCKET, s3.region, object_lock=False)
        enforce_tls(client, TICKETS_BUCKET)
        with pytest.raises(ClientError) as refused:
            client.put_object(Bucket=TICKETS_BUCKET, Key="tickets/1/a.txt", Body=b"x")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        client.close()


def test_plain_http_gets_no_tls_policy_and_the_check_says_so(demo: LifecycleConfig) -> None:
    with LocalS3() as s3:
        client = s3.client()
        for bucket, lock in DEMO_BUCKETS.items():
            ensure_bucket(client, bucket, s3.region, object_lock=lock)
        demo_posture(client, desired_rules(resolve_targets(demo, NOW)).rules, tls_only=False)
        assert sorted(_findings(demo, client)) == [
            ("high", "s3.tls-not-enforced", f"s3://{ARCHIVE_BUCKET}"),
            ("high", "s3.tls-not-enforced", f"s3://{TICKETS_BUCKET}"),
        ]
        client.close()
