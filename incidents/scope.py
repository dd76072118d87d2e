"""What an incident covers, as data: parts naming a store and a table, columns or a prefix.

A part is exactly one of: ``store`` + ``table`` (every row; ``columns`` narrows it to rows
where one of those columns holds a value), or ``store`` + ``bucket`` (optionally
``prefix``). A ``window`` narrows a part to a time range: rows by a timestamp column,
objects by their last-modified time. The column may be the part table's own or, written
``Table.column``, one of a table its rows belong to through their holders references (the
invoice lines of the invoices of March: ``Invoice.InvoiceDate`` on ``InvoiceLine``). Whether
the names are declared in the inventory is checked by the store's ``scope_problems``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from config.schema.common import BucketName, Name, NonEmpty, SqlIdent, Strict, shaped
from core.free_text import personal_data_in


def _aware(value: datetime) -> datetime:
    # A naive time is taken as UTC: the window is compared with stored UTC timestamps.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


AwareDateTime = Annotated[datetime, AfterValidator(_aware)]

_IDENT = r"[A-Za-z_][A-Za-z0-9_$]{0,127}"  # SqlIdent's shape and length
WindowColumn = Annotated[
    str,
    shaped(
        rf"^{_IDENT}(\.{_IDENT})?\Z",
        "must be a column or Table.column: plain SQL identifiers (letters, digits, '_' or "
        "'$', not starting with a digit; 128 at most), the table and the column joined by one '.'",
        max_length=257,
    ),
]
"""A window's column: ``column`` of the part's table, or ``Table.column`` up its holders."""


class TimeWindow(Strict):
    """``start`` (inclusive) to ``end`` (exclusive); rows by ``column``, objects by date."""

    start: AwareDateTime
    end: AwareDateTime
    column: WindowColumn | None = Field(
        default=None,
        description="SQL parts: the timestamp column the window applies to (default: the "
        "table's timestamps.created), or Table.column: a column of a table the part's rows "
        "belong to through their holders references (Invoice.InvoiceDate on InvoiceLine: "
        "the lines of the invoices in the window). Not allowed on bucket parts (object "
        "last-modified).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.end <= self.start:
            raise ValueError("window: end must be after start")
        return self

    @property
    def column_table(self) -> str | None:
        """The table a qualified column names (``Invoice`` of ``Invoice.InvoiceDate``)."""
        if self.column is None or "." not in self.column:
            return None
        return self.column.partition(".")[0]

    @property
    def column_name(self) -> str | None:
        """The column without its table (``InvoiceDate`` of ``Invoice.InvoiceDate``)."""
        return None if self.column is None else self.column.rpartition(".")[2]


class ScopePart(Strict):
    """One place the incident touched."""

    store: Name
    table: SqlIdent | None = None
    columns: tuple[SqlIdent, ...] = Field(
        default=(), description="Only rows where one of these columns holds a value."
    )
    bucket: BucketName | None = None
    prefix: str | None = Field(default=None, min_length=1)
    window: TimeWindow | None = None

    @model_validator(mode="after")
    def _one_target(self) -> ScopePart:
        if (self.table is None) == (self.bucket is None):
            raise ValueError("a scope part names exactly one of table or bucket")
        if self.table is not None and self.prefix is not None:
            raise ValueError("prefix belongs to a bucket part, not a table part")
        if self.bucket is not None and self.columns:
            raise ValueError("columns belong to a table part, not a bucket part")
        if self.bucket is not None and self.window is not None and self.window.column:
            raise ValueError("a bucket part's window applies to object dates: no column")
        return self

    @property
    def label(self) -> str:
        """``store.table[col,..]`` or ``store:s3://bucket/prefix``: how output names the part."""
        if self.table is not None:
            cols = f"[{','.join(self.columns)}]" if self.columns else ""
            return f"{self.store}.{self.table}{cols}"
        return f"{self.store}:s3://{self.bucket}/{_shown_prefix(self.prefix)}"


def _shown_prefix(prefix: str | None) -> str:
    """The prefix as output, errors and the ledger show it: a prefix holding an e-mail
    address or phone number (a subject's folder) is shown by a digest, never as typed."""
    if not prefix:
        return ""
    if all(personal_data_in(segment) is None for segment in prefix.split("/")):
        return prefix
    return f"<prefix sha256:{hashlib.sha256(prefix.encode()).hexdigest()[:16]}>"


class IncidentScope(Strict):
    """Every part the incident covers."""

    parts: Annotated[tuple[ScopePart, ...], NonEmpty]
