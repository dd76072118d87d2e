"""Configuration checks of processor stores, run by ``config.crossref`` through the catalog.

How it is reached agrees with ``mode`` (api: ``endpoint`` and ``secret_env``; manual:
neither); ``identities`` are identity kinds or derived identity names other stores
declare; fields are unique, their categories among the store's ``categories`` and their
identity kinds among its ``identities``. Whether the secret is set is checked when the
store is used (``lifecycle doctor``): the configuration may be loaded elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from config.problems import Reporter, YamlPath, duplicates, unknown

if TYPE_CHECKING:
    from connectors.catalog import InventoryFacts
    from connectors.processor.config import ProcessorStore


def check_stores(
    stores: Sequence[tuple[YamlPath, ProcessorStore]], facts: InventoryFacts, report: Reporter
) -> None:
    """Check each processor store of the inventory (``path`` is where it is declared)."""
    for path, store in stores:
        check_store(store, path, facts.placeholders, report)


def check_store(
    store: ProcessorStore, path: YamlPath, placeholders: frozenset[str], report: Reporter
) -> None:
    """One processor store's checks (``placeholders``: known identity kinds and names)."""
    _check_mode(store, path, report)
    known = ", ".join(sorted(placeholders)) or "none declared"
    for k, kind in enumerate(store.identities):
        if kind not in placeholders:
            report.add(
                (*path, "identities", k),
                f"'{kind}' is neither an identity kind nor a derived identity name of "
                f"another store (known: {known})",
            )
    duplicates(
        (((*path, "fields", j, "name"), f.name) for j, f in enumerate(store.fields)),
        "field",
        report,
        f"store '{store.name}'",
    )
    for j, field in enumerate(store.fields):
        where = (*path, "fields", j)
        if field.category not in store.categories:
            report.add(
                (*where, "category"),
                f"'{field.category}' is not among the categories store '{store.name}' "
                f"receives ({', '.join(store.categories)})",
            )
        if field.identity is not None and field.identity not in store.identities:
            report.add((*where, "identity"), unknown("identity", field.identity, store.identities))


def _check_mode(store: ProcessorStore, path: YamlPath, report: Reporter) -> None:
    if store.mode == "api":
        for name, value in (("endpoint", store.endpoint), ("secret_env", store.secret_env)):
            if value is None:
                report.add((*path, name), "required when mode is api (the default)")
        return
    for name, value in (
        ("endpoint", store.endpoint),
        ("secret_env", store.secret_env),
        ("ca_bundle", store.ca_bundle),
    ):
        if value is not None:
            report.add((*path, name), "is set, but mode is manual: an operator confirms instead")
