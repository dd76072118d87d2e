"""inventory.yaml: the data stores, where they live, and where personal data sits in them.

A SQL store lists its tables: which columns identify a subject directly (``identity``),
which values become identities for other stores (``derives``, e.g. ``customers.id`` as
``customer_id``), extra references beyond the reflected foreign keys, and which columns
hold which data categories. An S3 store lists buckets and the key templates under which
a subject's objects are found.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from config.schema.common import (
    BucketName,
    IdentName,
    Name,
    NonEmpty,
    Region,
    SqlIdent,
    Strict,
)
from core.errors import NotFoundError
from core.identity_values import IdentityFormat, infer_format


def template_placeholders(template: str) -> list[str]:
    """The ``{placeholder}`` names in a key template, in order; ValueError if malformed."""
    names: list[str] = []
    for _literal, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ValueError(
                "placeholders must be plain names such as {customer_id}, "
                "without format specs or conversions"
            )
        names.append(field)
    return names


class IdentityColumn(Strict):
    """A column whose value identifies a subject directly (looked up by the request)."""

    column: SqlIdent
    kind: IdentName = Field(description="Identity kind, e.g. email, phone, customer_number.")
    case_insensitive: bool = False
    format: IdentityFormat | None = Field(
        default=None,
        description=(
            "What the kind's values look like, checked and normalized at intake: email, "
            "phone (E.164; the column must hold E.164), text or integer. Omitted: email for "
            "kind email or *_email, phone for phone or *_phone, otherwise text. Every "
            "column of one kind must resolve to the same format."
        ),
    )

    def value_format(self) -> IdentityFormat:
        """The effective format: the declared one, else inferred from the kind's name."""
        return self.format if self.format is not None else infer_format(self.kind)


class DerivedIdentity(Strict):
    """A column whose value, once a subject's row is found, identifies them elsewhere."""

    model_config = Strict.model_config | {"validate_by_name": True, "validate_by_alias": True}

    column: SqlIdent
    name: IdentName = Field(alias="as", description="Name under which other stores use it.")


class Reference(Strict):
    """``columns`` of this table point at ``to_columns`` of ``table`` (same store)."""

    columns: Annotated[tuple[SqlIdent, ...], NonEmpty]
    table: SqlIdent
    to_columns: Annotated[tuple[SqlIdent, ...], NonEmpty]


Follow = Literal["holders", "target", "none"]


class TableReference(Reference):
    """A reference this table holds (declared, or annotating a reflected foreign key)."""

    follow: Follow | None = Field(
        default=None,
        description=(
            "Which way locate follows it: 'holders' (rows holding it to an owned row are "
            "owned), 'target' (the row an owned row points at is linked), 'none'. Omitted: "
            "the default the README's References section gives."
        ),
    )


class Timestamps(Strict):
    """Informative timestamp columns; ``created`` is the default retention clock."""

    created: SqlIdent | None = None
    updated: SqlIdent | None = None


class Table(Strict):
    """A table holding personal data and how subjects are found in it."""

    name: SqlIdent
    description: str | None = None
    primary_key: Annotated[tuple[SqlIdent, ...], NonEmpty] | None = Field(
        default=None, description="Defaults to the reflected primary key."
    )
    identity: tuple[IdentityColumn, ...] = ()
    derives: tuple[DerivedIdentity, ...] = ()
    references: tuple[TableReference, ...] = ()
    fields: dict[SqlIdent, tuple[Name, ...]] = Field(
        default_factory=dict, description="Personal columns and their data categories."
    )
    timestamps: Timestamps | None = None

    def fields_in(self, category: str) -> tuple[str, ...]:
        """The columns of this table that hold ``category`` data."""
        return tuple(col for col, cats in self.fields.items() if category in cats)


class SqlStore(Strict):
    """A relational database reached through SQLAlchemy."""

    type: Literal["sql"]
    name: Name
    description: str | None = None
    url: SecretStr = Field(description="SQLAlchemy URL; may carry a password, so secret.")
    region: Region = Field(description="Where the data is declared to live.")
    rds_instance: str | None = Field(
        default=None, description="RDS DB instance identifier, for transfer checks."
    )
    require_tls: bool = Field(
        default=False,
        description=(
            "Refuse a url that lets the driver connect without TLS (checked when the "
            "config loads; a local file or Unix socket needs none)."
        ),
    )
    vacuum_after_erasure: bool = Field(
        default=False,
        description=(
            "After an erasure, rewrite storage so erased values cannot be recovered from it: "
            "VACUUM the touched tables (PostgreSQL), OPTIMIZE TABLE (MySQL/MariaDB), VACUUM "
            "the file (SQLite; erased rows are already zeroed by secure_delete). Costs I/O "
            "proportional to the tables' size; off, dead row versions stay until autovacuum "
            "or InnoDB purge and page reuse. WAL archives and backups keep old values until "
            "they expire either way."
        ),
    )
    tables: Annotated[tuple[Table, ...], NonEmpty]

    @field_validator("url")
    @classmethod
    def _url_parses(cls, value: SecretStr) -> SecretStr:
        # The message must not echo the URL: it may hold a password.
        try:
            make_url(value.get_secret_value())
        except ArgumentError as e:
            raise ValueError("not a valid SQLAlchemy database URL") from e
        return value

    def table(self, name: str) -> Table:
        """The declared table ``name``; NotFoundError if this store has none."""
        for table in self.tables:
            if table.name == name:
                return table
        raise NotFoundError(f"store '{self.name}' declares no table '{name}'", store=self.name)


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


class S3Store(Strict):
    """Object storage reached through the S3 API (AWS, or a compatible endpoint)."""

    type: Literal["s3"]
    name: Name
    description: str | None = None
    region: Region
    endpoint_url: SecretStr | None = Field(
        default=None, description="S3 endpoint; empty or absent means the AWS default."
    )
    buckets: Annotated[tuple[Bucket, ...], NonEmpty]

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


Store = Annotated[SqlStore | S3Store, Field(discriminator="type")]


class Inventory(Strict):
    """The root of inventory.yaml."""

    stores: Annotated[tuple[Store, ...], NonEmpty]

    def identity_kinds(self) -> frozenset[str]:
        """Every identity kind some table is searched by (email, customer_number, ...)."""
        return frozenset(
            ident.kind
            for store in self.stores
            if isinstance(store, SqlStore)
            for table in store.tables
            for ident in table.identity
        )

    def derived_identity_names(self) -> frozenset[str]:
        """Every derived identity name (customer_id, ...) some table provides."""
        return frozenset(
            derived.name
            for store in self.stores
            if isinstance(store, SqlStore)
            for table in store.tables
            for derived in table.derives
        )
