"""Object keys built from personal data must be declared personal (``keys_contain_personal_data``).

A bucket whose keys do not contain personal data may have them written to the audit
ledger, Prefect logs and failure artifacts; keys built from a subject's identity must
not be. A key template makes its keys personal when one of its placeholders is:

- an identity kind (``{email}``, ``{customer_number}``): always personal; or
- a derived identity (``derives:``) taken from a column that is itself personal in its
  table: one of the table's identity columns, or a column declared in its ``fields``
  (personal data by the inventory's own word). Any table deriving the name that way
  makes it personal. A surrogate key (``customers.id`` as ``customer_id``) is neither,
  so ``tickets/{customer_id}/`` keys are not personal.

Such a bucket must say ``keys_contain_personal_data: true``; false (or omitted, the
default) is refused, naming the template and why.
"""

from __future__ import annotations

from config.problems import Reporter
from config.schema.inventory import Inventory, S3Store, SqlStore, template_placeholders


def personal_placeholders(inventory: Inventory) -> dict[str, str]:
    """Placeholder name -> why keys holding it are personal data."""
    why: dict[str, str] = {}
    for store in inventory.stores:
        if not isinstance(store, SqlStore):
            continue
        for table in store.tables:
            identity_columns = {ident.column for ident in table.identity}
            for derived in table.derives:
                place = f"{store.name}.{table.name}.{derived.column}"
                if derived.column in identity_columns:
                    why.setdefault(derived.name, f"derived from {place}, an identity column")
                elif derived.column in table.fields:
                    why.setdefault(derived.name, f"derived from {place}, a personal field")
    for kind in inventory.identity_kinds():
        why[kind] = "an identity kind"  # wins over a derivation of the same name
    return why


def check_personal_keys(inventory: Inventory, report: Reporter) -> None:
    """Refuse ``keys_contain_personal_data: false`` on buckets whose templates hold identities."""
    personal = personal_placeholders(inventory)
    for i, store in enumerate(inventory.stores):
        if not isinstance(store, S3Store):
            continue
        for j, bucket in enumerate(store.buckets):
            if bucket.keys_contain_personal_data:
                continue
            for template in bucket.key_templates:
                names = [n for n in dict.fromkeys(template_placeholders(template)) if n in personal]
                if not names:
                    continue
                reasons = "; ".join(f"{{{n}}} is {personal[n]}" for n in names)
                report.add(
                    ("stores", i, "buckets", j, "keys_contain_personal_data"),
                    f"is false, but key template '{template}' builds keys from personal data "
                    f"({reasons}); set keys_contain_personal_data: true so keys stay out of "
                    "the ledger and logs",
                )
