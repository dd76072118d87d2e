"""S3 posture facts read from moto in-process (``mock_aws``), and the findings they give.

Which AWS behaviour each test models, and where moto 5.2.5 differs:

- CreateBucket refuses a LocationConstraint other than the client's region (as AWS), so
  buckets are made with a client per region, us-east-1 without a constraint; the check
  itself reads every region through one eu-central-1 client (on AWS botocore follows the
  301 redirect; moto answers any region directly). GetBucketLocation answers None for
  us-east-1 and the legacy "EU" (accepted by moto only from a us-east-1 client) as AWS.
- PutBucketReplication needs versioning on the source (as AWS), but moto also accepts an
  unversioned or missing destination (AWS refuses both); nothing is ever replicated.
- New buckets have no default encryption in moto (AWS applies SSE-S3 since 2023), so
  "unset" models a bucket whose encryption was removed, or an S3-compatible store.
- A TLS-only policy (conditional Deny on aws:SecureTransport) makes in-process moto refuse
  object calls (PutObject/GetObject: 403) even over https, while bucket configuration
  calls (policy, encryption, public access block, ...) still pass: objects are seeded
  before the policy is put. On AWS the same policy refuses plain-HTTP requests only.
- Lifecycle configurations are stored and read back as AWS does (never run).
- AccessDenied is simulated by replacing one client method (moto's IAM is not enforced).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import boto3
import pytest
from botocore.exceptions import ClientError

from config.loader import load_config
from config.schema import LifecycleConfig
from connectors.s3.client import make_client
from connectors.s3.config import S3Store
from connectors.s3.lifecycle import apply as apply_rules
from connectors.s3.lifecycle import desired_rules
from connectors.s3.posture import bucket_facts, store_facts, unclassified_facts
from connectors.s3.posture_facts import BucketFacts, ReplicationFact
from retention.targets import resolve_targets
from tests.connectors.s3.conftest import make_store, seed
from transfers.evaluate import evaluate

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ROOT: Final = Path(__file__).resolve().parents[3]
NOW: Final = datetime(2026, 3, 1, tzinfo=UTC)  # HOLD-2026-001 (legal archive) in force
TODAY: Final = NOW.date()
TICKETS: Final = "demo-ticket-attachments"
ARCHIVE: Final = "demo-legal-archive"
FULL_BLOCK: Final = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
Statement = dict[str, Any]


def make_bucket(name: str, region: str, *, versioned: bool = False) -> None:
    """A bucket created through a client of its own region (as AWS requires)."""
    client: S3Client = boto3.client("s3", region_name=region)
    if region == "us-east-1":
        client.create_bucket(Bucket=name)
    else:
        where = cast(Any, {"LocationConstraint": region})
        client.create_bucket(Bucket=name, CreateBucketConfiguration=where)
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def tls_statement(bucket: str, **override: Any) -> Statement:
    """The usual "deny everything over plain HTTP" statement, with fields replaced."""
    statement: Statement = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    return statement | override


def put_policy(s3: S3Client, bucket: str, *statements: Statement) -> None:
    policy = {"Version": "2012-10-17", "Statement": list(statements)}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def harden(s3: S3Client, bucket: str) -> None:
    """Default encryption, the full public access block, then (last) a TLS-only policy."""
    rules = cast(Any, [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}])
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=cast(Any, FULL_BLOCK))
    put_policy(s3, bucket, tls_statement(bucket))


def replicate(s3: S3Client, source: str, *destinations: str) -> None:
    rules = [
        {
            "ID": f"to-{dest}",
            "Priority": n,
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {"Bucket": f"arn:aws:s3:::{dest}"},
        }
        for n, dest in enumerate(destinations, start=1)
    ]
    config = {"Role": "arn:aws:iam::123456789012:role/replication", "Rules": rules}
    s3.put_bucket_replication(Bucket=source, ReplicationConfiguration=cast(Any, config))


def refuse(s3: S3Client, monkeypatch: pytest.MonkeyPatch, method: str, bucket: str) -> None:
    """Make ``method`` answer AccessDenied for ``bucket`` (as a missing IAM grant would)."""
    original: Callable[..., Any] = getattr(s3, method)

    def call(**kw: Any) -> Any:
        if kw.get("Bucket") == bucket:
            answer = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}
            raise ClientError(cast(Any, answer), method)
        return original(**kw)

    monkeypatch.setattr(s3, method, call)


def facts(s3: S3Client, bucket: str, store: S3Store | None = None, **kw: Any) -> BucketFacts:
    """Facts of a declared bucket of ``store`` (default: a one-bucket store of it)."""
    store = store or make_store({"name": bucket})
    kw.setdefault("desired_lifecycle", [])
    return bucket_facts(s3, bucket, store=store, declared=store.bucket(bucket), **kw)


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> LifecycleConfig:
    monkeypatch.delenv("LIFECYCLE_S3_ENDPOINT", raising=False)  # the AWS default (moto)
    return load_config(ROOT / "config" / "demo")


def with_files(config: LifecycleConfig, *buckets: dict[str, Any]) -> LifecycleConfig:
    """``config`` with its S3 store ``files`` replaced by one holding ``buckets``."""
    files = S3Store.model_validate(
        {"type": "s3", "name": "files", "region": "eu-central-1", "buckets": list(buckets)}
    )
    stores = tuple(files if s.name == "files" else s for s in config.inventory.stores)
    inventory = config.inventory.model_copy(update={"stores": stores})
    return config.model_copy(update={"inventory": inventory})


# --- region -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("eu-central-1", "eu-central-1"),
        ("eu-west-1", "eu-west-1"),
        ("us-west-2", "us-west-2"),
        ("us-east-1", "us-east-1"),  # GetBucketLocation answers None
        ("EU", "eu-west-1"),  # the legacy constraint of old eu-west-1 buckets
    ],
)
def test_region_is_the_actual_location(s3: S3Client, region: str, expected: str) -> None:
    if region == "EU":
        east: S3Client = boto3.client("s3", region_name="us-east-1")
        legacy = cast(Any, {"LocationConstraint": "EU"})
        east.create_bucket(Bucket="pa-where", CreateBucketConfiguration=legacy)
    else:
        make_bucket("pa-where", region)
    got = facts(s3, "pa-where")
    assert (got.region, got.declared_region, got.unreadable) == (expected, "eu-central-1", ())
    assert (got.store, got.categories) == ("files", ("support",))


def test_declared_bucket_region_overrides_the_store_region(s3: S3Client) -> None:
    make_bucket("pa-where", "us-west-2")
    store = make_store({"name": "pa-where", "region": "eu-west-1"})
    assert facts(s3, "pa-where", store).declared_region == "eu-west-1"


# --- replication ----------------------------------------------------------------------


def test_replication_rules_with_their_destination_regions(s3: S3Client) -> None:
    """AWS: each enabled rule's Destination.Bucket is an ARN; its region is read from it."""
    make_bucket("pa-source", "eu-central-1", versioned=True)
    make_bucket("pa-dr-oregon", "us-west-2", versioned=True)
    make_bucket("pa-dr-virginia", "us-east-1", versioned=True)
    replicate(s3, "pa-source", "pa-dr-oregon", "pa-dr-virginia")
    assert facts(s3, "pa-source").replication == (
        ReplicationFact("to-pa-dr-oregon", "pa-dr-oregon", "us-west-2"),
        ReplicationFact("to-pa-dr-virginia", "pa-dr-virginia", "us-east-1"),
    )


def test_unreadable_destination_has_no_region(
    s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS: another account's destination refuses GetBucketLocation; moto accepts a rule
    to a missing destination (AWS would not), standing for one deleted since."""
    make_bucket("pa-source", "eu-central-1", versioned=True)
    make_bucket("pa-other-account", "us-west-2", versioned=True)
    replicate(s3, "pa-source", "pa-other-account", "pa-deleted-since")
    refuse(s3, monkeypatch, "get_bucket_location", "pa-other-account")
    got = facts(s3, "pa-source")
    assert [(r.destination_bucket, r.destination_region) for r in got.replication] == [
        ("pa-other-account", None),
        ("pa-deleted-since", None),
    ]
    assert got.unreadable == ()  # the source itself was read; evaluate reports the rules


def test_no_replication_and_disabled_rules_give_none(s3: S3Client) -> None:
    make_bucket("pa-plain", "eu-central-1", versioned=True)
    make_bucket("pa-source", "eu-central-1", versioned=True)
    make_bucket("pa-dr", "us-west-2", versioned=True)
    replicate(s3, "pa-source", "pa-dr")
    answer = s3.get_bucket_replication(Bucket="pa-source")["ReplicationConfiguration"]
    answer["Rules"][0]["Status"] = "Disabled"
    s3.put_bucket_replication(Bucket="pa-source", ReplicationConfiguration=answer)
    assert facts(s3, "pa-plain").replication == ()
    assert facts(s3, "pa-source").replication == ()  # a disabled rule copies nothing


# --- encryption, public access block, TLS-only policy ---------------------------------


@pytest.mark.parametrize("algorithm", ["AES256", "aws:kms", None])
def test_default_encryption(s3: S3Client, algorithm: str | None) -> None:
    make_bucket("pa-enc", "eu-central-1")
    if algorithm is not None:
        default: dict[str, Any] = {"SSEAlgorithm": algorithm}
        if algorithm == "aws:kms":
            default["KMSMasterKeyID"] = "arn:aws:kms:eu-central-1:123456789012:key/k"
        enc = cast(Any, {"Rules": [{"ApplyServerSideEncryptionByDefault": default}]})
        s3.put_bucket_encryption(Bucket="pa-enc", ServerSideEncryptionConfiguration=enc)
    assert facts(s3, "pa-enc").encryption == algorithm


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (FULL_BLOCK, FULL_BLOCK),
        (
            {"BlockPublicAcls": True, "IgnorePublicAcls": True},
            {
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": False,
                "RestrictPublicBuckets": False,
            },
        ),
        (None, None),
    ],
    ids=["full", "partial", "none"],
)
def test_public_access_block(
    s3: S3Client, flags: dict[str, bool] | None, expected: dict[str, bool] | None
) -> None:
    make_bucket("pa-pab", "eu-central-1")
    if flags is not None:
        s3.put_public_access_block(Bucket="pa-pab", PublicAccessBlockConfiguration=cast(Any, flags))
    assert facts(s3, "pa-pab").public_access_block == expected


B: Final = "pa-tls"
OBJECTS_ONLY: Final = tls_statement(
    B, Action=["s3:GetObject", "s3:PutObject"], Resource=f"arn:aws:s3:::{B}/*"
)
PUBLIC_READ: Final = {
    "Effect": "Allow",
    "Principal": "*",
    "Action": "s3:GetObject",
    "Resource": "*",
}


@pytest.mark.parametrize(
    ("statements", "tls_only"),
    [
        ([tls_statement(B)], True),
        ([tls_statement(B, Principal={"AWS": "*"}, Action="*")], True),
        ([OBJECTS_ONLY], True),
        ([tls_statement(B, Condition={"Bool": {"aws:SecureTransport": False}})], True),
        ([tls_statement(B, Condition={"Bool": {"AWS:SecureTransport": ["FALSE"]}})], True),
        ([PUBLIC_READ, tls_statement(B)], True),
        ([], False),
        ([tls_statement(B, Effect="Allow")], False),
        ([tls_statement(B, Action="s3:PutObject")], False),  # reads over HTTP still pass
        ([tls_statement(B, Principal={"AWS": "arn:aws:iam::123456789012:root"})], False),
        ([tls_statement(B, Resource=f"arn:aws:s3:::{B}")], False),  # the bucket, not its objects
        ([tls_statement(B, Resource="arn:aws:s3:::another-bucket/*")], False),
        ([tls_statement(B, Condition={"Bool": {"aws:SecureTransport": "true"}})], False),
        ([tls_statement(B, Condition={"StringEquals": {"aws:SecureTransport": "false"}})], False),
        ([tls_statement(B, Condition={"NumericLessThan": {"s3:TlsVersion": "1.2"}})], False),
    ],
)  # fmt: skip
def test_tls_only_policy(s3: S3Client, statements: list[Statement], tls_only: bool) -> None:
    make_bucket(B, "eu-central-1")
    if statements:
        put_policy(s3, B, *statements)
    assert facts(s3, B).tls_only is tls_only


def test_moto_blocks_object_calls_in_process_after_a_tls_only_policy(s3: S3Client) -> None:
    """The moto quirk the other tests work around: in-process, the conditional Deny refuses
    object calls although the client uses https, but bucket configuration stays readable."""
    make_bucket(B, "eu-central-1")
    seed(s3, B, ["a.txt"])
    harden(s3, B)
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=B, Key="b.txt", Body=b"x")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    got = facts(s3, B)
    assert (got.tls_only, got.encryption, got.public_access_block) == (True, "AES256", FULL_BLOCK)
    assert got.unreadable == ()


# --- lifecycle drift --------------------------------------------------------------------


def test_lifecycle_drift_from_the_retention_policy(s3: S3Client, demo: LifecycleConfig) -> None:
    """Demo rule ticket-attachments-2y renders two rules; the legal archive is held (none)."""
    desired = desired_rules(resolve_targets(demo, NOW)).rules[TICKETS]
    files = cast(S3Store, demo.store("files"))
    for name in (TICKETS, ARCHIVE):
        make_bucket(name, "eu-central-1", versioned=True)

    def drift_of(bucket: str, rules: list[dict[str, Any]]) -> dict[str, int] | None:
        got = bucket_facts(
            s3, bucket, store=files, declared=files.bucket(bucket), desired_lifecycle=rules
        )
        return got.lifecycle_drift

    assert drift_of(TICKETS, desired) == {"add": 2, "change": 0, "remove": 0}
    assert drift_of(ARCHIVE, []) is None
    apply_rules(s3, TICKETS, desired, [])
    assert drift_of(TICKETS, desired) is None
    changed = [{**desired[0], "Expiration": {"Days": 30}}, desired[1]]
    apply_rules(s3, TICKETS, changed, [])
    assert drift_of(TICKETS, desired) == {"add": 0, "change": 1, "remove": 0}
    apply_rules(s3, ARCHIVE, desired, [])  # our rules where the policy wants none
    assert drift_of(ARCHIVE, []) == {"add": 0, "change": 0, "remove": 2}
    unclassified = bucket_facts(s3, ARCHIVE, store=None, declared=None, desired_lifecycle=None)
    assert unclassified.lifecycle_drift is None  # not compared


# --- refusals and missing buckets ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "entry"),
    [
        ("get_bucket_encryption", "encryption: AccessDenied"),
        ("get_bucket_policy", "policy: AccessDenied"),
        ("get_public_access_block", "public access block: AccessDenied"),
        ("get_bucket_replication", "replication: AccessDenied"),
        ("get_bucket_lifecycle_configuration", "lifecycle: AccessDenied"),
        ("get_bucket_location", "region: AccessDenied"),
    ],
)
def test_a_refused_call_is_unreadable_not_a_crash(
    s3: S3Client, monkeypatch: pytest.MonkeyPatch, method: str, entry: str
) -> None:
    make_bucket("pa-denied", "eu-west-1")
    harden(s3, "pa-denied")
    refuse(s3, monkeypatch, method, "pa-denied")
    got = facts(s3, "pa-denied")
    assert got.unreadable == (entry,)
    # the other facts are still read; a refused region falls back to the declared one
    assert got.region == ("eu-central-1" if method == "get_bucket_location" else "eu-west-1")
    assert got.tls_only is (method != "get_bucket_policy")
    assert (got.encryption is None) is (method == "get_bucket_encryption")


def test_missing_inventory_bucket(s3: S3Client) -> None:
    got = facts(s3, "pa-never-created")
    assert got == BucketFacts(
        bucket="pa-never-created",
        region="eu-central-1",
        store="files",
        declared_region="eu-central-1",
        categories=("support",),
        unreadable=("bucket: NoSuchBucket",),
    )
    assert unclassified_facts(s3, "pa-never-created") is None  # vanished after ListBuckets


# --- store_facts: unclassified buckets, order, concurrency -----------------------------


def test_store_facts_reports_unclassified_buckets(s3: S3Client, demo: LifecycleConfig) -> None:
    """AWS ListBuckets shows every bucket of the account, whatever its region."""
    config = with_files(
        demo,
        {"name": "pa-zeta", "categories": ["support"]},
        {
            "name": "pa-alpha",
            "categories": ["contact"],
            "replicas": [{"bucket": "pa-alpha-dr", "region": "eu-west-1"}],
        },
    )
    for name, region in [
        ("pa-zeta", "eu-central-1"),
        ("pa-alpha", "eu-central-1"),
        ("pa-alpha-dr", "eu-west-1"),
        ("pa-stray-oregon", "us-west-2"),
        ("pa-stray-virginia", "us-east-1"),
    ]:
        make_bucket(name, region)
    store = cast(S3Store, config.store("files"))
    client = make_client(store, max_workers=4)
    found = store_facts(client, store, config, max_workers=4, all_buckets=True, now=NOW)
    assert [(f.bucket, f.store, f.region) for f in found] == [
        ("pa-alpha", "files", "eu-central-1"),
        ("pa-alpha-dr", "files", "eu-west-1"),  # a declared replica: checked, classified
        ("pa-stray-oregon", None, "us-west-2"),
        ("pa-stray-virginia", None, "us-east-1"),
        ("pa-zeta", "files", "eu-central-1"),
    ]
    replica = found[1]
    assert (replica.categories, replica.declared_region) == (("contact",), "eu-west-1")
    assert replica.lifecycle_drift is None  # the policy's rules name source buckets only
    assert found[2] == BucketFacts(bucket="pa-stray-oregon", region="us-west-2")  # region only
    declared_only = store_facts(None, store, config, all_buckets=False, now=NOW)
    assert [f.bucket for f in declared_only] == ["pa-alpha", "pa-alpha-dr", "pa-zeta"]


def test_buckets_are_read_concurrently_on_a_bounded_pool(
    s3: S3Client, demo: LifecycleConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"pa-many-{n:02d}" for n in range(24)]
    config = with_files(demo, *({"name": n, "categories": ["support"]} for n in names))
    for name in names:
        make_bucket(name, "eu-central-1")
    store = cast(S3Store, config.store("files"))
    lock = threading.Lock()
    active, peak = [0], [0]
    original = s3.get_bucket_location

    def slow(**kw: Any) -> Any:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.02)  # network latency, so overlapping calls show
            return original(**kw)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(s3, "get_bucket_location", slow)

    def run(workers: int) -> int:
        peak[0] = 0
        found = store_facts(s3, store, config, max_workers=workers, all_buckets=False, now=NOW)
        assert [f.bucket for f in found] == names
        return peak[0]

    assert 1 < run(4) <= 4
    assert 4 < run(64) <= 10  # bounded by the client's connection pool (boto3's default 10)
    with pytest.raises(ValueError, match="at least 1"):
        store_facts(s3, store, config, max_workers=0, all_buckets=False)


# --- end to end: facts -> findings with the demo transfer policy -----------------------

E2E: Final[list[dict[str, Any]]] = [
    {"name": TICKETS, "categories": ["support"]},
    {"name": ARCHIVE, "categories": ["contract"]},
    {"name": "pa-no-encryption", "categories": ["support"]},
    {"name": "pa-no-tls", "categories": ["support"]},
    {"name": "pa-partial-block", "categories": ["support"]},
    {"name": "pa-oregon", "categories": ["support"]},
    {"name": "pa-virginia-contact", "categories": ["contact"], "region": "us-east-1"},
    {
        "name": "pa-replicated",
        "categories": ["support"],
        "replicas": [{"bucket": "pa-replica-london", "region": "eu-west-2"}],
    },
    {"name": "pa-drift", "categories": ["support"]},
    {"name": "pa-denied", "categories": ["support"]},
    {"name": "pa-missing", "categories": ["support"]},
]


@pytest.fixture
def e2e(s3: S3Client, demo: LifecycleConfig) -> Iterator[tuple[LifecycleConfig, S3Client]]:
    """One violation per bucket, everything else compliant (regions as named)."""
    config = with_files(demo, *E2E)
    region = {"pa-oregon": "us-west-2", "pa-virginia-contact": "us-east-1"}
    region |= {"pa-replica-london": "eu-west-2", "pa-replica-virginia": "us-east-1"}
    region["pa-stray"] = "eu-west-1"
    names = [b["name"] for b in E2E if b["name"] != "pa-missing"]
    names += ["pa-replica-london", "pa-replica-virginia", "pa-stray"]
    for name in names:
        make_bucket(name, region.get(name, "eu-central-1"), versioned=True)
    replicate(s3, "pa-replicated", "pa-replica-london", "pa-replica-virginia")
    apply_rules(s3, TICKETS, desired_rules(resolve_targets(config, NOW)).rules[TICKETS], [])
    stale = {"ID": "lifecycle-retired-rule", "Filter": {"Prefix": "old/"}, "Status": "Enabled"}
    apply_rules(s3, "pa-drift", [{**stale, "Expiration": {"Days": 30}}], [])
    for name in names:
        if name in ("pa-no-encryption", "pa-no-tls", "pa-partial-block", "pa-stray"):
            continue
        harden(s3, name)
    kms = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/posture"}
    enc = cast(Any, {"Rules": [{"ApplyServerSideEncryptionByDefault": kms}]})
    for name in ("pa-no-tls", "pa-partial-block"):
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=enc)
    for name, flags in [("pa-no-encryption", FULL_BLOCK), ("pa-no-tls", FULL_BLOCK)]:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=cast(Any, flags))
    partial = {**FULL_BLOCK, "RestrictPublicBuckets": False}
    s3.put_public_access_block(
        Bucket="pa-partial-block", PublicAccessBlockConfiguration=cast(Any, partial)
    )
    for name in ("pa-no-encryption", "pa-partial-block"):
        put_policy(s3, name, tls_statement(name))
    yield config, s3


def test_findings_end_to_end(
    e2e: tuple[LifecycleConfig, S3Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, s3 = e2e
    refuse(s3, monkeypatch, "get_bucket_encryption", "pa-denied")
    store = cast(S3Store, config.store("files"))
    found = store_facts(s3, store, config, max_workers=8, all_buckets=True, now=NOW)

    def rules_by_resource(today: date) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for finding in evaluate(found, config.policy.transfers, today):
            out.setdefault(finding.resource, set()).add(finding.rule)
        return out

    assert rules_by_resource(TODAY) == {
        "s3://pa-no-encryption": {"s3.encryption-missing"},
        "s3://pa-no-tls": {"s3.tls-not-enforced"},
        "s3://pa-partial-block": {"s3.public-access-not-blocked"},
        # support has no route to us-west-2, and the inventory says eu-central-1
        "s3://pa-oregon": {"s3.bucket-region", "s3.region-mismatch"},
        # eu-west-2 (adequacy) is allowed for support; us-east-1 is not
        "s3://pa-replicated -> s3://pa-replica-virginia": {"s3.replication-region"},
        "s3://pa-replica-virginia": {"s3.unclassified-bucket"},
        "s3://pa-stray": {"s3.unclassified-bucket"},
        "s3://pa-drift": {"s3.lifecycle-drift"},
        # a fact S3 refused is reported as unreadable, not as missing
        "s3://pa-denied": {"s3.unreadable"},
        # a missing bucket: only that it could not be read
        "s3://pa-missing": {"s3.unreadable"},
    }
    compliant = {TICKETS, ARCHIVE, "pa-virginia-contact", "pa-replica-london"}
    assert compliant <= {f.bucket for f in found}
    # contact may go to us-east-1 under SCCs until 2027-06-30; after that the route lapses
    later = rules_by_resource(date(2027, 7, 1))
    assert later["s3://pa-virginia-contact"] == {"transfer.safeguard-expired"}
