"""Judge a SQL store's posture facts: the declared region, the RDS instance and its read
replicas against the transfer policy, and a connection that must require TLS.

The rule ids (``sql.database-region``, ``sql.replica-region``, ...) are stored in the
ledger and compared run to run: never rename one. Pure: no engine, no driver.
"""

from __future__ import annotations

from datetime import date

from config.schema.transfers import TransferPolicy
from connectors.sql.posture_facts import DatabaseFacts
from transfers.evaluate import region_findings
from transfers.findings import Finding


def database_findings(
    f: DatabaseFacts, policy: TransferPolicy | None, today: date
) -> list[Finding]:
    """Everything wrong with one SQL store."""
    out = region_findings(
        policy,
        rule="sql.database-region",
        store=f.store,
        resource=f.store,
        region=f.declared_region,
        categories=f.categories,
        today=today,
        what="database",
    )
    if f.rds_instance is not None and f.rds_region is not None:
        where = f"rds:{f.rds_instance}"
        if f.rds_region != f.declared_region:
            out.append(
                Finding(
                    "sql.region-mismatch",
                    "medium",
                    f.store,
                    where,
                    f"declared in {f.declared_region}, the RDS instance is in {f.rds_region}",
                    f.categories,
                    "an accurate inventory",
                )
            )
            out += region_findings(
                policy,
                rule="sql.database-region",
                store=f.store,
                resource=where,
                region=f.rds_region,
                categories=f.categories,
                today=today,
                what="RDS instance",
            )
        for replica in f.replicas:
            out += region_findings(
                policy,
                rule="sql.replica-region",
                store=f.store,
                resource=f"rds:{replica.identifier}",
                region=replica.region,
                categories=f.categories,
                today=today,
                what=f"read replica of {f.rds_instance}",
            )
    if f.tls_required is False:
        server: dict[bool | None, str] = {
            True: "; the server reports SSL in use",
            False: "; the server reports no SSL",
        }
        out.append(
            Finding(
                "sql.tls-not-required",
                "medium" if f.loopback else "high",
                f.store,
                f.store,
                f"the connection does not require TLS ({f.tls_evidence})"
                + ("; the server is on this machine (loopback)" if f.loopback else "")
                + server.get(f.server_ssl_in_use, ""),
                f.categories,
                "encryption in transit (TLS required by the client)",
            )
        )
    for problem in f.unreadable:
        out.append(
            Finding(
                "sql.unreadable",
                "medium",
                f.store,
                f.store,
                f"could not read {problem}",
                f.categories,
                "",
            )
        )
    return out
