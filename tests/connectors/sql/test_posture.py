"""SQL posture facts: TLS from the URL, SSL as the server sees it, RDS regions, then judged.

The TLS rules are checked twice: as a table over URLs, and against the real local servers
(which have no TLS): whatever the URL is said to require must make the shipped driver
refuse to connect, and whatever is said not to require TLS must connect in plain text.
RDS runs in moto (``mock_aws``); each test says which AWS behaviour it models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import certifi
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto import mock_aws
from sqlalchemy.engine import make_url

from config.loader import load_config
from config.schema.transfers import TransferPolicy
from config.settings import PROJECT_ROOT
from connectors.sql.config import SqlStore
from connectors.sql.posture import database_facts, rds_facts, server_ssl
from connectors.sql.posture_facts import DatabaseFacts, ReplicaFact
from core.engines import make_engine
from core.sql_tls import tls_requirement
from transfers.evaluate import evaluate

if TYPE_CHECKING:
    from mypy_boto3_rds import RDSClient

PASSWORD = "s3cr3t-pw"
PG = f"postgresql+psycopg://app:{PASSWORD}@db.example.com:5432/crm"
MY = f"mysql+pymysql://app:{PASSWORD}@db.example.com:3306/crm"
HOME = "eu-central-1"
TODAY = date(2026, 1, 15)  # the demo's SCC route to us-east-1 (contact) runs to 2027-06-30
PRIMARY = "crm-db"
FIELDS = {"email": ["contact"], "address": ["contact", "order_history"]}

TLS_CASES: list[tuple[str, bool | None, str]] = [
    # PostgreSQL through psycopg 3 (libpq): sslmode decides; the libpq default is prefer.
    (PG, False, "no sslmode in the URL"),
    (f"postgresql://app:{PASSWORD}@db.example.com/crm", False, "no sslmode in the URL"),
    (f"{PG}?sslmode=disable", False, "sslmode=disable"),
    (f"{PG}?sslmode=allow", False, "sslmode=allow"),
    (f"{PG}?sslmode=prefer", False, "sslmode=prefer"),
    (f"{PG}?sslmode=require", True, "sslmode=require"),
    (f"{PG}?sslmode=verify-ca&sslrootcert=/etc/ca.pem", True, "sslmode=verify-ca"),
    (f"{PG}?sslmode=verify-full", True, "sslmode=verify-full"),
    (f"postgres://app:{PASSWORD}@db.example.com/crm?sslmode=require", True, "sslmode=require"),
    (f"{PG}?sslrootcert=system", True, "sslrootcert=system"),
    (f"{PG}?sslmode=REQUIRE", False, "libpq rejects"),  # libpq modes are lower case
    (f"{PG}?sslmode=require&sslmode=disable", False, "libpq rejects"),  # a tuple value
    (f"postgresql+psycopg://app:{PASSWORD}@/crm?host=/run/postgresql", None, "Unix-domain"),
    (f"postgresql+asyncpg://app:{PASSWORD}@db/crm?ssl=require", False, "not recognised"),
    # MySQL/MariaDB through PyMySQL: any ssl dict key or a non-empty verify flag requires TLS.
    (MY, False, "no ssl_* option in the URL"),
    (f"mysql://app:{PASSWORD}@db.example.com/crm", False, "no ssl_* option in the URL"),
    (f"{MY}?ssl_ca=/etc/ca.pem", True, "ssl_ca in the URL"),
    (f"{MY}?ssl_cert=/c.pem&ssl_key=/k.pem", True, "ssl_cert, ssl_key in the URL"),
    (f"{MY}?ssl_verify_cert=true", True, "ssl_verify_cert"),
    (f"{MY}?ssl_verify_cert=false", True, "ssl_verify_cert"),  # PyMySQL: a non-empty string
    (f"{MY}?ssl_verify_identity=true", True, "ssl_verify_identity"),
    (f"{MY}?ssl_check_hostname=false", True, "ssl_check_hostname"),
    (f"{MY}?ssl_disabled=false", False, "ssl_disabled is set"),
    (f"{MY}?ssl_ca=/etc/ca.pem&ssl_disabled=true", False, "ssl_disabled is set"),
    (f"{MY}?ssl_mode=REQUIRED", False, "ssl_mode is not a PyMySQL option"),
    (f"{MY}?ssl=true", False, "not usable by PyMySQL"),
    (f"mariadb://app:{PASSWORD}@db.example.com/crm?ssl_ca=/etc/ca.pem", True, "ssl_ca"),
    (f"{MY}?unix_socket=/run/mysqld/mysqld.sock", None, "Unix-domain socket"),
    # Drivers the product does not ship, read by their own rules.
    (f"mysql+mysqldb://app:{PASSWORD}@db/crm?ssl_mode=REQUIRED", True, "ssl_mode=REQUIRED"),
    (f"mysql+mysqldb://app:{PASSWORD}@db/crm?ssl_mode=verify_identity", True, "VERIFY_IDENTITY"),
    (f"mysql+mysqldb://app:{PASSWORD}@db/crm?ssl_mode=PREFERRED", False, "ssl_mode=PREFERRED"),
    (f"mysql+mysqldb://app:{PASSWORD}@db/crm?ssl_ca=/etc/ca.pem", True, "ssl_ca"),
    (f"mysql+mysqldb://app:{PASSWORD}@db/crm", False, "no TLS option of the mysqldb"),
    (f"mariadb+mariadbconnector://app:{PASSWORD}@db/crm?ssl=true", True, "ssl in the URL"),
    (f"mariadb+mariadbconnector://app:{PASSWORD}@db/crm?ssl=false", False, "no TLS option"),
    ("sqlite:///var/crm.db", None, "local file"),
    ("sqlite://", None, "local file"),
]


@pytest.mark.parametrize(("url", "required", "evidence"), TLS_CASES)
def test_tls_requirement_from_the_url(url: str, required: bool | None, evidence: str) -> None:
    got, text = tls_requirement(url)
    assert got is required
    assert evidence in text
    assert PASSWORD not in text and "app:" not in text


def _store(url: str, *, rds: str | None = None, fields: dict[str, Any] | None = None) -> SqlStore:
    return SqlStore.model_validate(
        {
            "type": "sql",
            "name": "crm",
            "url": url,
            "region": HOME,
            "rds_instance": rds,
            "tables": [{"name": "customers", "fields": fields or FIELDS}],
        }
    )


def _facts(url: str, **kw: Any) -> DatabaseFacts:
    engine = make_engine(url)
    try:
        return database_facts(_store(url), engine=engine, **kw)
    finally:
        engine.dispose()


@pytest.mark.service
@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_server_reports_no_ssl(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_url" if backend == "postgresql" else "mariadb_url")
    engine = make_engine(url)
    try:
        assert server_ssl(engine) is False
    finally:
        engine.dispose()
    facts = _facts(url)
    assert facts.tls_required is False and facts.server_ssl_in_use is False
    assert facts.categories == ("contact", "order_history")
    assert facts.backend == ("postgresql" if backend == "postgresql" else "mysql")
    assert facts.unreadable == () and facts.rds_region is None


def test_sqlite_is_not_asked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = make_engine(url)
    try:
        assert server_ssl(engine) is None
    finally:
        engine.dispose()
    facts = _facts(url)
    assert (facts.backend, facts.tls_required, facts.tls_evidence) == ("sqlite", None, "local file")
    assert facts.server_ssl_in_use is None and facts.unreadable == ()


def test_unreachable_server_is_unreadable_without_the_password() -> None:
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:1/crm?connect_timeout=2"
    engine = make_engine(url)
    try:
        assert server_ssl(engine) is None
    finally:
        engine.dispose()
    facts = _facts(url)
    assert facts.server_ssl_in_use is None
    assert facts.unreadable == ("connection: OperationalError",)
    assert not database_facts(_store(url), engine=None).unreadable  # not asked: no problem


# Live cross-check of the table: (query, whether the shipped driver then refuses the
# local servers, which offer no TLS). Refusals of a False row are URLs the driver rejects.
LIVE_PG = ["", "sslmode=disable", "sslmode=prefer", "sslmode=require", "sslrootcert=system"]
LIVE_PG += ["sslmode=verify-full", "sslmode=bogus"]
LIVE_MY = ["", "ssl_disabled=false", "ssl_verify_cert=true", "ssl_verify_cert=false"]
LIVE_MY += ["ssl_check_hostname=false", "ssl_verify_identity=true", f"ssl_ca={certifi.where()}"]
LIVE_MY += ["ssl_mode=REQUIRED", "ssl=true"]


def _live(url: str, query: str) -> None:
    full = f"{url}?{query}" if query else url
    required, evidence = tls_requirement(full)
    facts = _facts(full)
    refused = [p for p in facts.unreadable if p.startswith("connection: ")]
    if required:  # the driver must refuse a server without TLS
        assert refused and facts.server_ssl_in_use is None, evidence
    elif "connecting fails" in evidence:
        assert refused, evidence
    else:  # plain text accepted: exactly what the finding says
        assert not refused and facts.server_ssl_in_use is False, evidence
    assert all(PASSWORD not in p and "root@" not in p for p in facts.unreadable)


@pytest.mark.service
@pytest.mark.parametrize("query", LIVE_PG)
def test_libpq_rules_hold_on_the_real_server(pg_url: str, query: str) -> None:
    # trust authentication ignores the password; it must still never surface.
    _live(make_url(pg_url).set(password=PASSWORD).render_as_string(False), query)


@pytest.mark.service
@pytest.mark.parametrize("query", LIVE_MY)
def test_pymysql_rules_hold_on_the_real_server(mariadb_url: str, query: str) -> None:
    _live(mariadb_url, query)


# --- RDS (moto) -----------------------------------------------------------------------

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


def _world(rds: Factory, replica_regions: tuple[str, ...]) -> str:
    """PRIMARY in HOME and a read replica per region (``crm-db-<region>``); the source ARN."""
    home = rds(HOME)
    arn = home.create_db_instance(
        DBInstanceIdentifier=PRIMARY,
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="app",
        MasterUserPassword=PASSWORD,
        AllocatedStorage=20,
    )["DBInstance"]["DBInstanceArn"]
    for region in replica_regions:
        # AWS: a same-region replica may name its source by identifier; a cross-region one
        # is created in the destination region and must name its source by ARN.
        rds(region).create_db_instance_read_replica(
            DBInstanceIdentifier=f"{PRIMARY}-{region}",
            SourceDBInstanceIdentifier=PRIMARY if region == HOME else arn,
        )
    return arn


def test_replicas_get_their_regions_from_arns(rds: Factory) -> None:
    _world(rds, (HOME, "us-east-1"))
    listed = rds(HOME).describe_db_instances(DBInstanceIdentifier=PRIMARY)["DBInstances"][0]
    # AWS (and moto 5.2.5): the source lists a same-region replica by identifier and a
    # cross-region one by ARN.
    assert listed["ReadReplicaDBInstanceIdentifiers"] == [
        f"{PRIMARY}-{HOME}",
        f"arn:aws:rds:us-east-1:123456789012:db:{PRIMARY}-us-east-1",
    ]
    # moto 5.2.5 quirk (AWS differs): the cross-region replica reports its source's zone.
    remote = rds("us-east-1").describe_db_instances(DBInstanceIdentifier=f"{PRIMARY}-us-east-1")
    assert remote["DBInstances"][0]["AvailabilityZone"].startswith(HOME)

    region, replicas, unreadable = rds_facts(rds, PRIMARY, HOME)
    assert (region, unreadable) == (HOME, ())
    assert replicas == (
        ReplicaFact(f"{PRIMARY}-{HOME}", HOME),
        ReplicaFact(f"{PRIMARY}-us-east-1", "us-east-1"),
    )


def test_instance_missing_from_the_declared_region(rds: Factory) -> None:
    # AWS: DescribeDBInstances is regional; an instance elsewhere is DBInstanceNotFound.
    rds("us-east-1").create_db_instance(
        DBInstanceIdentifier=PRIMARY, DBInstanceClass="db.t3.micro", Engine="postgres"
    )
    assert rds_facts(rds, PRIMARY, HOME) == (
        None,
        (),
        (f"RDS instance {PRIMARY}: DBInstanceNotFound in {HOME}",),
    )
    # An ARN names its own region, and is accepted as DBInstanceIdentifier.
    arn = f"arn:aws:rds:us-east-1:123456789012:db:{PRIMARY}"
    assert rds_facts(rds, arn, HOME) == ("us-east-1", (), ())


def test_rds_errors_name_the_code_only() -> None:
    client = boto3.client("rds", region_name=HOME, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:  # AWS: a role without rds:DescribeDBInstances
        stub.add_client_error("describe_db_instances", service_error_code="AccessDenied")
        got = rds_facts(lambda _region: client, PRIMARY, HOME)
    assert got == (None, (), (f"RDS instance {PRIMARY}: AccessDenied in {HOME}",))

    def unreachable(region: str) -> RDSClient:  # no route to the RDS endpoint
        c: RDSClient = boto3.client(
            "rds",
            region_name=region,
            endpoint_url="http://127.0.0.1:1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2),
        )
        return c

    problem = rds_facts(unreachable, PRIMARY, HOME)[2]
    assert problem == (f"RDS instance {PRIMARY}: EndpointConnectionError in {HOME}",)


# --- judged against the demo transfer policy ---------------------------------------------


@pytest.fixture
def policy() -> TransferPolicy:
    transfers = load_config(PROJECT_ROOT / "config" / "demo").policy.transfers
    assert transfers is not None
    return transfers


@pytest.mark.service
def test_pg_without_sslmode_is_flagged(pg_url: str, policy: TransferPolicy) -> None:
    facts = _facts(pg_url)
    findings = evaluate([facts], policy, TODAY)
    assert [f.rule for f in findings] == ["sql.tls-not-required"]
    assert findings[0].evidence == (
        "the connection does not require TLS (no sslmode in the URL (libpq falls back to "
        "PGSSLMODE, else prefer)); the server is on this machine (loopback); "
        "the server reports no SSL"
    )
    assert findings[0].severity == "medium"  # 127.0.0.1: the traffic never leaves the host
    remote = replace(facts, loopback=False)
    assert [f.severity for f in evaluate([remote], policy, TODAY)] == ["high"]


def test_replica_outside_any_route_is_flagged(rds: Factory, policy: TransferPolicy) -> None:
    # contact may go to us-east-1 (SCC until 2027-06-30) but nowhere in us-west-2.
    _world(rds, ("us-east-1", "us-west-2"))
    store = _store(f"{PG}?sslmode=require", rds=PRIMARY, fields={"email": ["contact"]})
    facts = database_facts(store, engine=None, rds_client_factory=rds)
    assert facts.rds_region == HOME and len(facts.replicas) == 2
    findings = evaluate([facts], policy, TODAY)
    assert [(f.rule, f.resource) for f in findings] == [
        ("sql.replica-region", f"rds:{PRIMARY}-us-west-2")
    ]
    assert findings[0].categories == ("contact",)


def test_compliant_store_has_no_findings(rds: Factory, policy: TransferPolicy) -> None:
    _world(rds, (HOME, "eu-west-1"))
    store = _store(f"{PG}?sslmode=verify-full", rds=PRIMARY)
    facts = database_facts(store, engine=None, rds_client_factory=rds)
    assert facts.replicas == (
        ReplicaFact(f"{PRIMARY}-{HOME}", HOME),
        ReplicaFact(f"{PRIMARY}-eu-west-1", "eu-west-1"),
    )
    assert evaluate([facts], policy, TODAY) == []


def test_missing_instance_is_judged_unreadable(rds: Factory, policy: TransferPolicy) -> None:
    store = _store(f"{PG}?sslmode=require", rds=PRIMARY)
    facts = database_facts(store, engine=None, rds_client_factory=rds)
    findings = evaluate([facts], policy, TODAY)
    assert [(f.rule, f.evidence) for f in findings] == [
        ("sql.unreadable", f"could not read RDS instance {PRIMARY}: DBInstanceNotFound in {HOME}")
    ]
