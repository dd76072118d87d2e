"""Judge a processor's posture facts: the provider's region against the transfer policy,
and its data processing agreement (missing, expired, or expiring soon).

The rule ids (``processor.region``, ``processor.dpa-missing``, ``processor.dpa-expired``,
``processor.dpa-expiring``) are stored in the ledger and compared run to run: never rename
one. Pure: no client.
"""

from __future__ import annotations

from datetime import date, timedelta

from config.schema.transfers import TransferPolicy
from connectors.processor.posture_facts import ProcessorFacts
from transfers.evaluate import region_findings
from transfers.findings import Finding

EXPIRING_WITHIN = timedelta(days=30)
"""An agreement ending this soon is a (medium) finding: time to renew it."""
SAFEGUARD = "a data processing agreement (GDPR Art. 28)"


def processor_findings(
    f: ProcessorFacts, policy: TransferPolicy | None, today: date
) -> list[Finding]:
    """Everything wrong with one processor store."""
    where = f"processor:{f.store}"
    out = region_findings(
        policy,
        rule="processor.region",
        store=f.store,
        resource=where,
        region=f.region,
        categories=f.categories,
        today=today,
        what=f"processor {f.provider}",
    )
    expires = f.agreement_expires
    if f.agreement_reference is None or expires is None:
        out.append(
            Finding(
                "processor.dpa-missing",
                "high",
                f.store,
                where,
                f"no data processing agreement declared for {f.provider}",
                f.categories,
                SAFEGUARD,
            )
        )
    elif expires < today:
        out.append(
            Finding(
                "processor.dpa-expired",
                "high",
                f.store,
                where,
                f"data processing agreement {f.agreement_reference} with {f.provider} "
                f"expired on {expires.isoformat()}",
                f.categories,
                SAFEGUARD,
            )
        )
    elif expires - today <= EXPIRING_WITHIN:
        out.append(
            Finding(
                "processor.dpa-expiring",
                "medium",
                f.store,
                where,
                f"data processing agreement {f.agreement_reference} with {f.provider} "
                f"expires on {expires.isoformat()}",
                f.categories,
                SAFEGUARD,
            )
        )
    return out
