"""The inventory model of a SQL store (``type: sql``): its tables and how subjects are found.

A SQL store lists its tables: which columns identify a subject directly (``identity``),
which values become identities for other stores (``derives``, e.g. ``customers.id`` as
``customer_id``), extra references beyond the reflected foreign keys, and which columns
hold which data categories.

Imports only the configuration layer (and SQLAlchemy's URL parser), so loading the
configuration never imports the connector or a driver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from config.schema.common import Name, NonEmpty, Region, SqlIdent, Strict
from config.schema.stores import (
    CategorySite,
    DerivedIdentity,
    DerivedSite,
    IdentityColumn,
    IdentitySite,
    IgnoreEntry,
    PersonalSource,
    Reference,
    StoreConfig,
)
from core.errors import NotFoundError

if TYPE_CHECKING:
    from incidents.scope import ScopePart, TimeWindow

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
    client_column: SqlIdent | None = Field(
        default=None,
        description="The column naming the client (tenant) a row belongs to: incident "
        "assessments count affected subjects per client through it.",
    )

    def fields_in(self, category: str) -> tuple[str, ...]:
        """The columns of this table that hold ``category`` data."""
        return tuple(col for col, cats in self.fields.items() if category in cats)


class SqlIgnore(IgnoreEntry):
    """An inventory-drift exclusion: a table (all its findings), one column of a table, or
    a column name in every table of the store."""

    table: SqlIdent | None = None
    column: SqlIdent | None = None

    @model_validator(mode="after")
    def _names_something(self) -> SqlIgnore:
        if self.table is None and self.column is None:
            raise ValueError("an ignore entry must name a table, a column, or both")
        return self


class EncryptionAtRest(Strict):
    """Declared storage encryption of a database, and who holds its key."""

    encrypted: bool
    key_held_by: str | None = Field(
        default=None,
        min_length=1,
        max_length=120,
        description="Who holds the key: 'us (LUKS, platform team)', 'provider (AWS KMS)'.",
    )


class SqlStore(StoreConfig):
    """A relational database reached through SQLAlchemy."""

    type: Literal["sql"]
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
    encryption_at_rest: EncryptionAtRest | None = Field(
        default=None,
        description="How the database's storage is encrypted, where the store cannot say "
        "(RDS instances report it): incident assessments judge intelligibility by it.",
    )
    tables: Annotated[tuple[Table, ...], NonEmpty]
    ignore: tuple[SqlIgnore, ...] = Field(
        default=(),
        description=(
            "Reviewed inventory-drift findings that must not return: entries naming a "
            "table, a column (of one table, or of every table) and why."
        ),
    )

    policy_parts: ClassVar[tuple[str, ...]] = ("table",)

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

    def identity_sites(self) -> tuple[IdentitySite, ...]:
        return tuple(
            IdentitySite(
                ("tables", j, "identity", k), f"{self.name}.{table.name}.{ident.column}", ident
            )
            for j, table in enumerate(self.tables)
            for k, ident in enumerate(table.identity)
        )

    def derived_sites(self) -> tuple[DerivedSite, ...]:
        sites: list[DerivedSite] = []
        for j, table in enumerate(self.tables):
            identity_columns = {ident.column for ident in table.identity}
            for k, derived in enumerate(table.derives):
                personal: PersonalSource | None = None
                if derived.column in identity_columns:
                    personal = "an identity column"
                elif derived.column in table.fields:
                    personal = "a personal field"
                place = f"{self.name}.{table.name}.{derived.column}"
                sites.append(DerivedSite(("tables", j, "derives", k), place, derived, personal))
        return tuple(sites)

    def category_sites(self) -> tuple[CategorySite, ...]:
        return tuple(
            CategorySite(("tables", j, "fields", column, k), tag)
            for j, table in enumerate(self.tables)
            for column, tags in table.fields.items()
            for k, tag in enumerate(tags)
        )

    def part_names(self, key: str) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables) if key == "table" else ()

    def scope_problems(
        self, part: ScopePart, holders: Mapping[str, Sequence[str]] | None = None
    ) -> list[str]:
        """An incident scope part on this store, judged on the inventory alone.

        The table must be declared; each of ``columns`` must be one of its personal columns
        (``fields`` or an identity column: what a breach of it means is known by its
        categories; other columns are declared nowhere the configuration can check);
        the window's column must be a declared timestamp (``timestamps``) or field, or,
        given none, the table must declare ``timestamps.created``. A qualified window
        column (``Table.column``) must be declared so in that table, and the table must be
        on the part's holders chain: ``holders`` gives the chain (each table with the
        references reaching it, from the reflected schema: ``impact.part_query`` passes
        it); without it only what the configuration knows is judged (a subject table's
        chain is empty). Messages name the part and the column, never a value.
        """
        label = part.label
        if part.store != self.name:
            return [f"{label}: names store '{part.store}', not '{self.name}'"]
        if part.table is None:
            return [f"{label}: store '{self.name}' is a SQL store: name a table, not a bucket"]
        decl = next((t for t in self.tables if t.name == part.table), None)
        if decl is None:
            return [f"{label}: table '{part.table}' is not declared in store '{self.name}'"]
        problems: list[str] = []
        personal = set(decl.fields) | {i.column for i in decl.identity}
        problems += [
            f"{label}: column '{column}' is not one of the table's declared fields or "
            "identity columns"
            for column in dict.fromkeys(part.columns)
            if column not in personal
        ]
        if part.window is not None:
            problems += self._window_problems(label, decl, part.window, holders)
        return problems

    def _window_problems(
        self,
        label: str,
        decl: Table,
        window: TimeWindow,
        holders: Mapping[str, Sequence[str]] | None,
    ) -> list[str]:
        if window.column is None:
            if decl.timestamps is None or decl.timestamps.created is None:
                return [
                    f"{label}: window has no column and the table declares no "
                    "timestamps.created; name the window's column"
                ]
            return []
        owner_name = window.column_table or decl.name
        off_chain = _chain_problems(label, decl, window, holders)
        if off_chain:
            return off_chain
        owner = next((t for t in self.tables if t.name == owner_name), None)
        if owner is None:
            return [
                f"{label}: window column '{window.column}': table '{owner_name}' is not "
                f"declared in store '{self.name}'"
            ]
        stamps = owner.timestamps
        if window.column_name not in {
            *owner.fields,
            *((stamps.created, stamps.updated) if stamps else ()),
        }:
            where = (
                "the table's timestamps or fields"
                if owner is decl
                else f"the timestamps or fields of table '{owner_name}'"
            )
            return [f"{label}: window column '{window.column}' is not declared in {where}"]
        return []


def _chain_problems(
    label: str, decl: Table, window: TimeWindow, holders: Mapping[str, Sequence[str]] | None
) -> list[str]:
    """A qualified window column's table off the part's holders chain, or reached two ways.

    ``holders`` None: the chain is not known here, except a subject table's (empty: its
    rows belong to nobody through a reference).
    """
    owner = window.column_table
    if owner is None or owner == decl.name:
        return []
    chain = holders if holders is not None else ({} if decl.identity else None)
    if chain is None:
        return []
    if owner not in chain:
        return [
            f"{label}: window column '{window.column}' names a table off the part's holders "
            "chain (the tables its rows belong to through references); allowed: "
            + ", ".join([decl.name, *chain])
        ]
    if len(chain[owner]) > 1:
        return [
            f"{label}: window column '{window.column}': '{owner}' is reached from "
            f"'{decl.name}' through several references ({'; '.join(chain[owner])}), so "
            "whose time it is is ambiguous"
        ]
    return []
