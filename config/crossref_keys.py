"""Which key-template placeholders stand for personal data (``keys_contain_personal_data``).

A bucket whose keys do not contain personal data may have them written to the audit
ledger, Prefect logs and failure artifacts; keys built from a subject's identity must
not be. A key template makes its keys personal when one of its placeholders is:

- an identity kind (``{email}``, ``{customer_number}``): always personal; or
- a derived identity (``derives:``) taken from a value that is itself personal in its
  store: one of a table's identity columns, or a column declared in its ``fields``
  (personal data by the inventory's own word). Any store deriving the name that way
  makes it personal. A surrogate key (``customers.id`` as ``customer_id``) is neither,
  so ``tickets/{customer_id}/`` keys are not personal.

Such a bucket must say ``keys_contain_personal_data: true``; false (or omitted, the
default) is refused, naming the template and why (``connectors.s3.config_checks``).
"""

from __future__ import annotations

from config.schema.inventory import Inventory


def personal_placeholders(inventory: Inventory) -> dict[str, str]:
    """Placeholder name -> why keys holding it are personal data."""
    why: dict[str, str] = {}
    for store in inventory.stores:
        for site in store.derived_sites():
            if site.personal is not None:
                why.setdefault(site.derived.name, f"derived from {site.place}, {site.personal}")
    for kind in inventory.identity_kinds():
        why[kind] = "an identity kind"  # wins over a derivation of the same name
    return why
