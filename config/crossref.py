"""Cross-reference checks: names that must be declared, unique, and of the right kind.

Schema validation (pydantic) checks each value's shape; these checks relate values to
each other, within inventory.yaml, within policy.yaml (``config.crossref_policy``) and
between the two. A file's own checks run once it passes schema validation; the checks
between the files run once both do.
"""

from __future__ import annotations

from config.crossref_identity import check_identity_formats
from config.crossref_keys import check_personal_keys
from config.crossref_policy import check_policy, target_form_problems
from config.problems import Reporter, YamlPath, duplicates, unknown
from config.schema.inventory import (
    Inventory,
    Reference,
    S3Store,
    SqlStore,
    Table,
    template_placeholders,
)
from config.schema.policy import HoldScope, Policy, RetentionRule
from core.sql_tls import tls_requirement


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
    duplicates(
        (
            (("stores", i, "buckets", j, "name"), b.name)
            for i, s in enumerate(stores)
            if isinstance(s, S3Store)
            for j, b in enumerate(s.buckets)
        ),
        "bucket",
        report,
    )
    check_identity_formats(inventory, report)
    check_personal_keys(inventory, report)
    placeholders = inventory.identity_kinds() | inventory.derived_identity_names()
    for i, store in enumerate(stores):
        if isinstance(store, SqlStore):
            _check_sql_store(store, ("stores", i), report)
        else:
            _check_s3_store(store, ("stores", i), placeholders, report)


def _check_sql_store(store: SqlStore, path: YamlPath, report: Reporter) -> None:
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


def _check_s3_store(
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


def _check_categories(inventory: Inventory, categories: set[str], report: Reporter) -> None:
    """Every category a table field or bucket is tagged with is declared in the policy."""
    for i, store in enumerate(inventory.stores):
        if isinstance(store, SqlStore):
            for j, table in enumerate(store.tables):
                for column, tags in table.fields.items():
                    for k, tag in enumerate(tags):
                        if tag not in categories:
                            where: YamlPath = ("stores", i, "tables", j, "fields", column, k)
                            report.add(where, unknown("category", tag, categories))
        else:
            for j, bucket in enumerate(store.buckets):
                for k, tag in enumerate(bucket.categories):
                    if tag not in categories:
                        report.add(
                            ("stores", i, "buckets", j, "categories", k),
                            unknown("category", tag, categories),
                        )


def _store(
    inventory: Inventory, name: str, path: YamlPath, report: Reporter
) -> SqlStore | S3Store | None:
    for store in inventory.stores:
        if store.name == name:
            return store
    report.add(path, unknown("store", name, (s.name for s in inventory.stores)))
    return None


def _table(store: SqlStore, name: str, path: YamlPath, report: Reporter) -> Table | None:
    for table in store.tables:
        if table.name == name:
            return table
    report.add(
        path, unknown("table", name, (t.name for t in store.tables), f"store '{store.name}'")
    )
    return None


def _sql(store: SqlStore | S3Store, what: str, path: YamlPath, report: Reporter) -> SqlStore | None:
    if isinstance(store, SqlStore):
        return store
    report.add(path, f"store '{store.name}' is an s3 store; a {what} needs a sql store")
    return None


def _s3_bucket(store: SqlStore | S3Store, bucket: str, path: YamlPath, report: Reporter) -> None:
    if not isinstance(store, S3Store):
        report.add(path, f"store '{store.name}' is a sql store; a bucket needs an s3 store")
    elif bucket not in {b.name for b in store.buckets}:
        known = (b.name for b in store.buckets)
        report.add(path, unknown("bucket", bucket, known, f"store '{store.name}'"))


def _check_rule_target(
    inventory: Inventory, rule: RetentionRule, path: YamlPath, report: Reporter
) -> None:
    if target_form_problems(rule):
        return  # already reported by the policy checks
    if rule.target_kind == "category":
        _check_category_clock(inventory, rule, path, report)
        return
    if rule.store is None:
        return
    store = _store(inventory, rule.store, (*path, "store"), report)
    if store is None:
        return
    if rule.bucket is not None:
        _s3_bucket(store, rule.bucket, (*path, "bucket"), report)
        return
    sql = _sql(store, "table target", (*path, "table"), report)
    table = _table(sql, str(rule.table), (*path, "table"), report) if sql else None
    if sql is not None and table is not None:
        _check_table_rule(sql, table, rule, path, report)


def _check_table_rule(
    store: SqlStore, table: Table, rule: RetentionRule, path: YamlPath, report: Reporter
) -> None:
    """Anonymized fields are declared, and the clock (column or via references) resolves."""
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


def _check_reference(store: SqlStore, ref: Reference, where: YamlPath, report: Reporter) -> None:
    tables = {t.name for t in store.tables}
    if ref.table not in tables:
        report.add((*where, "table"), unknown("table", ref.table, tables, f"store '{store.name}'"))
    if len(ref.columns) != len(ref.to_columns):
        report.add(
            (*where, "to_columns"),
            f"has {len(ref.to_columns)} column(s) but columns has {len(ref.columns)}",
        )


def _check_category_clock(
    inventory: Inventory, rule: RetentionRule, path: YamlPath, report: Reporter
) -> None:
    """A category rule measures each table from timestamps.created: it must be declared."""
    for store in inventory.stores:
        if not isinstance(store, SqlStore):
            continue
        for table in store.tables:
            has_clock = table.timestamps is not None and table.timestamps.created is not None
            if table.fields_in(str(rule.category)) and not has_clock:
                report.add(
                    (*path, "category"),
                    f"table {store.name}.{table.name} holds {rule.category} data but declares "
                    "no timestamps.created to measure from",
                )


def _check_hold_scope(
    inventory: Inventory, scope: HoldScope, path: YamlPath, report: Reporter
) -> None:
    store = _store(inventory, scope.store, (*path, "store"), report) if scope.store else None
    if scope.table is not None and store is not None:
        sql = _sql(store, "table", (*path, "table"), report)
        if sql is not None:
            _table(sql, scope.table, (*path, "table"), report)
    if scope.bucket is None:
        return
    if store is not None:
        _s3_bucket(store, scope.bucket, (*path, "bucket"), report)
    elif scope.store is None:
        buckets = {b.name for s in inventory.stores if isinstance(s, S3Store) for b in s.buckets}
        if scope.bucket not in buckets:
            report.add((*path, "bucket"), unknown("bucket", scope.bucket, buckets))
