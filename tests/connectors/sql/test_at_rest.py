"""Encryption at rest of a SQL store (``DatabaseFacts.at_rest``): RDS, else the inventory.

RDS runs in moto (``mock_aws``). AWS behaviour modelled, and where moto 5.2.5 differs:
DescribeDBInstances reports ``StorageEncrypted`` and, when encrypted, ``KmsKeyId`` (the
key's ARN; without one given at creation AWS uses the AWS-managed ``aws/rds`` key and
reports its ARN, moto reports the placeholder ``default_kms_key_id``). An instance that is
not in the declared region is DBInstanceNotFound there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from connectors.sql.config import SqlStore
from connectors.sql.posture import database_facts, describe_rds, rds_facts
from transfers.at_rest import AtRest, at_rest_of

if TYPE_CHECKING:
    from mypy_boto3_rds import RDSClient

HOME = "eu-central-1"
INSTANCE = "crm-db"
URL = "postgresql+psycopg://app:pw@db.example.com:5432/crm?sslmode=require"
Factory = Callable[[str], "RDSClient"]


@pytest.fixture
def rds(monkeypatch: pytest.MonkeyPatch) -> Iterator[Factory]:
    """A factory of moto RDS clients per region (fake credentials, no network)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():

        def factory(region: str) -> RDSClient:
            client: RDSClient = boto3.client("rds", region_name=region)
            return client

        yield factory


def _instance(rds: Factory, **kw: Any) -> None:
    rds(HOME).create_db_instance(
        DBInstanceIdentifier=INSTANCE,
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        AllocatedStorage=20,
        **kw,
    )


def _customer_key() -> str:
    kms = boto3.client("kms", region_name=HOME)
    try:
        return str(kms.create_key(Description="crm storage")["KeyMetadata"]["Arn"])
    finally:
        kms.close()


def _store(*, rds: str | None = None, declared: dict[str, Any] | None = None) -> SqlStore:
    return SqlStore.model_validate(
        {
            "type": "sql",
            "name": "crm",
            "url": URL,
            "region": HOME,
            "rds_instance": rds,
            "encryption_at_rest": declared,
            "tables": [{"name": "customers", "fields": {"email": ["contact"]}}],
        }
    )


def _at_rest(store: SqlStore, rds: Factory | None = None) -> AtRest:
    return database_facts(store, engine=None, rds_client_factory=rds).at_rest


def test_rds_encrypted_with_a_customer_key(rds: Factory) -> None:
    arn = _customer_key()
    _instance(rds, StorageEncrypted=True, KmsKeyId=arn)
    found = describe_rds(rds, INSTANCE, HOME)
    assert (found.storage_encrypted, found.kms_key_id) == (True, arn)
    assert rds_facts(rds, INSTANCE, HOME) == (HOME, (), ())  # the transfer check's view
    assert _at_rest(_store(rds=INSTANCE), rds) == AtRest(
        True, f"AWS KMS key {arn}", f"RDS instance {INSTANCE}: StorageEncrypted true"
    )


def test_rds_encrypted_with_the_default_key(rds: Factory) -> None:
    _instance(rds, StorageEncrypted=True)
    got = _at_rest(_store(rds=INSTANCE), rds)
    assert got.encrypted is True
    assert got.key_held_by == "AWS KMS key default_kms_key_id"  # AWS: the aws/rds key's ARN


def test_rds_unencrypted_wins_over_a_declaration(rds: Factory) -> None:
    _instance(rds, StorageEncrypted=False)
    declared = {"encrypted": True, "key_held_by": "us (LUKS, platform team)"}
    assert _at_rest(_store(rds=INSTANCE, declared=declared), rds) == AtRest(
        False, None, f"RDS instance {INSTANCE}: StorageEncrypted false"
    )


def test_declared_encryption_without_rds() -> None:
    declared = {"encrypted": True, "key_held_by": "us (LUKS, platform team)"}
    assert _at_rest(_store(declared=declared)) == AtRest(
        True, "us (LUKS, platform team)", "declared in the inventory (encryption_at_rest)"
    )
    assert _at_rest(_store(declared={"encrypted": False})) == AtRest(
        False, None, "declared in the inventory (encryption_at_rest)"
    )


def test_nothing_declared_and_no_rds_is_not_known() -> None:
    facts = database_facts(_store(), engine=None)
    assert facts.at_rest == AtRest(None, None, "not declared in the inventory (encryption_at_rest)")
    assert at_rest_of(facts) == facts.at_rest


def test_an_unreadable_instance_falls_back_to_the_declaration(rds: Factory) -> None:
    # No instance in HOME: DBInstanceNotFound, a posture problem; the declaration answers.
    got = _at_rest(_store(rds=INSTANCE, declared={"encrypted": True, "key_held_by": "us"}), rds)
    assert got == AtRest(
        True,
        "us",
        f"RDS instance {INSTANCE} could not be read; declared in the inventory "
        "(encryption_at_rest)",
    )
    assert _at_rest(_store(rds=INSTANCE), rds).encrypted is None
