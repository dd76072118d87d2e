"""Posture facts of a processor store, from its configuration (the provider is not asked).

Where the provider processes the data is what it declares in the agreement; the store
records it as ``region``. The agreement's reference and end date are the other facts.
"""

from __future__ import annotations

from config.schema.model import LifecycleConfig
from config.schema.stores import StoreConfig
from connectors.processor.config import ProcessorStore
from connectors.processor.posture_facts import ProcessorFacts


def processor_facts(store: ProcessorStore) -> ProcessorFacts:
    """The posture facts of one processor store."""
    categories = {*store.categories, *(f.category for f in store.fields)}
    agreement = store.agreement
    return ProcessorFacts(
        store=store.name,
        provider=store.provider,
        region=store.region,
        categories=tuple(sorted(categories)),
        agreement_reference=agreement.reference if agreement else None,
        agreement_expires=agreement.expires if agreement else None,
        mode=store.mode,
    )


def gather_posture(
    config: LifecycleConfig, store: StoreConfig, *, account_wide: bool
) -> list[ProcessorFacts]:
    """The posture hook of processor stores (``connectors.catalog``); a processor has no
    account-wide facts (``config`` and ``account_wide`` are unused)."""
    del config, account_wide
    if not isinstance(store, ProcessorStore):
        raise TypeError(f"store '{store.name}' is not a processor store")
    return [processor_facts(store)]
