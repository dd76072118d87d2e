"""What every store type's configuration shares, and the generic questions asked of a store.

Each store type keeps its model next to its connector (``connectors/<type>/config.py``),
subclassing ``StoreConfig``; ``connectors.catalog`` lists the types and
``config.schema.inventory`` assembles the inventory's ``stores`` union from it. The checks
and lookups that span stores (identity kinds, derived identities, data categories, the
parts a policy may name) ask these methods instead of testing a store's type.

This module imports no store type, so a type's config module may import it freely.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, NamedTuple

from pydantic import AfterValidator, Field

from config.problems import YamlPath
from config.schema.common import IdentName, Name, NonEmpty, SqlIdent, Strict
from core.identity_values import IdentityFormat, infer_format

if TYPE_CHECKING:
    from incidents.scope import ScopePart


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
    """``columns`` of a table point at ``to_columns`` of ``table`` (same store).

    Declared on a SQL table (``TableReference``) and in a retention rule's
    ``measured_from.via``, so policy.yaml can use it without naming a store type.
    """

    columns: Annotated[tuple[SqlIdent, ...], NonEmpty]
    table: SqlIdent
    to_columns: Annotated[tuple[SqlIdent, ...], NonEmpty]


class IdentitySite(NamedTuple):
    """Where a store declares an identity column."""

    path: YamlPath
    """The YAML path below the store, e.g. ``("tables", 0, "identity", 1)``."""
    place: str
    """The column for messages, e.g. ``crm.customers.email``."""
    column: IdentityColumn


def _reason(value: str) -> str:
    if not value.strip():
        raise ValueError("must say why the finding was reviewed and excluded")
    return value


class IgnoreEntry(Strict):
    """A reviewed inventory-drift finding that must not return (a store's ``ignore:`` list).

    Each store type's entry names what it excludes (a table or column, a bucket or prefix)
    and checks that it names something; the reason is mandatory, so an exclusion always
    says why it was accepted.
    """

    reason: Annotated[str, AfterValidator(_reason)] = Field(
        max_length=500, description="Why the finding was reviewed and excluded."
    )


PersonalSource = Literal["an identity column", "a personal field"]

SweepAudit = Literal["range", "keys"]
"""What a retention sweep's ledger records per batch: the rule, cut-off, key range and count
(``range``), or also a digest of every key deleted or anonymized (``keys``: reading and
digesting the keys costs the sweep about half again its time on PostgreSQL)."""


class DerivedSite(NamedTuple):
    """Where a store derives an identity, and whether the value it is taken from is personal."""

    path: YamlPath
    place: str
    derived: DerivedIdentity
    personal: PersonalSource | None
    """Why values of the derived name are personal data; None for a surrogate key."""


class CategorySite(NamedTuple):
    """A data category a store tags something with (checked against the policy)."""

    path: YamlPath
    category: str


class StoreConfig(Strict):
    """Base of every store type's model: ``type`` (a Literal in each subclass) and ``name``.

    The methods answer the questions asked of every store, whatever its type; a type
    overrides those that apply to it (a store with no identity columns keeps the default).
    """

    type: str
    name: Name
    description: str | None = None
    retention_audit: SweepAudit = Field(
        default="range",
        description=(
            "What a retention sweep's ledger records per batch in this store: 'range' (the "
            "rule, cut-off, key range and count) or 'keys' (also a digest of every key). A "
            "rule's own 'audit' overrides it. Subject erasures always digest their keys."
        ),
    )

    policy_parts: ClassVar[tuple[str, ...]] = ()
    """The keys by which policy.yaml names a part of such a store (``table``, ``bucket``)."""
    global_parts: ClassVar[tuple[str, ...]] = ()
    """Those of ``policy_parts`` whose names are unique across all stores of the type, so
    a legal hold may name one without its store (bucket names are global; table names
    are per store)."""

    def identity_sites(self) -> tuple[IdentitySite, ...]:
        """The identity columns this store is searched by, with where they are declared."""
        return ()

    def derived_sites(self) -> tuple[DerivedSite, ...]:
        """The identities this store derives for other stores, with where they are declared."""
        return ()

    def category_sites(self) -> tuple[CategorySite, ...]:
        """Every data category this store tags something with."""
        return ()

    def part_names(self, key: str) -> tuple[str, ...]:
        """The declared names of the parts named by ``key`` (one of ``policy_parts``)."""
        return ()

    def identity_columns(self) -> tuple[IdentityColumn, ...]:
        """The identity columns this store is searched by."""
        return tuple(site.column for site in self.identity_sites())

    def derived_names(self) -> frozenset[str]:
        """The derived identity names (``customer_id``, ...) this store provides."""
        return frozenset(site.derived.name for site in self.derived_sites())

    def scope_problems(self, part: ScopePart) -> list[str]:
        """What is wrong with an incident scope ``part`` naming this store (undeclared
        table, column or bucket; a window column that is not there), judged on the
        configuration alone. A type that cannot be assessed refuses every part."""
        return [f"{part.label}: a store of type '{self.type}' cannot be in an incident scope"]

    def searched_by(self) -> frozenset[str] | None:
        """Every identity kind and derived name this store can be searched by, or None when
        its configuration does not say them all (then any derived identity may be used:
        locating it waits for every store before it that derives one)."""
        return None
