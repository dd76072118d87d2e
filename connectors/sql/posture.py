"""Posture facts of a SQL store: where it is (declared, RDS, replicas) and how it is reached.

``core.sql_tls.tls_requirement`` reads the URL alone, with the rules of the driver that
will use it; ``server_ssl`` asks the server about the session itself.
``describe_rds`` finds the RDS instance, its read replicas and its storage encryption;
regions come from ARNs, never from availability zones (moto reports a cross-region
replica in its source's zone). Without an RDS instance, encryption at rest is what the
inventory declares (``encryption_at_rest``).
Evidence and problems name options, error classes and codes only: never the URL or a
driver message, either of which may carry a password.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import sqlalchemy as sa
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import Engine

from config.schema.model import LifecycleConfig
from config.schema.stores import StoreConfig
from connectors.sql.config import SqlStore
from connectors.sql.posture_facts import DatabaseFacts, ReplicaFact
from connectors.sql.schema import driver_code
from core.engines import make_engine, normalize_url
from core.sql_tls import tls_requirement

if TYPE_CHECKING:
    from mypy_boto3_rds import RDSClient

RdsClientFactory = Callable[[str], "RDSClient"]
"""Makes a new RDS client for a region, which ``rds_facts`` closes (boto3 by default)."""


def _ask_server_ssl(conn: sa.Connection) -> bool | None:
    backend = conn.dialect.name
    if backend == "postgresql":
        row = conn.execute(
            sa.text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        ).first()
        return None if row is None else bool(row[0])
    if backend in ("mysql", "mariadb"):
        row = conn.execute(sa.text("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).first()
        return None if row is None else bool(row[1])  # the cipher, '' without TLS
    return None


def _server_ssl_checked(engine: Engine) -> tuple[bool | None, str | None]:
    """(the server's answer, the problem met asking it); never a URL or driver message."""
    if engine.dialect.name == "sqlite":
        return None, None
    try:
        conn = engine.connect()
    except Exception as e:  # PyMySQL raises TypeError etc. for bad URL options, unwrapped
        return None, f"connection: {driver_code(e)}"
    try:
        with conn:
            return _ask_server_ssl(conn), None
    except Exception as e:
        return None, f"server SSL status: {driver_code(e)}"


def server_ssl(engine: Engine) -> bool | None:
    """Whether the server reports this session encrypted; None for SQLite or on any error."""
    return _server_ssl_checked(engine)[0]


def _arn_region(arn: str) -> str | None:
    parts = arn.split(":")  # arn:aws:rds:REGION:ACCOUNT:db:NAME
    if len(parts) >= 7 and parts[0] == "arn" and parts[2] == "rds" and parts[3]:
        return parts[3]
    return None


def _default_factory(region: str) -> RDSClient:
    client: RDSClient = boto3.session.Session().client("rds", region_name=region)
    return client


@dataclass(frozen=True)
class RdsInstanceFacts:
    """What one DescribeDBInstances answer says: region, read replicas, storage encryption."""

    region: str | None  # None: not found or not readable (see ``problems``)
    replicas: tuple[ReplicaFact, ...] = ()
    problems: tuple[str, ...] = ()
    storage_encrypted: bool | None = None
    kms_key_id: str | None = None


def describe_rds(
    rds_client_factory: RdsClientFactory | None, instance_id: str, region: str
) -> RdsInstanceFacts:
    """The RDS instance ``instance_id`` as DescribeDBInstances in ``region`` reports it.

    ``region`` is the store's declared one, unless ``instance_id`` is an ARN naming its
    own. Regions come from ARNs: cross-region replicas are listed by ARN, same-region
    ones by plain identifier (same region as the source). Not found is a problem, not
    a search of every region: the inventory should say where the instance is.
    """
    where = _arn_region(instance_id) or region
    client = (rds_client_factory or _default_factory)(where)
    try:
        found = client.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"]
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "ClientError")
        return RdsInstanceFacts(None, problems=(f"RDS instance {instance_id}: {code} in {where}",))
    except BotoCoreError as e:
        problem = f"RDS instance {instance_id}: {type(e).__name__} in {where}"
        return RdsInstanceFacts(None, problems=(problem,))
    finally:
        client.close()
    if not found:
        problem = f"RDS instance {instance_id}: DBInstanceNotFound in {where}"
        return RdsInstanceFacts(None, problems=(problem,))
    instance = found[0]
    # describe_db_instances in a region only finds instances there; the ARN says so too.
    home = _arn_region(instance.get("DBInstanceArn", "")) or where
    replicas = []
    for ident in instance.get("ReadReplicaDBInstanceIdentifiers", []):
        arn_region = _arn_region(ident)
        name = ident.rsplit(":", 1)[-1] if arn_region else ident
        replicas.append(ReplicaFact(identifier=name, region=arn_region or home))
    encrypted = instance.get("StorageEncrypted")
    return RdsInstanceFacts(
        home,
        tuple(replicas),
        storage_encrypted=None if encrypted is None else bool(encrypted),
        kms_key_id=instance.get("KmsKeyId") or None,
    )


def rds_facts(
    rds_client_factory: RdsClientFactory | None, instance_id: str, region: str
) -> tuple[str | None, tuple[ReplicaFact, ...], tuple[str, ...]]:
    """(the instance's region, its read replicas, problems): ``describe_rds`` without the
    storage facts, looked up in ``region`` the same way."""
    found = describe_rds(rds_client_factory, instance_id, region)
    return found.region, found.replicas, found.problems


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def database_facts(
    store: SqlStore, *, engine: Engine | None, rds_client_factory: RdsClientFactory | None = None
) -> DatabaseFacts:
    """Everything the transfer check needs about one SQL store.

    ``engine`` (the store's own) is used to ask the server about SSL; None skips that
    question. RDS is asked only when the store names an instance.
    """
    url = store.url.get_secret_value()
    tls, evidence = tls_requirement(url)
    problems: list[str] = []
    ssl_in_use: bool | None = None
    if engine is not None:
        ssl_in_use, problem = _server_ssl_checked(engine)
        problems += [problem] if problem else []
    rds = RdsInstanceFacts(None)
    if store.rds_instance is not None:
        rds = describe_rds(rds_client_factory, store.rds_instance, store.region)
        problems += rds.problems
    declared = store.encryption_at_rest
    categories = {c for table in store.tables for cats in table.fields.values() for c in cats}
    return DatabaseFacts(
        store=store.name,
        backend=normalize_url(url).get_backend_name(),
        declared_region=store.region,
        categories=tuple(sorted(categories)),
        rds_instance=store.rds_instance,
        rds_region=rds.region,
        replicas=rds.replicas,
        tls_required=tls,
        tls_evidence=evidence,
        server_ssl_in_use=ssl_in_use,
        loopback=normalize_url(url).host in _LOOPBACK,
        unreadable=tuple(problems),
        storage_encrypted=rds.storage_encrypted,
        storage_kms_key=rds.kms_key_id,
        declared_encrypted=declared.encrypted if declared else None,
        declared_key_held_by=declared.key_held_by if declared else None,
    )


def gather_posture(
    config: LifecycleConfig, store: StoreConfig, *, account_wide: bool
) -> list[DatabaseFacts]:
    """The posture hook of SQL stores (``connectors.catalog``): ``database_facts`` on an
    engine of its own. A SQL store has no account-wide facts (``account_wide`` is unused)."""
    if not isinstance(store, SqlStore):
        raise TypeError(f"store '{store.name}' is not a SQL store")
    engine = make_engine(store.url.get_secret_value())
    try:
        return [database_facts(store, engine=engine)]
    finally:
        engine.dispose()
