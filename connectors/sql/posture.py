"""Posture facts of a SQL store: where it is (declared, RDS, replicas) and how it is reached.

``tls_requirement`` reads the URL alone, with the rules of the driver that will use it: the
product ships psycopg 3 (libpq) and PyMySQL, whose URL options differ from mysqlclient's
and MariaDB Connector/Python's. ``server_ssl`` asks the server about the session itself.
``rds_facts`` finds the RDS instance and its read replicas; regions come from ARNs, never
from availability zones (moto reports a cross-region replica in its source's zone).
Evidence and problems name options, error classes and codes only: never the URL or a
driver message, either of which may carry a password.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import boto3
import sqlalchemy as sa
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import Engine

from config.schema import SqlStore
from connectors.posture_facts import DatabaseFacts, ReplicaFact
from connectors.sql.schema import driver_code
from core.engines import normalize_url

if TYPE_CHECKING:
    from mypy_boto3_rds import RDSClient

RdsClientFactory = Callable[[str], "RDSClient"]
"""Makes a new RDS client for a region, which ``rds_facts`` closes (boto3 by default)."""

Tls = tuple[bool | None, str]
_LIBPQ_DRIVERS = frozenset({"psycopg", "psycopg2", "psycopg2cffi"})
_PG_REQUIRED = ("require", "verify-ca", "verify-full")
_PG_OPTIONAL = ("disable", "allow", "prefer")
_MYSQL_MODES = {
    "REQUIRED": True,
    "VERIFY_CA": True,
    "VERIFY_IDENTITY": True,
    "DISABLED": False,
    "PREFERRED": False,
}
# SQLAlchemy's MySQL dialects gather these URL options into the driver's ``ssl`` dict;
# PyMySQL requires TLS whenever that dict is non-empty (whatever the values).
_SSL_DICT_KEYS = ("ssl_ca", "ssl_cert", "ssl_key", "ssl_capath", "ssl_cipher")
_PYMYSQL_DICT_KEYS = (*_SSL_DICT_KEYS, "ssl_check_hostname")
_PYMYSQL_FLAGS = ("ssl_verify_cert", "ssl_verify_identity")  # passed through as strings
_MARIADB_KEYS = ("ssl", "ssl_ca", "ssl_cert", "ssl_key", "ssl_capath", "ssl_verify_cert")
_FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


def _opt(query: Mapping[str, str | tuple[str, ...]], key: str) -> str | None:
    # A repeated option reaches the driver as a tuple: libpq rejects it as a value (so
    # does the joined text below), PyMySQL takes it as true, like any non-empty value.
    value = query.get(key)
    return ",".join(value) if isinstance(value, tuple) else value


def _libpq_tls(query: Mapping[str, str | tuple[str, ...]], host: str | None) -> Tls:
    socket_hosts = (_opt(query, "host") or "").split(",")
    if host is None and all(h.startswith("/") for h in socket_hosts):
        return None, "Unix-domain socket (libpq ignores sslmode there)"
    mode = _opt(query, "sslmode")
    if mode is None:
        if _opt(query, "sslrootcert") == "system":
            return True, "sslrootcert=system (libpq then defaults to sslmode=verify-full)"
        return False, "no sslmode in the URL (libpq falls back to PGSSLMODE, else prefer)"
    if mode in _PG_REQUIRED or mode in _PG_OPTIONAL:
        return mode in _PG_REQUIRED, f"sslmode={mode}"
    return False, "sslmode has a value libpq rejects (connecting fails)"


def _pymysql_tls(query: Mapping[str, str | tuple[str, ...]]) -> Tls:
    if "ssl_mode" in query:
        return False, "ssl_mode is not a PyMySQL option (connecting fails); set ssl_ca"
    if _opt(query, "ssl_disabled"):
        return False, "ssl_disabled is set (PyMySQL turns TLS off for any value, even 'false')"
    named = [k for k in _PYMYSQL_DICT_KEYS if k in query]
    named += [k for k in _PYMYSQL_FLAGS if _opt(query, k)]
    if named:
        return True, f"{', '.join(named)} in the URL (PyMySQL then requires TLS)"
    if "ssl" in query:
        return False, "ssl in the URL is not usable by PyMySQL (connecting fails); set ssl_ca"
    return False, "no ssl_* option in the URL (PyMySQL tries TLS, falls back to plain)"


def _other_mysql_tls(driver: str, query: Mapping[str, str | tuple[str, ...]]) -> Tls:
    mode = (_opt(query, "ssl_mode") or "").upper()
    if driver == "mysqldb" and mode in _MYSQL_MODES:
        return _MYSQL_MODES[mode], f"ssl_mode={mode}"
    keys = _SSL_DICT_KEYS if driver == "mysqldb" else _MARIADB_KEYS
    named = [k for k in keys if (_opt(query, k) or "").lower() not in _FALSE_WORDS]
    if named:
        return True, f"{', '.join(named)} in the URL ({driver} then requires TLS)"
    return False, f"no TLS option of the {driver} driver in the URL"


def _mysql_tls(driver: str, query: Mapping[str, str | tuple[str, ...]]) -> Tls:
    if _opt(query, "unix_socket"):
        return None, "Unix-domain socket"
    if driver == "pymysql":
        return _pymysql_tls(query)
    if driver in ("mysqldb", "mariadbconnector"):
        return _other_mysql_tls(driver, query)
    return False, f"driver {driver}: its TLS options are not recognised"


def tls_requirement(url: str) -> Tls:
    """Whether the URL makes the driver refuse a connection without TLS, and the option why.

    None for SQLite and Unix-domain sockets (nothing crosses a network).
    """
    parsed = normalize_url(url)
    backend, driver, query = parsed.get_backend_name(), parsed.get_driver_name(), parsed.query
    if backend == "sqlite":
        return None, "local file"
    if backend in ("mysql", "mariadb"):
        return _mysql_tls(driver, query)
    if backend == "postgresql" and driver in _LIBPQ_DRIVERS:
        return _libpq_tls(query, parsed.host)
    return False, f"{backend}+{driver}: its TLS options are not recognised"


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


def rds_facts(
    rds_client_factory: RdsClientFactory | None, instance_id: str, region: str
) -> tuple[str | None, tuple[ReplicaFact, ...], tuple[str, ...]]:
    """(the instance's region, its read replicas, problems), looked up in ``region``.

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
        return None, (), (f"RDS instance {instance_id}: {code} in {where}",)
    except BotoCoreError as e:
        return None, (), (f"RDS instance {instance_id}: {type(e).__name__} in {where}",)
    finally:
        client.close()
    if not found:
        return None, (), (f"RDS instance {instance_id}: DBInstanceNotFound in {where}",)
    instance = found[0]
    # describe_db_instances in a region only finds instances there; the ARN says so too.
    home = _arn_region(instance.get("DBInstanceArn", "")) or where
    replicas = []
    for ident in instance.get("ReadReplicaDBInstanceIdentifiers", []):
        arn_region = _arn_region(ident)
        name = ident.rsplit(":", 1)[-1] if arn_region else ident
        replicas.append(ReplicaFact(identifier=name, region=arn_region or home))
    return home, tuple(replicas), ()


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
    rds_region: str | None = None
    replicas: tuple[ReplicaFact, ...] = ()
    if store.rds_instance is not None:
        rds_region, replicas, rds_problems = rds_facts(
            rds_client_factory, store.rds_instance, store.region
        )
        problems += rds_problems
    categories = {c for table in store.tables for cats in table.fields.values() for c in cats}
    return DatabaseFacts(
        store=store.name,
        backend=normalize_url(url).get_backend_name(),
        declared_region=store.region,
        categories=tuple(sorted(categories)),
        rds_instance=store.rds_instance,
        rds_region=rds_region,
        replicas=replicas,
        tls_required=tls,
        tls_evidence=evidence,
        server_ssl_in_use=ssl_in_use,
        loopback=normalize_url(url).host in _LOOPBACK,
        unreadable=tuple(problems),
    )
