"""Drift of a SQL store: its live catalog against its declared tables.

``sql_findings`` is pure: the store's declaration, the catalog (``discovery.catalog``) and
what the sampled columns looked like (``discovery.detectors``) in, findings out.
``read_drift`` reads the catalog, samples the columns the inventory does not name (a
bounded, read-only sample per table, ``discovery.sampling``), classifies them and
compares. Sampled values live only inside ``_detections``; what leaves is a
``Detection`` (kind, category, share, counts).

A column counts as declared when the table's declaration names it (identity, derives,
fields, primary key, references, timestamps) or when it is part of the table's primary
key or of a foreign key (structure, not content). Reachability uses the reference graph
locate uses (``connectors.sql.graph``): enforced foreign keys among the declared tables
plus the declared references.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy import Engine

from config.schema.model import LifecycleConfig
from config.schema.stores import StoreConfig
from connectors.sql.config import SqlIgnore, SqlStore, Table
from connectors.sql.edges import Edge
from connectors.sql.graph import reachable, resolve_follow
from core.engines import make_engine
from core.errors import LifecycleError
from discovery.catalog import Catalog, TableInfo, read_catalog
from discovery.detectors import Detection, classify
from discovery.drift import DriftFinding, StoreDrift, finding, without_ignored
from discovery.sampling import sample_table

Detections = Mapping[tuple[str, str], Detection]
"""(table, column) -> what its sample looked like; columns that looked personal only."""

About = tuple[str, str | None]


def named_columns(table: Table) -> set[str]:
    """Every column the table's declaration names."""
    named = {i.column for i in table.identity} | {d.column for d in table.derives}
    named |= set(table.fields) | set(table.primary_key or ())
    named |= {c for r in table.references for c in r.columns}
    if table.timestamps is not None:
        named |= {c for c in (table.timestamps.created, table.timestamps.updated) if c}
    return named


def structural_columns(info: TableInfo) -> set[str]:
    """Primary-key and foreign-key columns: keys and pointers, declared by the schema."""
    return set(info.primary_key) | {c for fk in info.foreign_keys for c in fk.columns}


def columns_to_sample(store: SqlStore, catalog: Catalog) -> dict[str, tuple[str, ...]]:
    """Per table, the columns whose content the inventory does not account for: the
    unnamed, non-key columns of declared tables and every non-key column of the others."""
    declared = {t.name: t for t in store.tables}
    out: dict[str, tuple[str, ...]] = {}
    for name, info in catalog.tables.items():
        skip = structural_columns(info)
        if name in declared:
            skip |= named_columns(declared[name])
        wanted = tuple(c.name for c in info.columns if c.name not in skip)
        if wanted:
            out[name] = wanted
    return out


def _described(detections: list[tuple[str, Detection]]) -> str:
    return "; ".join(f"{column}: {d.kind} ({d.evidence})" for column, d in detections)


def _declared_findings(
    store: SqlStore, catalog: Catalog, detections: Detections
) -> list[tuple[DriftFinding, About]]:
    out: list[tuple[DriftFinding, About]] = []
    sampled = columns_to_sample(store, catalog)
    for table in store.tables:
        info = catalog.tables.get(table.name)
        if info is None:
            evidence = "declared in inventory.yaml, not found in the database"
            out.append((finding("sql.table-vanished", store.name, table.name, evidence), _t(table)))
            continue
        present = {c.name for c in info.columns}
        for column in sorted(named_columns(table) - present):
            evidence = "named in inventory.yaml, not found in the table"
            resource = f"{table.name}.{column}"
            out.append(
                (
                    finding("sql.column-vanished", store.name, resource, evidence),
                    (table.name, column),
                )
            )
        for column in sampled.get(table.name, ()):
            resource = f"{table.name}.{column}"
            detection = detections.get((table.name, column))
            if detection is None:
                # Inventories name personal columns only (a draft's too): an undeclared
                # column that does not look personal is no finding, or every fresh
                # inventory would report each of its plain columns.
                continue
            else:
                evidence = f"not named in inventory.yaml; looks like {detection.kind}: "
                f = finding(
                    "sql.undeclared-personal-column",
                    store.name,
                    resource,
                    evidence + detection.evidence,
                    (detection.category,),
                )
            out.append((f, (table.name, column)))
    return out


def _t(table: Table) -> About:
    return (table.name, None)


def _undeclared_findings(
    store: SqlStore, catalog: Catalog, detections: Detections
) -> list[tuple[DriftFinding, About]]:
    declared = {t.name for t in store.tables}
    out: list[tuple[DriftFinding, About]] = []
    for name, info in sorted(catalog.tables.items()):
        if name in declared:
            continue
        for fk in info.foreign_keys:
            if fk.referred_table not in declared:
                continue
            resource = f"{name}({', '.join(fk.columns)}) -> {fk.referred_table}"
            evidence = (
                f"undeclared table '{name}' holds an enforced foreign key into declared table "
                f"'{fk.referred_table}': erasing a '{fk.referred_table}' row it references "
                "fails (or cascades into rows no plan lists)"
            )
            out.append(
                (finding("sql.undeclared-fk-holder", store.name, resource, evidence), _n(name))
            )
        personal = [
            (c.name, detections[(name, c.name)])
            for c in info.columns
            if (name, c.name) in detections
        ]
        size = f"{len(info.columns)} columns" + (
            f", about {info.row_estimate} rows" if info.row_estimate is not None else ""
        )
        if personal:
            evidence = f"not in inventory.yaml ({size}); looks personal: {_described(personal)}"
            categories = [d.category for _, d in personal]
            f = finding("sql.undeclared-personal-table", store.name, name, evidence, categories)
        else:
            evidence = f"not in inventory.yaml ({size}); its sample does not look personal"
            f = finding("sql.undeclared-table", store.name, name, evidence)
        out.append((f, _n(name)))
    return out


def _n(name: str) -> About:
    return (name, None)


def reference_edges(store: SqlStore, catalog: Catalog) -> tuple[Edge, ...]:
    """Enforced foreign keys among the declared tables present, then declared references."""
    present = {t.name for t in store.tables if t.name in catalog.tables}
    found: dict[tuple[str, tuple[str, ...], str, tuple[str, ...]], Edge] = {}
    for name in sorted(present):
        for fk in catalog.tables[name].foreign_keys:
            if fk.referred_table in present:
                key = (name, fk.columns, fk.referred_table, fk.referred_columns)
                found[key] = Edge(*key, enforced=True)
    for table in store.tables:
        for ref in table.references:
            if table.name in present and ref.table in present:
                key = (table.name, ref.columns, ref.table, ref.to_columns)
                found.setdefault(key, Edge(*key, enforced=False))
    return tuple(found.values())


def _unreachable_findings(store: SqlStore, catalog: Catalog) -> list[tuple[DriftFinding, About]]:
    # Problems resolving the ways (an ambiguous reference) are doctor's to report; here an
    # edge that cannot be followed simply reaches nothing.
    edges, _problems = resolve_follow(store, reference_edges(store, catalog))
    found = reachable(edges, store)
    evidence = (
        "declared with personal data, but no identity column and no followed reference "
        "from a table with one reaches it: requests never find its rows"
    )
    return [
        (finding("sql.unreachable-table", store.name, t.name, evidence), _t(t))
        for t in store.tables
        if t.name in catalog.tables and t.name not in found and (t.fields or t.identity)
    ]


def ignores(entries: tuple[SqlIgnore, ...], table: str, column: str | None) -> bool:
    """Whether an entry names ``table`` (all of it), ``table.column`` or ``column`` anywhere."""
    for entry in entries:
        if entry.table is not None and entry.table != table:
            continue
        if entry.column is None or entry.column == column:
            return True
    return False


def sql_findings(
    store: SqlStore, catalog: Catalog, detections: Detections
) -> tuple[list[DriftFinding], int]:
    """The store's findings, without those its ``ignore:`` names, and how many it dropped."""
    about = _declared_findings(store, catalog, detections)
    about += _undeclared_findings(store, catalog, detections)
    about += _unreachable_findings(store, catalog)
    return without_ignored(about, lambda table, column: ignores(store.ignore, table, column))


@contextmanager
def _as_store(name: str) -> Iterator[None]:
    """Errors of the discovery modules name the store ``discovery``: name this one."""
    try:
        yield
    except LifecycleError as e:
        e.message = e.message.replace("store 'discovery'", f"store '{name}'")
        e.args = (e.message,)
        e.fields["store"] = name
        raise


def _detections(
    engine: Engine, catalog: Catalog, wanted: Mapping[str, tuple[str, ...]], rows: int
) -> dict[tuple[str, str], Detection]:
    """Sample and classify ``wanted``; the values never leave this function."""
    found: dict[tuple[str, str], Detection] = {}
    for table, columns in wanted.items():
        values = sample_table(engine, catalog.tables[table], columns, rows)
        for column in columns:
            detection = classify(column, values.get(column, []))
            if detection is not None:
                found[(table, column)] = detection
        del values
    return found


def read_drift(
    config: LifecycleConfig, store: StoreConfig, *, account_wide: bool, sample_rows: int
) -> StoreDrift:
    """Read ``store``'s catalog, sample what the inventory does not name, and compare."""
    if not isinstance(store, SqlStore):
        raise TypeError(f"store '{store.name}' is not a SQL store")
    engine = make_engine(store.url.get_secret_value())
    try:
        with _as_store(store.name):
            catalog = read_catalog(engine)
            wanted = columns_to_sample(store, catalog)
            detections = _detections(engine, catalog, wanted, sample_rows)
    finally:
        engine.dispose()
    findings, ignored = sql_findings(store, catalog, detections)
    counts = {
        "tables": len(catalog.tables),
        "sampled_columns": sum(len(c) for c in wanted.values()),
    }
    return StoreDrift(store.name, tuple(findings), counts, ignored)
