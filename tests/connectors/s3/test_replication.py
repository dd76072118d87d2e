"""Replicas: a declared destination is purged too; an undeclared one is a warning.

moto 5.2.5 stores a replication configuration (dropping Filter and
DeleteMarkerReplication) but replicates nothing, so these tests put the "replicated"
objects into the destination themselves: on AWS, replication would have written them,
each with the destination's own version ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.base import Action
from tests.connectors.s3.conftest import (
    SUBJECT,
    ConnectorFactory,
    create_bucket,
    ignore,
    listing,
    make_store,
    seed,
    under,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SOURCE = "tickets-eu"
REPLICA = "tickets-eu-dr"
STRAY = "tickets-copy"
TODAY = "2025-06-01"


def _replicate(s3: S3Client, source: str, dest: str) -> None:
    s3.put_bucket_replication(
        Bucket=source,
        ReplicationConfiguration={
            "Role": "arn:aws:iam::123456789012:role/replication",
            "Rules": [
                {
                    "ID": "all",
                    "Priority": 1,
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "DeleteMarkerReplication": {"Status": "Disabled"},
                    "Destination": {"Bucket": f"arn:aws:s3:::{dest}"},
                }
            ],
        },
    )


def _world(s3: S3Client, dest: str) -> None:
    for name in (SOURCE, dest):
        create_bucket(s3, name)
        seed(s3, name, ["tickets/1/a.txt", "tickets/1/b.txt"], versions=2)
        seed(s3, name, ["tickets/2/keep.txt"])
    _replicate(s3, SOURCE, dest)


def test_declared_replica_is_purged_too(s3: S3Client, connector: ConnectorFactory) -> None:
    _world(s3, REPLICA)
    store = make_store(
        {
            "name": SOURCE,
            "key_templates": ["tickets/{customer_id}/"],
            "replicas": [{"bucket": REPLICA, "region": "eu-west-1"}],
        }
    )
    c = connector(store)
    findings = c.locate(SUBJECT)
    assert findings.counts() == {SOURCE: 4, REPLICA: 4}
    assert findings.warnings == ()
    plan = c.plan_erasure(findings, TODAY)
    assert {(s.target, s.action) for s in plan.steps} == {
        (SOURCE, Action.DELETE),
        (REPLICA, Action.DELETE),
    }
    c.execute(plan, ignore)
    for name in (SOURCE, REPLICA):
        assert under(listing(s3, name), "tickets/1/") == set()
        assert {k[0] for k in listing(s3, name)} == {"tickets/2/keep.txt"}
    assert c.verify(SUBJECT, plan).clean


def test_undeclared_destination_is_reported(s3: S3Client, connector: ConnectorFactory) -> None:
    _world(s3, STRAY)
    store = make_store({"name": SOURCE, "key_templates": ["tickets/{customer_id}/"]})
    c = connector(store)
    plan = c.plan_erasure(c.locate(SUBJECT), TODAY)
    (warning,) = plan.warnings
    assert f"'{STRAY}'" in warning and "does not declare" in warning
    assert {s.target for s in plan.steps} == {SOURCE, STRAY}  # reported and still purged


def test_unreachable_undeclared_destination_is_reported_not_searched(
    s3: S3Client, connector: ConnectorFactory
) -> None:
    _world(s3, STRAY)
    s3.delete_bucket_replication(Bucket=SOURCE)
    _replicate(s3, SOURCE, "bucket-in-another-account")  # no such bucket here
    store = make_store({"name": SOURCE, "key_templates": ["tickets/{customer_id}/"]})
    findings = connector(store).locate(SUBJECT)
    (warning,) = findings.warnings
    assert "bucket-in-another-account" in warning and "not searched" in warning
    assert findings.counts() == {SOURCE: 4}
