"""``lifecycle inventory draft`` without the CLI: reflect, sample, classify, plan, render.

The database is opened read-only where the backend allows it at connection level
(SQLite ``?mode=ro``) and every sample runs in a read-only transaction
(``discovery.sampling``), all tables through one connection. Sampled values live only
inside ``_classify_table``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from core.engines import make_engine, normalize_url
from core.errors import InvalidInput
from discovery.catalog import Catalog, TableInfo, read_catalog
from discovery.detectors import Detection, classify
from discovery.draft import DraftPlan, plan_draft
from discovery.render import StoreHeader, render
from discovery.sampling import DEFAULT_ROWS, Sampler, sample_table, sampler

DEFAULT_REGION = "eu-central-1"
_SKIPPED_TYPES = ("DATE", "TIME", "BOOL", "BLOB", "BYTEA", "BINARY", "FLOAT", "DOUBLE", "REAL")
_SECRET_PARAM = re.compile(r"pass|secret|token|key", re.IGNORECASE)


@dataclass(frozen=True)
class TableSummary:
    """Counts per drafted table, for the command's output (never a value)."""

    name: str
    identities: int
    fields: int
    reached: str


@dataclass(frozen=True)
class DraftResult:
    """The draft text and what it holds."""

    text: str
    tables: tuple[TableSummary, ...]
    left_out: dict[str, str]
    buckets: tuple[tuple[str, int, int], ...]  # (bucket, keys listed, templates proposed)


def read_only_engine(url: str) -> Engine:
    """An engine on ``url``; a SQLite file is opened read-only (``mode=ro``)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database or "")
        if not path.is_file():
            raise InvalidInput(f"no SQLite database file at {path}")
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        return make_engine(f"sqlite:///{uri}&uri=true")
    return make_engine(url)


def draft_url(url: str, store: str) -> tuple[str, str | None]:
    """The URL to write: the password replaced by an environment variable, secret query
    parameters left out; and a note saying so (None when nothing was changed)."""
    parsed: URL = normalize_url(url).set(drivername=url.split(":", 1)[0])
    notes: list[str] = []
    secret = {k for k in parsed.query if _SECRET_PARAM.search(k)}
    if secret:
        parsed = parsed.difference_update_query(secret)
        notes.append(f"left out: {', '.join(sorted(secret))}")
    if parsed.password is None:
        return parsed.render_as_string(hide_password=False), ("; ".join(notes) or None)
    variable = f"LIFECYCLE_{store.upper().replace('-', '_')}_PASSWORD"
    text = parsed.set(password="PASSWORD").render_as_string(hide_password=False)
    text = text.replace(":PASSWORD@", f":${{{variable}}}@", 1)
    notes.append(f"TODO: set {variable} (URL-encoded) before validating")
    return text, "; ".join(notes)


def store_name(url: str) -> str:
    """A store name from the database's name (``crm.db`` -> ``crm``), else ``main``."""
    database = normalize_url(url).database or ""
    name = re.sub(r"[^a-z0-9_-]", "_", Path(database).stem.lower()).strip("_-")
    return name if re.match(r"^[a-z][a-z0-9_-]{0,62}$", name) else "main"


def sampled_columns(table: TableInfo) -> list[str]:
    """Columns worth sampling: not dates, booleans, binaries or floats."""
    return [
        c.name for c in table.columns if not any(t in c.type_name.upper() for t in _SKIPPED_TYPES)
    ]


def _classify_table(source: Sampler, table: TableInfo, rows: int) -> dict[str, Detection]:
    """Detections for one table; its sampled values are dropped when this returns."""
    wanted = sampled_columns(table)
    values = sample_table(source, table, wanted, rows) if wanted else {}
    found: dict[str, Detection] = {}
    for column in table.columns:
        detection = classify(column.name, values.get(column.name, []))
        if detection is not None:
            found[column.name] = detection
    return found


def classify_catalog(
    engine: Engine, catalog: Catalog, rows: int
) -> dict[str, dict[str, Detection]]:
    """Detections per table, per column, sampling each table once, all on one connection."""
    with sampler(engine) as source:
        return {name: _classify_table(source, info, rows) for name, info in catalog.tables.items()}


def _summaries(plan: DraftPlan) -> tuple[TableSummary, ...]:
    return tuple(
        TableSummary(t.info.name, len(t.identity), len(t.fields), t.reached) for t in plan.tables
    )


def draft_inventory(
    url: str,
    *,
    buckets: Sequence[str] = (),
    rows: int = DEFAULT_ROWS,
    schema: str | None = None,
    name: str | None = None,
    region: str | None = None,
    s3_endpoint: str | None = None,
) -> DraftResult:
    """Draft inventory.yaml for the database at ``url`` (and ``buckets``)."""
    store = name or store_name(url)
    engine = read_only_engine(url)
    try:
        catalog = read_catalog(engine, schema)
        findings = classify_catalog(engine, catalog, rows)
        dialect = engine.dialect.name
    finally:
        engine.dispose()
    plan = plan_draft(catalog, findings, derive=bool(buckets))
    where = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    text_url, note = draft_url(url, store)
    header = StoreHeader(
        store, text_url, note, where or DEFAULT_REGION, region is not None, dialect, rows, schema
    )
    extra: list[str] = []
    listed: tuple[tuple[str, int, int], ...] = ()
    if buckets:
        from discovery.bucket_source import draft_buckets

        extra, listed = draft_buckets(plan, buckets, where or DEFAULT_REGION, s3_endpoint)
    return DraftResult(render(plan, header, extra), _summaries(plan), plan.left_out, listed)
