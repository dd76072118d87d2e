"""What the posture check reads from a SQL store: plain facts, judged by ``posture_rules``.

``connectors.sql.posture`` gathers them; each ``DatabaseFacts`` judges itself against the
transfer policy (``transfers.posture.PostureFacts``). Facts hold configuration only
(regions, flags, identifiers), never data nor the URL. Imports no driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

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

    @property
    def posture_key(self) -> str:
        """The store itself (store names are unique across the inventory)."""
        return f"store:{self.store}"

    @property
    def counted_as(self) -> str:
        return "databases"

    def findings(self, policy: TransferPolicy | None, today: date) -> list[Finding]:
        """Everything wrong with this store (``posture_rules.database_findings``)."""
        from connectors.sql.posture_rules import database_findings

        return database_findings(self, policy, today)
