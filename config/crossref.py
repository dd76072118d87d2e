"""Cross-reference checks: names that must be declared, unique, and of the right kind.

Schema validation (pydantic) checks each value's shape; these checks relate values to
each other, within inventory.yaml, within policy.yaml (``config.crossref_policy``) and
between the two. A file's own checks run once it passes schema validation; the checks
between the files run once both do.

The checks here ask every store the same generic questions (``StoreConfig``); what only
one store type needs checking is that type's hooks, found in ``connectors.catalog``.
"""

from __future__ import annotations

from collections.abc import Iterator

from config.crossref_identity import check_identity_formats
from config.crossref_keys import personal_placeholders
from config.crossref_policy import check_policy, target_form_problems
from config.problems import Reporter, YamlPath, duplicates, unknown
from config.schema.inventory import Inventory
from config.schema.policy import HoldScope, Policy, RetentionRule
from config.schema.stores import StoreConfig
from connectors import catalog
from connectors.catalog import InventoryFacts, owner_of_part, spec_for


def check(
    inventory: Inventory | None,
    policy: Policy | None,
    inventory_report: Reporter,
    policy_report: Reporter,
) -> None:
    """Run every check the validated parts allow (None marks a file that failed validation)."""
    if inventory is not None:
        check_inventory(inventory, inventory_report)
    if policy is not None:
        check_policy(policy, policy_report)
    if inventory is not None and policy is not None:
        _check_categories(inventory, {c.name for c in policy.categories}, inventory_report)
        for i, rule in enumerate(policy.retention):
            _check_rule_target(inventory, rule, ("retention", i), policy_report)
        for i, hold in enumerate(policy.legal_holds):
            _check_hold_scope(inventory, hold.scope, ("legal_holds", i, "scope"), policy_report)


def check_inventory(inventory: Inventory, report: Reporter) -> None:
    """Unique names, resolvable references and key templates within inventory.yaml."""
    stores = inventory.stores
    duplicates(((("stores", i, "name"), s.name) for i, s in enumerate(stores)), "store", report)
    check_identity_formats(inventory, report)
    facts = InventoryFacts(
        placeholders=inventory.identity_kinds() | inventory.derived_identity_names(),
        personal=personal_placeholders(inventory),
    )
    placed: list[tuple[YamlPath, StoreConfig]] = [(("stores", i), s) for i, s in enumerate(stores)]
    for spec in catalog.STORE_TYPES:
        spec.run_store_checks(placed, facts, report)


def _check_categories(inventory: Inventory, categories: set[str], report: Reporter) -> None:
    """Every category a store tags something with (a table field, a bucket) is declared."""
    for i, store in enumerate(inventory.stores):
        for site in store.category_sites():
            if site.category not in categories:
                report.add(
                    ("stores", i, *site.path), unknown("category", site.category, categories)
                )


def _store(inventory: Inventory, name: str, path: YamlPath, report: Reporter) -> StoreConfig | None:
    for store in inventory.stores:
        if store.name == name:
            return store
    report.add(path, unknown("store", name, (s.name for s in inventory.stores)))
    return None


def _parts(target: RetentionRule | HoldScope) -> Iterator[tuple[str, str]]:
    """The (key, name) pairs naming a part of a store: ``table: x``, ``bucket: y``."""
    if target.table is not None:
        yield "table", target.table
    if target.bucket is not None:
        yield "bucket", target.bucket


def _check_part(
    store: StoreConfig, key: str, name: str, *, what: str, path: YamlPath, report: Reporter
) -> bool:
    """Whether ``store`` has parts named by ``key`` and declares ``name``; else reported."""
    if key not in store.policy_parts:
        spec, owner = spec_for(store), owner_of_part(key)
        needs = f"needs {owner.noun}" if owner is not None else "is not known to any store type"
        report.add(path, f"store '{store.name}' is {spec.noun}; a {what} {needs}")
        return False
    known = store.part_names(key)
    if name not in known:
        report.add(path, unknown(key, name, known, f"store '{store.name}'"))
        return False
    return True


def _is_global(key: str) -> bool:
    """Whether a part named by ``key`` may be named without its store (a bucket).

    A hold naming any other part (a table) without a store is refused by
    ``config.crossref_policy``.
    """
    owner = owner_of_part(key)
    return owner is not None and key in owner.config.global_parts


def _check_rule_target(
    inventory: Inventory, rule: RetentionRule, path: YamlPath, report: Reporter
) -> None:
    if target_form_problems(rule):
        return  # already reported by the policy checks
    if rule.target_kind == "category":
        for each in inventory.stores:
            spec_for(each).run_category_rule_check(each, rule, path, report)
        return
    if rule.store is None:
        return
    store = _store(inventory, rule.store, (*path, "store"), report)
    if store is None:
        return
    for key, name in _parts(rule):  # exactly one (checked by target_form_problems)
        if _check_part(store, key, name, what=f"{key} target", path=(*path, key), report=report):
            spec_for(store).run_rule_check(store, rule, path, report)


def _check_hold_scope(
    inventory: Inventory, scope: HoldScope, path: YamlPath, report: Reporter
) -> None:
    store = _store(inventory, scope.store, (*path, "store"), report) if scope.store else None
    for key, name in _parts(scope):
        if store is not None:
            _check_part(store, key, name, what=key, path=(*path, key), report=report)
        elif scope.store is None and _is_global(key):  # any store's part of that name
            known = {n for s in inventory.stores for n in s.part_names(key)}
            if name not in known:
                report.add((*path, key), unknown(key, name, known))
