"""policy.yaml: data categories, the request policy, retention rules and legal holds.

The transfer policy lives in ``config.schema.transfers``. Shapes and value ranges are
checked here; rules that relate one part of the configuration to another (a retention
rule naming a declared table, an anonymize rule naming declared fields) are checked by
``config.crossref`` with the file and line of the offending field.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from config.durations import Duration
from config.schema.common import (
    BucketName,
    Name,
    NonEmpty,
    RuleId,
    SqlIdent,
    Strict,
    shaped,
)
from config.schema.incidents import IncidentPolicy
from config.schema.stores import Reference, SweepAudit
from config.schema.transfers import TransferPolicy
from core.approver_keys import parse_public_key
from core.pseudonym import Pseudonym

RequestKind = Literal["access", "rectification", "erasure"]
ErasureAction = Literal["delete", "mask", "keep"]
MaskKind = Literal["null", "redact", "hash", "pseudonym"]
RetentionAction = Literal["delete", "anonymize"]
TargetKind = Literal["table", "bucket", "category"]

MAX_DEADLINE_DAYS = 90  # GDPR Art. 12(3): one month, extendable by two further months


class Category(Strict):
    """A data category that fields and buckets are tagged with."""

    name: Name
    description: str | None = None
    personal: bool = True
    high_risk: bool = Field(
        default=False,
        description="A breach of it likely means high risk to people (health, financial, "
        "credentials, children's data): the incident risk rules can ask for it.",
    )


class Approver(Strict):
    """Someone who may decide on requests, and the public key their decisions verify with.

    A plain name (``approvers: [dpo]``, the old form) is an approver without a key: it
    still loads, but such an approver cannot sign, so it can decide only through the
    Prefect UI and only where ``unverified_ui`` allows unsigned decisions.
    """

    name: Annotated[
        str,
        shaped(
            r"^[A-Za-z][A-Za-z0-9._-]*(?: [A-Za-z0-9._-]+)*$",
            "must be a name or role: a letter, then letters, digits, '.', '_', '-' or single "
            "spaces (no contact details)",
            max_length=64,
        ),
    ] = Field(description="The approver's name or role, as the ledger records it.")
    public_key: str | None = Field(
        default=None,
        description="Base64 Ed25519 public key (lifecycle approver keygen); decisions are "
        "verified with it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _plain_name(cls, data: object) -> object:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("public_key")
    @classmethod
    def _a_key(cls, value: str | None) -> str | None:
        if value is not None:
            parse_public_key(value)  # ValueError says what is expected
        return value


class Approval(Strict):
    """Which request kinds wait for a human decision before anything runs, and who decides."""

    required_for: tuple[RequestKind, ...] = ("erasure",)
    auto_approve: bool = Field(
        default=False, description="Approve automatically (demo and test setups only)."
    )
    approvers: tuple[Approver, ...] = Field(
        default=(), description="Who may approve: {name, public_key} (a plain name has no key)."
    )
    unverified_ui: bool = Field(
        default=False,
        description="Accept decisions in the Prefect UI without a signature, recorded as "
        "unverified (the UI's basic auth is one shared password: it does not say who).",
    )

    def approver(self, name: str) -> Approver | None:
        """The approver called ``name`` (compared without case), or None."""
        wanted = name.strip().casefold()
        return next((a for a in self.approvers if a.name.casefold() == wanted), None)


class ErasureRule(Strict):
    """What erasure does to data of one category: delete it, mask it in place, or keep it."""

    action: ErasureAction
    mask: MaskKind | None = Field(default=None, description="How to mask; only with mask.")
    reason: str | None = Field(
        default=None, min_length=1, description="The legal ground for keeping or masking."
    )


class ErasurePolicy(Strict):
    """The erasure rule per data category, with a default for the others."""

    default: ErasureRule = ErasureRule(action="delete")
    categories: dict[Name, ErasureRule] = Field(default_factory=dict)

    def rule_for(self, category: str) -> ErasureRule:
        """The rule for ``category``, falling back to the default."""
        return self.categories.get(category, self.default)


class RequestPolicy(Strict):
    """Deadlines, approval and erasure behaviour for data-subject requests."""

    deadline_days: int = Field(default=30, ge=1)
    max_deadline_days: int = Field(default=MAX_DEADLINE_DAYS, ge=1)
    package_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Days an access package is kept after it is written, for handing to the "
        "subject; then `lifecycle package expire` and the daily request-register run delete it.",
    )
    approval: Approval = Approval()
    erasure: ErasurePolicy = ErasurePolicy()

    @field_validator("max_deadline_days")
    @classmethod
    def _legal_maximum(cls, value: int) -> int:
        if value > MAX_DEADLINE_DAYS:
            raise ValueError(
                f"must be at most {MAX_DEADLINE_DAYS} (one month, extendable by two further months)"
            )
        return value


class MeasuredFrom(Strict):
    """The clock a retention period runs from: a column (possibly via references) or S3."""

    column: SqlIdent | None = None
    via: tuple[Reference, ...] = Field(
        default=(), description="References from the target table to the column's table."
    )
    s3: Literal["last_modified"] | None = None


class RetentionRule(Strict):
    """Data older than ``age`` (from ``measured_from``) is deleted or anonymized.

    The target is exactly one of: ``store`` + ``table``; ``store`` + ``bucket`` (optionally
    narrowed by ``prefix``); or ``category`` (every table field and bucket tagged with it).
    Without ``measured_from`` a table's ``timestamps.created`` or an object's
    last-modified time is the clock.
    """

    id: RuleId
    description: str | None = None
    store: Name | None = None
    table: SqlIdent | None = None
    bucket: BucketName | None = None
    prefix: str | None = Field(default=None, min_length=1)
    category: Name | None = None
    age: Duration
    measured_from: MeasuredFrom | None = None
    action: RetentionAction
    fields: tuple[SqlIdent, ...] = Field(
        default=(), description="Columns to anonymize (action anonymize only)."
    )
    audit: SweepAudit | None = Field(
        default=None,
        description=(
            "What the sweep's ledger records per batch: 'range' (the rule, cut-off, key "
            "range and count) or 'keys' (also a digest of every key). Omitted: the store's "
            "retention_audit. Data under several rules gets 'keys' if any of them asks."
        ),
    )

    @property
    def target_kind(self) -> TargetKind:
        """Which target form the rule uses (validated to be exactly one on load)."""
        if self.table is not None:
            return "table"
        if self.bucket is not None:
            return "bucket"
        return "category"


class HoldScope(Strict):
    """What a legal hold protects; every given condition must match (they narrow)."""

    store: Name | None = None
    table: SqlIdent | None = None
    bucket: BucketName | None = None
    prefix: str | None = Field(default=None, min_length=1)
    tag: Annotated[dict[str, str], NonEmpty] | None = Field(
        default=None, description="Object tags that must all match."
    )
    subject: str | None = Field(default=None, description="A subject's psn_ pseudonym.")

    @field_validator("subject")
    @classmethod
    def _pseudonym_only(cls, value: str | None) -> str | None:
        # Never echo the value: a raw identity written here is personal data.
        if value is not None:
            try:
                Pseudonym.parse(value)
            except ValueError as e:
                raise ValueError(
                    "must be a psn_ pseudonym (psn_ and 32 hex digits), never a raw identity"
                ) from e
        return value

    def is_empty(self) -> bool:
        """A scope with no condition would hold everything: refused on load."""
        return all(v is None for v in self.model_dump().values())


class LegalHold(Strict):
    """A legal hold: matching data is never deleted while the hold is in force."""

    id: RuleId
    reason: str = Field(min_length=1)
    scope: HoldScope
    starts: date
    ends: date | None = Field(default=None, description="Expired holds stop applying.")

    def active_on(self, day: date) -> bool:
        """Whether the hold is in force on ``day`` (both ends inclusive)."""
        return self.starts <= day and (self.ends is None or day <= self.ends)


class Policy(Strict):
    """The root of policy.yaml."""

    categories: Annotated[tuple[Category, ...], NonEmpty]
    requests: RequestPolicy
    retention: tuple[RetentionRule, ...] = ()
    legal_holds: tuple[LegalHold, ...] = ()
    transfers: TransferPolicy | None = None
    incidents: IncidentPolicy = IncidentPolicy()

    def holds_active_on(self, day: date) -> tuple[LegalHold, ...]:
        """The legal holds in force on ``day``."""
        return tuple(hold for hold in self.legal_holds if hold.active_on(day))
