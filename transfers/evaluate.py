"""Judge store facts against the transfer policy and the security promises (pure).

Where data may be: its home region group always; elsewhere only along a route declared
for each of its categories, under a safeguard that has not expired. A region reached
only by expired routes is a ``transfer.safeguard-expired`` finding (the route existed,
its legal basis lapsed); a region no route reaches is a ``*-region`` finding. Storage and
transmission must be encrypted: default bucket encryption, a bucket policy refusing
non-TLS requests, the public access block, and SQL connections that require TLS.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

from config.schema.transfers import TransferPolicy, TransferRoute
from connectors.posture_facts import BucketFacts, DatabaseFacts
from transfers.findings import Finding, ordered

PUBLIC_ACCESS_FLAGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


def _route_text(route: TransferRoute) -> str:
    ref = f" {route.reference}" if route.reference else ""
    until = f" (expires {route.expires.isoformat()})" if route.expires else ""
    return f"{route.safeguard}{ref}{until}"


def region_findings(
    policy: TransferPolicy | None,
    *,
    rule: str,
    store: str | None,
    resource: str,
    region: str,
    categories: Sequence[str],
    today: date,
    what: str,
) -> list[Finding]:
    """Findings for data of ``categories`` held in ``region`` (none when every route holds)."""
    if policy is None or region in policy.home_regions():
        return []
    missing: list[str] = []
    expired: list[tuple[str, TransferRoute]] = []
    for category in categories:
        routes = [
            r for r in policy.routes_for(category) if region in policy.regions_of(r.destination)
        ]
        valid = [r for r in routes if r.expires is None or r.expires >= today]
        if valid:
            continue
        if routes:
            expired.append((category, max(routes, key=lambda r: r.expires or date.min)))
        else:
            missing.append(category)
    out: list[Finding] = []
    if missing:
        out.append(
            Finding(
                rule=rule,
                severity="high",
                store=store,
                resource=resource,
                evidence=f"{what} is in {region}, outside {policy.home} with no route for "
                f"{', '.join(missing)}",
                categories=tuple(missing),
                safeguard=f"none: {region} is not an allowed destination",
            )
        )
    if expired:
        out.append(
            Finding(
                rule="transfer.safeguard-expired",
                severity="high",
                store=store,
                resource=resource,
                evidence=f"{what} is in {region}; the only route there has expired: "
                + "; ".join(f"{c}: {_route_text(r)}" for c, r in expired),
                categories=tuple(c for c, _ in expired),
                safeguard="; ".join(_route_text(r) for _, r in expired),
            )
        )
    return out


def _unread(f: BucketFacts, fact: str) -> bool:
    """Whether ``fact`` could not be read: judged as unreadable, not as missing."""
    return any(u.split(":")[0] in (fact, "bucket") for u in f.unreadable)


def _bucket_security(f: BucketFacts) -> Iterable[Finding]:
    where = f"s3://{f.bucket}"
    cats = f.categories
    if f.encryption is None and not _unread(f, "encryption"):
        yield Finding(
            "s3.encryption-missing",
            "high",
            f.store,
            where,
            "no default encryption configured (get_bucket_encryption)",
            cats,
            "encryption at rest",
        )
    if not f.tls_only and not _unread(f, "policy"):
        yield Finding(
            "s3.tls-not-enforced",
            "high",
            f.store,
            where,
            "no bucket policy statement denies requests where aws:SecureTransport is false",
            cats,
            "encryption in transit (TLS-only bucket policy)",
        )
    flags = f.public_access_block or {}
    off = [name for name in PUBLIC_ACCESS_FLAGS if not flags.get(name)]
    if off and not _unread(f, "public access block"):
        state = (
            "no public access block"
            if f.public_access_block is None
            else ("public access block incomplete: " + ", ".join(off) + " off")
        )
        yield Finding(
            "s3.public-access-not-blocked",
            "high",
            f.store,
            where,
            state,
            cats,
            "public access block (all four settings)",
        )
    if f.lifecycle_drift:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(f.lifecycle_drift.items()) if v)
        yield Finding(
            "s3.lifecycle-drift",
            "medium",
            f.store,
            where,
            f"lifecycle rules differ from the retention policy ({counts}); "
            "see lifecycle retention s3-lifecycle",
            cats,
            "retention enforced by S3 lifecycle",
        )
    for problem in f.unreadable:
        yield Finding(
            "s3.unreadable", "medium", f.store, where, f"could not read {problem}", cats, ""
        )


def bucket_findings(f: BucketFacts, policy: TransferPolicy | None, today: date) -> list[Finding]:
    """Everything wrong with one bucket."""
    where = f"s3://{f.bucket}"
    if f.store is None:
        return [
            Finding(
                "s3.unclassified-bucket",
                "medium",
                None,
                where,
                f"bucket in {f.region} is not in the inventory: its data is not classified, "
                "swept or checked",
                (),
                "classification (declare it in inventory.yaml)",
            )
        ]
    out = region_findings(
        policy,
        rule="s3.bucket-region",
        store=f.store,
        resource=where,
        region=f.region,
        categories=f.categories,
        today=today,
        what="bucket",
    )
    if f.declared_region and f.declared_region != f.region:
        out.append(
            Finding(
                "s3.region-mismatch",
                "medium",
                f.store,
                where,
                f"declared in {f.declared_region}, actually in {f.region}",
                f.categories,
                "an accurate inventory",
            )
        )
    for rep in f.replication:
        target = f"{where} -> s3://{rep.destination_bucket}"
        if rep.destination_region is None:
            out.append(
                Finding(
                    "s3.replication-unknown",
                    "medium",
                    f.store,
                    target,
                    f"replication rule {rep.rule_id}: destination region could not be read",
                    f.categories,
                    "",
                )
            )
            continue
        out += region_findings(
            policy,
            rule="s3.replication-region",
            store=f.store,
            resource=target,
            region=rep.destination_region,
            categories=f.categories,
            today=today,
            what=f"replica (rule {rep.rule_id})",
        )
    out += _bucket_security(f)
    return out


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


def evaluate(
    buckets: Iterable[BucketFacts],
    databases: Iterable[DatabaseFacts],
    policy: TransferPolicy | None,
    today: date,
) -> list[Finding]:
    """All findings, high severity first."""
    found: list[Finding] = []
    for b in buckets:
        found += bucket_findings(b, policy, today)
    for d in databases:
        found += database_findings(d, policy, today)
    return ordered(found)
