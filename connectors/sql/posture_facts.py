"""What the posture check reads from a SQL store: plain facts, judged by ``posture_rules``.

``connectors.sql.posture`` gathers them; each ``DatabaseFacts`` judges itself against the
transfer policy (``transfers.posture.PostureFacts``). Facts hold configuration only
(regions, flags, identifiers), never data nor the URL. Imports no driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from transfers.at_rest import AtRest

if TYPE_CHECKING:
    from config.schema.transfers import TransferPolicy
    from transfers.findings import Finding


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
    storage_encrypted: bool | None = None  # the RDS instance's StorageEncrypted; None: not read
    storage_kms_key: str | None = None  # the RDS instance's KmsKeyId (a key ARN)
    declared_encrypted: bool | None = None  # the inventory's encryption_at_rest, if declared
    declared_key_held_by: str | None = None

    @property
    def posture_key(self) -> str:
        """The store itself (store names are unique across the inventory)."""
        return f"store:{self.store}"

    @property
    def counted_as(self) -> str:
        return "databases"

    @property
    def at_rest(self) -> AtRest:
        """Storage encryption and who holds its key (``transfers.at_rest``): what the RDS
        instance reports, else what the inventory declares (``encryption_at_rest``)."""
        instance = f"RDS instance {self.rds_instance}"
        if self.storage_encrypted is True:
            held = f"AWS KMS key {self.storage_kms_key}" if self.storage_kms_key else None
            return AtRest(True, held, f"{instance}: StorageEncrypted true")
        if self.storage_encrypted is False:
            return AtRest(False, None, f"{instance}: StorageEncrypted false")
        unread = f"{instance} could not be read; " if self.rds_instance else ""
        if self.declared_encrypted is not None:
            held = self.declared_key_held_by if self.declared_encrypted else None
            evidence = f"{unread}declared in the inventory (encryption_at_rest)"
            return AtRest(self.declared_encrypted, held, evidence)
        return AtRest(None, None, f"{unread}not declared in the inventory (encryption_at_rest)")

    def findings(self, policy: TransferPolicy | None, today: date) -> list[Finding]:
        """Everything wrong with this store (``posture_rules.database_findings``)."""
        from connectors.sql.posture_rules import database_findings

        return database_findings(self, policy, today)
