"""Stream a subject's rows for an access request, by key batches, as JSON-safe records.

Each found row is read whole (every column: the subject is entitled to all of it) with one
statement per batch of keys, in key order, and yielded as an ``ExportItem`` carrying the
table's data categories. Values become JSON-safe here so the access package writer never
sees driver types: dates and times as ISO 8601, decimals as text (no float rounding),
bytes as base64, anything else unknown as ``str()``.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from connectors.base import ExportItem, Findings
from connectors.sql.schema import StoreSchema, batches, key_clause, sql_errors


def json_safe(value: Any) -> Any:
    """A column value as JSON: None, bool, int, str and finite floats as they are."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def export_rows(
    engine: Engine, schema: StoreSchema, findings: Findings, batch_size: int = 500
) -> Iterator[ExportItem]:
    """Every row in ``findings``, all columns, one statement per batch of keys."""
    for target in findings.targets:
        table = schema.tables[target.target]
        key_cols = schema.keys[target.target]
        order = [table.c[c] for c in key_cols]
        for batch in batches(target.keys, batch_size):
            stmt = sa.select(table).where(key_clause(table, key_cols, batch)).order_by(*order)
            # One short-lived connection per batch: the consumer may be slow (encrypting,
            # uploading) and must not hold a connection or snapshot open meanwhile.
            with sql_errors(schema.store, "export", target.target), engine.connect() as conn:
                rows = conn.execute(stmt).mappings().all()
            for row in rows:
                yield ExportItem(
                    store=findings.store,
                    target=target.target,
                    categories=target.categories,
                    data={name: json_safe(value) for name, value in row.items()},
                )
