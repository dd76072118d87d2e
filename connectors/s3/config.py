"""The inventory model of an S3 store (``type: s3``): its buckets and the keys of a subject.

An S3 store lists buckets and the key templates (or the object tag) under which a
subject's objects are found.

Imports only the configuration layer, so loading the configuration never imports boto3
or the connector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from config.schema.common import BucketName, Name, NonEmpty, Region, Strict
from config.schema.stores import CategorySite, IgnoreEntry, StoreConfig, template_placeholders
from core.errors import NotFoundError

if TYPE_CHECKING:
    from incidents.scope import ScopePart


class Replica(Strict):
    """A declared replication destination of a bucket."""

    bucket: BucketName
    region: Region


class Bucket(Strict):
    """A bucket holding personal data and the keys under which a subject's objects live."""

    name: BucketName
    description: str | None = None
    region: Region | None = Field(
        default=None, description="Defaults to the store region (see S3Store.bucket_region)."
    )
    categories: Annotated[tuple[Name, ...], NonEmpty]
    key_templates: tuple[str, ...] = Field(
        default=(), description="Key prefixes with {identity} placeholders, e.g. tickets/{id}/."
    )
    subject_tag: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Object tag key whose value is the subject's pseudonym.",
    )
    replicas: tuple[Replica, ...] = ()
    keys_contain_personal_data: bool = False
    allow_governance_bypass: bool = Field(
        default=False,
        description=(
            "The policy's explicit permission to delete object versions under Object Lock "
            "GOVERNANCE retention (BypassGovernanceRetention) on erasure; off, they are "
            "deferred until their retain-until date. COMPLIANCE retention and object legal "
            "holds are never bypassed."
        ),
    )

    @field_validator("key_templates")
    @classmethod
    def _templates_have_placeholders(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for template in value:
            try:
                names = template_placeholders(template)
            except ValueError as e:
                raise ValueError(f"invalid key template '{template}': {e}") from e
            if not names:
                # Without a placeholder the prefix would match every subject's objects.
                raise ValueError(
                    f"key template '{template}' has no placeholder such as {{customer_id}}"
                )
        return value


class S3Ignore(IgnoreEntry):
    """An inventory-drift exclusion: a bucket (all its findings), a prefix of one bucket, or
    a prefix in every bucket the store reports on."""

    bucket: BucketName | None = None
    prefix: str | None = Field(default=None, min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _names_something(self) -> S3Ignore:
        if self.bucket is None and self.prefix is None:
            raise ValueError("an ignore entry must name a bucket, a prefix, or both")
        return self


class S3Store(StoreConfig):
    """Object storage reached through the S3 API (AWS, or a compatible endpoint)."""

    type: Literal["s3"]
    region: Region
    endpoint_url: SecretStr | None = Field(
        default=None, description="S3 endpoint; empty or absent means the AWS default."
    )
    buckets: Annotated[tuple[Bucket, ...], NonEmpty]
    ignore: tuple[S3Ignore, ...] = Field(
        default=(),
        description=(
            "Reviewed inventory-drift findings that must not return: entries naming a "
            "bucket, a prefix (of one bucket, or of every bucket) and why."
        ),
    )

    policy_parts: ClassVar[tuple[str, ...]] = ("bucket",)
    global_parts: ClassVar[tuple[str, ...]] = ("bucket",)

    @field_validator("endpoint_url", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        # "${LIFECYCLE_S3_ENDPOINT:-}" interpolates to "" when unset: the AWS default.
        return None if value == "" else value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_is_http(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parts = urlsplit(value.get_secret_value())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http(s) URL such as http://127.0.0.1:9000")
        return value

    def bucket(self, name: str) -> Bucket:
        """The declared bucket ``name``; NotFoundError if this store has none."""
        for bucket in self.buckets:
            if bucket.name == name:
                return bucket
        raise NotFoundError(f"store '{self.name}' declares no bucket '{name}'", store=self.name)

    def bucket_region(self, bucket: Bucket) -> str:
        """Where ``bucket`` is declared to live (its own region, else the store's)."""
        return bucket.region or self.region

    def searched_by(self) -> frozenset[str]:
        """An S3 store's keys are found by its key templates' placeholders alone."""
        return frozenset(
            name
            for bucket in self.buckets
            for template in bucket.key_templates
            for name in template_placeholders(template)
        )

    def category_sites(self) -> tuple[CategorySite, ...]:
        return tuple(
            CategorySite(("buckets", j, "categories", k), tag)
            for j, bucket in enumerate(self.buckets)
            for k, tag in enumerate(bucket.categories)
        )

    def scope_problems(self, part: ScopePart) -> list[str]:
        """An incident part here names a declared bucket (any prefix, any window): a table
        part, or a bucket this store does not declare, is refused."""
        if part.store != self.name:
            return [f"{part.label}: store: the part names another store than '{self.name}'"]
        if part.bucket is None:
            return [
                f"{part.label}: table: store '{self.name}' holds buckets, not tables; "
                "name a bucket (and a prefix)"
            ]
        if all(b.name != part.bucket for b in self.buckets):
            return [f"{part.label}: bucket: not declared in store '{self.name}'"]
        return []

    def part_names(self, key: str) -> tuple[str, ...]:
        return tuple(b.name for b in self.buckets) if key == "bucket" else ()
