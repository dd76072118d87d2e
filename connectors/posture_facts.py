"""What the posture check reads from each store: plain facts, judged elsewhere.

Connectors gather these (``connectors.s3.posture``, ``connectors.sql.posture``); the pure
``transfers.evaluate`` turns them into findings against the transfer policy. Facts hold
configuration only (regions, flags, rule ids), never data.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReplicationFact:
    """One replication rule of a bucket and where its destination bucket actually is."""

    rule_id: str
    destination_bucket: str
    destination_region: str | None  # None: the destination could not be read


@dataclass(frozen=True)
class BucketFacts:
    """One bucket as S3 reports it; ``store`` is None for a bucket the inventory lacks."""

    bucket: str
    region: str  # actual (get_bucket_location; None there means us-east-1)
    store: str | None = None
    declared_region: str | None = None
    categories: tuple[str, ...] = ()
    replication: tuple[ReplicationFact, ...] = ()
    encryption: str | None = None  # default encryption algorithm, None when none is set
    tls_only: bool = False  # a policy statement denies requests without aws:SecureTransport
    public_access_block: dict[str, bool] | None = None  # the four flags; None when unset
    lifecycle_drift: dict[str, int] | None = None  # add/change/remove counts; None: in sync
    unreadable: tuple[str, ...] = ()  # facts S3 refused to give (e.g. "encryption: AccessDenied")


@dataclass(frozen=True)
class ReplicaFact:
    """A read replica of an RDS instance and the region it runs in."""

    identifier: str
    region: str


@dataclass(frozen=True)
class DatabaseFacts:
    """One SQL store: where it is declared and found to be, and how it is reached."""

    store: str
    backend: str  # sqlite | postgresql | mysql | mariadb
    declared_region: str
    categories: tuple[str, ...] = ()
    rds_instance: str | None = None
    rds_region: str | None = None  # from the instance ARN (moto reports the source's AZ)
    replicas: tuple[ReplicaFact, ...] = ()
    tls_required: bool | None = None  # None: not over a network (SQLite)
    tls_evidence: str = ""  # e.g. "sslmode=require", "no sslmode in the URL"
    server_ssl_in_use: bool | None = None  # the server's own view, where it can be asked
    loopback: bool = False  # reached on this machine (127.0.0.1, localhost): never on a wire
    unreadable: tuple[str, ...] = field(default=())
