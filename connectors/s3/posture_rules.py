"""Judge a bucket's posture facts: region and replicas against the transfer policy, and
the security promises (default encryption, a bucket policy refusing non-TLS requests,
the public access block, lifecycle rules in step with the retention policy).

The rule ids (``s3.bucket-region``, ``s3.tls-not-enforced``, ...) are stored in the ledger
and compared run to run: never rename one. Pure: no client, no driver.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from config.schema.transfers import TransferPolicy
from connectors.s3.posture_facts import PUBLIC_ACCESS_FLAGS, BucketFacts
from transfers.evaluate import region_findings
from transfers.findings import Finding


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
