"""Identity formats agree across the inventory: one format per identity kind.

Intake checks and normalizes a request's identity once, by its kind's format, and every
store is then searched with that one spelling; so every identity column of a kind must
resolve (declared or inferred) to the same format.
"""

from __future__ import annotations

from config.problems import Reporter, YamlPath
from config.schema.inventory import Inventory


def check_identity_formats(inventory: Inventory, report: Reporter) -> None:
    """Report each identity column whose kind already resolved to another format."""
    first: dict[str, tuple[str, str]] = {}  # kind -> (format, "store.table.column")
    for i, store in enumerate(inventory.stores):
        for site in store.identity_sites():
            ident, place = site.column, site.place
            fmt = ident.value_format()
            if ident.kind not in first:
                first[ident.kind] = (fmt, place)
                continue
            first_fmt, first_place = first[ident.kind]
            if fmt != first_fmt:
                path: YamlPath = ("stores", i, *site.path)
                report.add(
                    (*path, "format") if ident.format is not None else path,
                    f"identity kind '{ident.kind}' is format {fmt} at {place} but "
                    f"{first_fmt} at {first_place}; every column of a kind needs the "
                    "same format",
                )
