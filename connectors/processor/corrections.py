"""Which corrections name a processor's declared fields, and whether the fields take them.

A correction names ``<store>.<field>`` or a bare ``<field>`` (every store declaring it).
Config only, no provider: intake asks these before a request is registered. Problems
name the store and field, never the value.
"""

from __future__ import annotations

from collections.abc import Mapping

from config.schema.stores import IdentityColumn
from connectors.base import Identities
from connectors.processor.config import ProcessorField, ProcessorStore


def field_of(store: ProcessorStore, name: str) -> ProcessorField | None:
    """The declared field the correction ``name`` names in ``store``, if any."""
    owner, _, field = name.rpartition(".")
    if owner and owner != store.name:
        return None
    return store.field_named(field)


def store_changes(store: ProcessorStore, changes: Mapping[str, str]) -> dict[str, str]:
    """The corrections naming one of ``store``'s fields."""
    return {n: v for n, v in changes.items() if field_of(store, n) is not None}


def identity_columns(store: ProcessorStore, name: str) -> tuple[IdentityColumn, ...]:
    """The identity kind the correction ``name`` writes, as an identity column."""
    declared = field_of(store, name)
    if declared is None or declared.identity is None:
        return ()
    return (IdentityColumn(column=declared.name, kind=declared.identity),)


def corrected_identities(
    store: ProcessorStore, identities: Identities, changes: Mapping[str, str]
) -> dict[str, frozenset[str]]:
    """``identities`` plus the new values of corrected identity fields (to re-locate)."""
    updated = dict(identities)
    for name, value in changes.items():
        for column in identity_columns(store, name):
            if value:
                updated[column.kind] = updated.get(column.kind, frozenset()) | {value}
    return updated


def change_problems(store: ProcessorStore, changes: Mapping[str, str]) -> list[str]:
    """What the provider's declared fields cannot take in ``changes`` (never the value)."""
    problems = []
    for name, value in changes.items():
        declared = field_of(store, name)
        if declared is None:
            problems.append(f"store '{store.name}': '{name}' is not a declared field")
        elif declared.max_length is not None and len(value) > declared.max_length:
            problems.append(
                f"store '{store.name}': field {declared.name} takes at most "
                f"{declared.max_length} characters"
            )
        elif declared.identity is not None and not value:
            problems.append(f"store '{store.name}': identity field {declared.name} is empty")
    return problems


def provider_changes(store: ProcessorStore, changes: Mapping[str, str]) -> dict[str, str]:
    """``changes`` keyed by the provider's field names (what the request carries)."""
    out = {}
    for name, value in changes.items():
        declared = field_of(store, name)
        if declared is not None:
            out[declared.name] = value
    return out
