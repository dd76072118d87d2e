"""Checks within policy.yaml that relate fields to each other (no inventory needed).

Run once the policy has passed schema validation; each problem points at the field
that is wrong (or, for a missing field, at the mapping that should hold it).
"""

from __future__ import annotations

from config.problems import Reporter, YamlPath, duplicates, unknown
from config.schema.common import is_region
from config.schema.policy import (
    Approval,
    ErasureRule,
    LegalHold,
    Policy,
    RequestPolicy,
    RetentionRule,
)
from config.schema.transfers import TransferPolicy, TransferRoute


def check_policy(policy: Policy, report: Reporter) -> None:
    """All checks that need only the policy file."""
    categories = [c.name for c in policy.categories]
    duplicates(
        ((("categories", i, "name"), c) for i, c in enumerate(categories)), "category", report
    )
    _check_requests(policy.requests, set(categories), report)
    duplicates(
        ((("retention", i, "id"), r.id) for i, r in enumerate(policy.retention)),
        "retention rule id",
        report,
    )
    for i, rule in enumerate(policy.retention):
        _check_rule(rule, ("retention", i), set(categories), report)
    duplicates(
        ((("legal_holds", i, "id"), h.id) for i, h in enumerate(policy.legal_holds)),
        "legal hold id",
        report,
    )
    for i, hold in enumerate(policy.legal_holds):
        _check_hold(hold, ("legal_holds", i), report)
    if policy.transfers is not None:
        _check_transfers(policy.transfers, set(categories), report)
    for i, risk_rule in enumerate(policy.incidents.risk_rules):
        for j, name in enumerate(risk_rule.when.categories):
            if name not in categories:
                path = ("incidents", "risk_rules", i, "when", "categories", j)
                report.add(path, unknown("category", name, set(categories)))


def _check_requests(requests: RequestPolicy, categories: set[str], report: Reporter) -> None:
    if requests.deadline_days > requests.max_deadline_days:
        report.add(
            ("requests", "deadline_days"),
            f"{requests.deadline_days} is more than max_deadline_days "
            f"({requests.max_deadline_days})",
        )
    _check_approval(requests.approval, report)
    erasure = ("requests", "erasure")
    _check_erasure_rule(requests.erasure.default, (*erasure, "default"), report)
    for name, rule in requests.erasure.categories.items():
        path = (*erasure, "categories", name)
        if name not in categories:
            report.add(path, unknown("category", name, categories))
        _check_erasure_rule(rule, path, report)


def _check_approval(approval: Approval, report: Reporter) -> None:
    """Someone must be able to decide, and each approver and key is declared once."""
    path = ("requests", "approval", "approvers")
    kinds = ", ".join(approval.required_for)
    waits = bool(approval.required_for) and not approval.auto_approve
    if waits and not approval.approvers:
        report.add(path, f"approval is required for {kinds} but no approvers are named")
    elif waits and not approval.unverified_ui and not any(a.public_key for a in approval.approvers):
        report.add(
            path,
            f"approval is required for {kinds} but no approver has a public_key, so nobody "
            "can sign a decision: give approvers as {name, public_key} (lifecycle approver "
            "keygen prints the line; plain names are deprecated), or set unverified_ui: true "
            "to accept unsigned decisions in the Prefect UI, recorded as unverified",
        )
    duplicates(
        (((*path, i, "name"), a.name.casefold()) for i, a in enumerate(approval.approvers)),
        "approver",
        report,
    )
    duplicates(
        (
            ((*path, i, "public_key"), a.public_key)
            for i, a in enumerate(approval.approvers)
            if a.public_key is not None
        ),
        "approver public_key",
        report,
    )


def _check_erasure_rule(rule: ErasureRule, path: YamlPath, report: Reporter) -> None:
    if rule.action == "mask" and rule.mask is None:
        report.add((*path, "mask"), "action mask needs mask: null, redact, hash or pseudonym")
    if rule.action != "mask" and rule.mask is not None:
        report.add((*path, "mask"), "mask is only used with action mask")
    if rule.action in ("mask", "keep") and rule.reason is None:
        report.add(
            (*path, "reason"), f"action {rule.action} needs a reason (the legal ground for keeping)"
        )


def target_form_problems(rule: RetentionRule) -> list[tuple[YamlPath, str]]:
    """What is wrong with the rule's target form (paths relative to the rule); [] if fine.

    Exactly one form: store + table, store + bucket (+ prefix), or category.
    """
    found: list[tuple[YamlPath, str]] = []
    if rule.category is not None:
        if any(v is not None for v in (rule.store, rule.table, rule.bucket, rule.prefix)):
            found.append(
                (
                    ("category",),
                    "a category target cannot be combined with store, table, bucket or prefix",
                )
            )
        return found
    if rule.table is not None and rule.bucket is not None:
        found.append((("bucket",), "a rule targets a table or a bucket, not both"))
    elif rule.table is None and rule.bucket is None:
        if rule.store is not None:
            found.append((("store",), "store needs a table or a bucket to target"))
        else:
            found.append(((), "no target: give store and table, store and bucket, or category"))
    elif rule.store is None:
        found.append((("store",), "required with a table or bucket target"))
    if rule.prefix is not None and rule.bucket is None:
        found.append((("prefix",), "prefix narrows a bucket target, but no bucket is given"))
    return found


def _check_rule(
    rule: RetentionRule, path: YamlPath, categories: set[str], report: Reporter
) -> None:
    form_problems = target_form_problems(rule)
    for where, message in form_problems:
        report.add((*path, *where), message)
    if form_problems:
        return
    kind = rule.target_kind
    if kind == "category" and rule.category not in categories:
        report.add((*path, "category"), unknown("category", str(rule.category), categories))
    if rule.action == "anonymize":
        if kind != "table":
            report.add((*path, "action"), "anonymize needs a table target (store and table)")
        elif not rule.fields:
            report.add((*path, "fields"), "anonymize needs fields: the columns to anonymize")
    elif rule.fields:
        report.add((*path, "fields"), "fields are only used with action anonymize")
    _check_clock(rule, (*path, "measured_from"), report)


def _check_clock(rule: RetentionRule, where: YamlPath, report: Reporter) -> None:
    """measured_from fits the target: a column for tables, s3 for buckets, none for categories."""
    clock, kind = rule.measured_from, rule.target_kind
    if clock is None:
        return
    if kind == "category":
        report.add(
            where,
            "a category target is measured from each table's timestamps.created and each "
            "object's last_modified; remove measured_from",
        )
    elif clock.column is not None and clock.s3 is not None:
        report.add((*where, "s3"), "give column or s3, not both")
    elif clock.column is None and clock.s3 is None:
        report.add(where, "needs column (table targets) or s3: last_modified (bucket targets)")
    elif kind == "table" and clock.s3 is not None:
        report.add(
            (*where, "s3"), "s3 last_modified is for bucket targets; this rule targets a table"
        )
    elif kind == "bucket" and clock.column is not None:
        report.add((*where, "column"), "a bucket target is measured from s3: last_modified")
    if clock.via and clock.column is None:
        report.add((*where, "via"), "via leads to a column, but no column is given")


def _check_hold(hold: LegalHold, path: YamlPath, report: Reporter) -> None:
    scope, where = hold.scope, (*path, "scope")
    if scope.is_empty():
        report.add(
            where, "empty scope would hold everything; name a store, table, bucket, tag or subject"
        )
    if scope.table is not None and scope.store is None:
        report.add((*where, "table"), "table needs store (table names are per store)")
    if scope.prefix is not None and scope.bucket is None:
        report.add((*where, "prefix"), "prefix needs bucket")
    if hold.ends is not None and hold.ends < hold.starts:
        report.add((*path, "ends"), "ends before it starts")


def _is_destination(transfers: TransferPolicy, name: str) -> bool:
    return name in transfers.region_groups or is_region(name)


def _check_transfers(transfers: TransferPolicy, categories: set[str], report: Reporter) -> None:
    for group in transfers.region_groups:
        if is_region(group):
            report.add(
                ("transfers", "region_groups", group), "a group name must not look like a region"
            )
    if not _is_destination(transfers, transfers.home):
        report.add(
            ("transfers", "home"),
            f"'{transfers.home}' is neither a declared region group nor a region",
        )
    for name, routes in transfers.categories.items():
        if name not in categories:
            report.add(("transfers", "categories", name), unknown("category", name, categories))
        for k, route in enumerate(routes):
            _check_route(transfers, route, ("transfers", "categories", name, k), report)


def _check_route(
    transfers: TransferPolicy, route: TransferRoute, path: YamlPath, report: Reporter
) -> None:
    if not _is_destination(transfers, route.destination):
        report.add(
            (*path, "destination"),
            f"'{route.destination}' is neither a declared region group nor a region",
        )
        return
    regions = transfers.regions_of(route.destination)
    if route.safeguard in ("scc", "bcr") and route.reference is None:
        report.add((*path, "reference"), f"safeguard {route.safeguard} needs reference")
    if route.safeguard == "scc" and route.expires is None:
        report.add((*path, "expires"), "safeguard scc needs expires (when to review the clauses)")
    if route.safeguard == "home" and not regions <= transfers.home_regions():
        outside = ", ".join(sorted(regions - transfers.home_regions()))
        report.add((*path, "safeguard"), f"{outside} is outside home ({transfers.home})")
    if route.safeguard == "adequacy" and not regions <= transfers.adequate_regions():
        uncovered = ", ".join(sorted(regions - transfers.adequate_regions()))
        report.add((*path, "safeguard"), f"no adequacy decision covers {uncovered}")
