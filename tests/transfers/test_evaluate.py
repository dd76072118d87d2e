"""Store facts judged against the demo transfer policy: one violation, exactly one finding."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from config.loader import load_config
from config.schema.transfers import TransferPolicy
from config.settings import PROJECT_ROOT
from connectors.s3.posture_facts import BucketFacts, ReplicationFact
from connectors.sql.posture_facts import DatabaseFacts, ReplicaFact
from transfers.evaluate import evaluate
from transfers.findings import Finding, compare

TODAY = date(2026, 11, 26)
FULL_BLOCK = dict.fromkeys(
    ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
)


@pytest.fixture(scope="module")
def policy() -> TransferPolicy:
    transfers = load_config(PROJECT_ROOT / "config" / "demo").policy.transfers
    assert transfers is not None
    return transfers


GOOD_BUCKET = BucketFacts(
    bucket="tickets",
    region="eu-central-1",
    store="files",
    declared_region="eu-central-1",
    categories=("support",),
    replication=(ReplicationFact("dr", "tickets-dr", "eu-west-1"),),
    encryption="AES256",
    tls_only=True,
    public_access_block=FULL_BLOCK,
)
GOOD_DB = DatabaseFacts(
    store="crm",
    backend="postgresql",
    declared_region="eu-central-1",
    categories=("contact", "billing"),
    rds_instance="crm-db",
    rds_region="eu-central-1",
    replicas=(ReplicaFact("crm-db-replica", "eu-west-1"),),
    tls_required=True,
    tls_evidence="sslmode=verify-full",
    server_ssl_in_use=True,
)


def rules(findings: list[Finding]) -> list[str]:
    return [f.rule for f in findings]


def test_a_compliant_setup_has_no_findings(policy: TransferPolicy) -> None:
    assert evaluate([GOOD_BUCKET, GOOD_DB], policy, TODAY) == []


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (replace(GOOD_BUCKET, region="us-west-2", declared_region="us-west-2"), "s3.bucket-region"),
        (
            replace(GOOD_BUCKET, replication=(ReplicationFact("r", "dst", "ap-south-1"),)),
            "s3.replication-region",
        ),
        (replace(GOOD_BUCKET, encryption=None), "s3.encryption-missing"),
        (replace(GOOD_BUCKET, tls_only=False), "s3.tls-not-enforced"),
        (replace(GOOD_BUCKET, public_access_block=None), "s3.public-access-not-blocked"),
        (
            replace(GOOD_BUCKET, public_access_block=FULL_BLOCK | {"RestrictPublicBuckets": False}),
            "s3.public-access-not-blocked",
        ),
        (replace(GOOD_BUCKET, lifecycle_drift={"add": 2}), "s3.lifecycle-drift"),
        (BucketFacts(bucket="stray", region="us-east-1"), "s3.unclassified-bucket"),
        (replace(GOOD_BUCKET, region="eu-west-1"), "s3.region-mismatch"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_each_bucket_violation_gives_exactly_its_finding(
    policy: TransferPolicy, facts: BucketFacts, expected: str
) -> None:
    found = evaluate([facts], policy, TODAY)
    assert rules(found) == [expected]


def test_adequacy_route_allows_a_replica_where_the_category_has_one(policy: TransferPolicy) -> None:
    # support may go to eu-west-2 (GB adequacy); contact may not.
    ok = replace(GOOD_BUCKET, replication=(ReplicationFact("r", "dst", "eu-west-2"),))
    assert evaluate([ok], policy, TODAY) == []
    bad = replace(ok, categories=("support", "contact"))
    (finding,) = evaluate([bad], policy, TODAY)
    assert finding.rule == "s3.replication-region" and finding.categories == ("contact",)


def test_a_category_under_an_expired_scc_is_reported_with_the_clauses(
    policy: TransferPolicy,
) -> None:
    # contact may go to us-east-1 under SCC-2021/914, which expires 2027-06-30.
    facts = replace(
        GOOD_BUCKET, region="us-east-1", declared_region="us-east-1", categories=("contact",)
    )
    assert evaluate([facts], policy, date(2027, 6, 30)) == []
    (finding,) = evaluate([facts], policy, date(2027, 7, 1))
    assert finding.rule == "transfer.safeguard-expired"
    assert finding.severity == "high"
    assert "SCC-2021/914" in finding.safeguard and "2027-06-30" in finding.safeguard


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (
            replace(GOOD_DB, declared_region="us-west-2", rds_region="us-west-2"),
            ["sql.database-region"],
        ),
        (
            replace(GOOD_DB, replicas=(ReplicaFact("crm-db-us", "us-west-2"),)),
            ["sql.replica-region"],
        ),
        (
            replace(
                GOOD_DB,
                tls_required=False,
                tls_evidence="no sslmode in the URL",
                server_ssl_in_use=False,
            ),
            ["sql.tls-not-required"],
        ),
        (replace(GOOD_DB, rds_region="eu-west-1"), ["sql.region-mismatch"]),
    ],
    ids=["database-region", "replica-region", "tls", "mismatch"],
)
def test_each_database_violation_gives_exactly_its_finding(
    policy: TransferPolicy, facts: DatabaseFacts, expected: list[str]
) -> None:
    assert rules(evaluate([facts], policy, TODAY)) == expected


def test_a_local_sqlite_store_needs_no_tls(policy: TransferPolicy) -> None:
    sqlite = DatabaseFacts(
        store="crm",
        backend="sqlite",
        declared_region="eu-central-1",
        categories=("contact",),
        tls_required=None,
    )
    assert evaluate([sqlite], policy, TODAY) == []


def test_no_transfer_policy_means_no_region_findings_but_security_still_counts() -> None:
    facts = replace(GOOD_BUCKET, region="us-west-2", declared_region="us-west-2", encryption=None)
    assert rules(evaluate([facts], None, TODAY)) == ["s3.encryption-missing"]


def test_runs_compare_as_new_persisting_and_resolved(policy: TransferPolicy) -> None:
    first = evaluate([replace(GOOD_BUCKET, encryption=None, tls_only=False)], policy, TODAY)
    second = evaluate(
        [replace(GOOD_BUCKET, tls_only=False, public_access_block=None)], policy, TODAY
    )

    c = compare(first, second)

    assert rules(list(c.new)) == ["s3.public-access-not-blocked"]
    assert rules(list(c.persisting)) == ["s3.tls-not-enforced"]
    assert rules(list(c.resolved)) == ["s3.encryption-missing"]
    assert [Finding.from_json(f.to_json()) for f in second] == second
