"""Configuration checks of S3 stores, run by ``config.crossref`` through ``connectors.catalog``.

Bucket names are unique across every S3 store; each bucket has a way to find a
subject's objects (key templates or a subject tag); every key-template placeholder is an
identity kind or a derived identity; and a bucket whose keys are built from personal
data says so (``keys_contain_personal_data``, see ``config.crossref_keys``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from config.problems import Reporter, YamlPath, duplicates
from config.schema.stores import template_placeholders

if TYPE_CHECKING:
    from connectors.catalog import InventoryFacts
    from connectors.s3.config import S3Store


def check_stores(
    stores: Sequence[tuple[YamlPath, S3Store]], facts: InventoryFacts, report: Reporter
) -> None:
    """Check the S3 stores of the inventory (``path`` is where each is declared)."""
    duplicates(
        (
            ((*path, "buckets", j, "name"), b.name)
            for path, store in stores
            for j, b in enumerate(store.buckets)
        ),
        "bucket",
        report,
    )
    for path, store in stores:
        _check_templates(store, path, facts.placeholders, report)
        _check_personal_keys(store, path, facts.personal, report)


def _check_templates(
    store: S3Store, path: YamlPath, placeholders: frozenset[str], report: Reporter
) -> None:
    known = ", ".join(sorted(placeholders)) or "none declared"
    for j, bucket in enumerate(store.buckets):
        where = (*path, "buckets", j)
        if not bucket.key_templates and bucket.subject_tag is None:
            report.add(
                (*where, "key_templates"),
                "a bucket needs key_templates or subject_tag to find a subject's objects",
            )
        for k, template in enumerate(bucket.key_templates):
            for name in template_placeholders(template):
                if name not in placeholders:
                    report.add(
                        (*where, "key_templates", k),
                        f"placeholder {{{name}}} is neither an identity kind nor a derived "
                        f"identity name (known: {known})",
                    )


def _check_personal_keys(
    store: S3Store, path: YamlPath, personal: Mapping[str, str], report: Reporter
) -> None:
    """Refuse ``keys_contain_personal_data: false`` on buckets whose templates hold identities."""
    for j, bucket in enumerate(store.buckets):
        if bucket.keys_contain_personal_data:
            continue
        for template in bucket.key_templates:
            names = [n for n in dict.fromkeys(template_placeholders(template)) if n in personal]
            if not names:
                continue
            reasons = "; ".join(f"{{{n}}} is {personal[n]}" for n in names)
            report.add(
                (*path, "buckets", j, "keys_contain_personal_data"),
                f"is false, but key template '{template}' builds keys from personal data "
                f"({reasons}); set keys_contain_personal_data: true so keys stay out of "
                "the ledger and logs",
            )
