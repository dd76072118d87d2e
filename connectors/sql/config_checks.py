"""Configuration checks of SQL stores, run by ``config.crossref`` through ``connectors.catalog``.

Within inventory.yaml: table names are unique per store, declared references name a
declared table with as many columns on both sides, and ``require_tls`` agrees with the
url. Against policy.yaml: a retention rule on a table anonymizes declared fields and has
a clock, and a category rule finds ``timestamps.created`` on every table it reaches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from config.problems import Reporter, YamlPath, duplicates, unknown
from core.sql_tls import tls_requirement

if TYPE_CHECKING:
    from config.schema.policy import RetentionRule
    from config.schema.stores import Reference
    from connectors.catalog import InventoryFacts
    from connectors.sql.config import SqlStore


def check_stores(
    stores: Sequence[tuple[YamlPath, SqlStore]], facts: InventoryFacts, report: Reporter
) -> None:
    """Check each SQL store of the inventory (``path`` is where it is declared)."""
    for path, store in stores:
        _check_store(store, path, report)


def _check_store(store: SqlStore, path: YamlPath, report: Reporter) -> None:
    duplicates(
        (((*path, "tables", j, "name"), t.name) for j, t in enumerate(store.tables)),
        "table",
        report,
        f"store '{store.name}'",
    )
    for j, table in enumerate(store.tables):
        for k, ref in enumerate(table.references):
            _check_reference(store, ref, (*path, "tables", j, "references", k), report)
    if store.require_tls:
        required, evidence = tls_requirement(store.url.get_secret_value())
        if required is False:  # None: a local file or socket, nothing crosses a network
            report.add(
                (*path, "require_tls"),
                f"is true, but the url lets the driver connect without TLS ({evidence}); "
                "add sslmode=require (PostgreSQL) or ssl_ca=... (MariaDB/MySQL) to the url",
            )


def _check_reference(store: SqlStore, ref: Reference, where: YamlPath, report: Reporter) -> None:
    tables = {t.name for t in store.tables}
    if ref.table not in tables:
        report.add((*where, "table"), unknown("table", ref.table, tables, f"store '{store.name}'"))
    if len(ref.columns) != len(ref.to_columns):
        report.add(
            (*where, "to_columns"),
            f"has {len(ref.to_columns)} column(s) but columns has {len(ref.columns)}",
        )


def check_rule(store: SqlStore, rule: RetentionRule, path: YamlPath, report: Reporter) -> None:
    """A rule on a declared table: anonymized fields are declared and the clock resolves."""
    table = store.table(str(rule.table))
    for k, field in enumerate(rule.fields):
        if field not in table.fields:
            report.add(
                (*path, "fields", k),
                f"'{field}' is not declared in the fields of {store.name}.{table.name}",
            )
    clock = rule.measured_from
    if clock is None and (table.timestamps is None or table.timestamps.created is None):
        report.add(
            (*path, "measured_from"),
            f"required: table {store.name}.{table.name} declares no timestamps.created",
        )
    for k, step in enumerate(clock.via if clock else ()):
        _check_reference(store, step, (*path, "measured_from", "via", k), report)


def check_category_rule(
    store: SqlStore, rule: RetentionRule, path: YamlPath, report: Reporter
) -> None:
    """A category rule measures each table from timestamps.created: it must be declared."""
    for table in store.tables:
        has_clock = table.timestamps is not None and table.timestamps.created is not None
        if table.fields_in(str(rule.category)) and not has_clock:
            report.add(
                (*path, "category"),
                f"table {store.name}.{table.name} holds {rule.category} data but declares "
                "no timestamps.created to measure from",
            )
