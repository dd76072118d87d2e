"""What the posture check reads from a bucket: plain facts, judged by ``posture_rules``.

``connectors.s3.posture`` gathers them; each ``BucketFacts`` judges itself against the
transfer policy (``transfers.posture.PostureFacts``). Facts hold configuration only
(regions, flags, rule ids), never data. Imports no driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.schema.transfers import TransferPolicy
    from transfers.findings import Finding

PUBLIC_ACCESS_FLAGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


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

    @property
    def posture_key(self) -> str:
        """The bucket: two stores (or a store and the account listing) name it once."""
        return f"s3://{self.bucket}"

    @property
    def counted_as(self) -> str:
        return "buckets"

    def findings(self, policy: TransferPolicy | None, today: date) -> list[Finding]:
        """Everything wrong with this bucket (``posture_rules.bucket_findings``)."""
        from connectors.s3.posture_rules import bucket_findings

        return bucket_findings(self, policy, today)
