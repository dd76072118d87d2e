"""What the posture check reads from a bucket: plain facts, judged by ``posture_rules``.

``connectors.s3.posture`` gathers them; each ``BucketFacts`` judges itself against the
transfer policy (``transfers.posture.PostureFacts``). Facts hold configuration only
(regions, flags, rule ids), never data. Imports no driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from transfers.at_rest import AtRest

if TYPE_CHECKING:
    from config.schema.transfers import TransferPolicy
    from transfers.findings import Finding

SSE_S3 = "AES256"
SSE_KMS = {"aws:kms": "SSE-KMS", "aws:kms:dsse": "DSSE-KMS"}
AWS_MANAGED_S3_KEY = "aws/s3"
"""The alias of the AWS-managed KMS key S3 uses when aws:kms names no key."""

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
    kms_key: str | None = None  # default encryption's KMSMasterKeyID (id, ARN or alias)
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

    @property
    def at_rest(self) -> AtRest:
        """Default encryption and who holds its key (``transfers.at_rest``).

        Default encryption applies to objects written after it was set; objects written
        before keep what they were written with, so an old bucket may hold both. A KMS key
        given by id or ARN is taken as customer-managed: telling it from the ``aws/s3``
        key by id alone would take a KMS DescribeKey call the posture check does not make.
        """
        if self.store is None:
            return AtRest(None, None, "not read: the bucket is not in the inventory")
        unread = [u for u in self.unreadable if u.startswith(("encryption:", "bucket:"))]
        if unread:
            return AtRest(None, None, f"default encryption could not be read ({unread[0]})")
        if self.encryption is None:
            return AtRest(
                False,
                None,
                "no default encryption configured: objects are stored unencrypted unless "
                "their upload asked for encryption",
            )
        if self.encryption == SSE_S3:
            return AtRest(True, "AWS (S3-managed keys)", f"default encryption SSE-S3 ({SSE_S3})")
        kind = SSE_KMS.get(self.encryption)
        if kind is None:
            return AtRest(True, None, f"default encryption {self.encryption}: key holder unknown")
        return AtRest(
            True, _kms_holder(self.kms_key), f"default encryption {kind} ({self.encryption})"
        )

    def findings(self, policy: TransferPolicy | None, today: date) -> list[Finding]:
        """Everything wrong with this bucket (``posture_rules.bucket_findings``)."""
        from connectors.s3.posture_rules import bucket_findings

        return bucket_findings(self, policy, today)


def _kms_holder(key: str | None) -> str:
    """Who holds an S3 default-encryption KMS key: AWS for ``aws/s3`` (named or implied)."""
    alias = f"alias/{AWS_MANAGED_S3_KEY}"
    if not key or key in (AWS_MANAGED_S3_KEY, alias) or key.endswith(f":{alias}"):
        return f"AWS KMS key {alias} (AWS-managed)"
    return f"AWS KMS key {key} (customer-managed)"
