"""Plan a draft inventory from a reflected catalog and the detections on sampled columns.

Pure: no database access. Which tables to declare, which columns are identities, which
are personal fields, which way each foreign key is followed (through the product's own
``connectors.sql.graph.resolve_follow``, so the draft says what the connector will do),
and which tables no identity reaches. ``discovery.render`` turns the plan into YAML text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from connectors.sql.config import SqlStore
from connectors.sql.edges import Edge
from connectors.sql.graph import reachable, resolve_follow
from discovery.catalog import Catalog, TableInfo
from discovery.detectors import Detection

IDENTITY_KINDS = frozenset({"email", "phone", "identifier"})
"""Detections that can find a subject by themselves, proposed as identity columns."""

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")

Findings = Mapping[str, Mapping[str, Detection]]
"""Detections per table, per column."""


@dataclass(frozen=True)
class Reference:
    """A reflected foreign key among the declared tables, with the way it is followed."""

    columns: tuple[str, ...]
    table: str
    to_columns: tuple[str, ...]
    follow: str
    chosen: bool = False
    """True when the draft sets the way (written under ``references:``)."""
    why: str = ""
    """Why the draft set it; empty: the defaults were ambiguous and it picked one (a TODO)."""


@dataclass
class TablePlan:
    """One declared table of the draft."""

    info: TableInfo
    fields: dict[str, Detection] = field(default_factory=dict)
    identity: dict[str, Detection] = field(default_factory=dict)
    held_back: dict[str, Detection] = field(default_factory=dict)
    """Identity-like columns of a table owned through a reference: left commented out."""
    identifiers: dict[str, Detection] = field(default_factory=dict)
    """Identifier-named columns outside subject tables (maybe an undeclared reference)."""
    derives: tuple[str, str] | None = None
    references: tuple[Reference, ...] = ()
    reached: str = "unreached"  # "identity" | "reference" | "unreached"
    pointer: bool = False
    """Declared only because its rows point at declared tables (``follow: none``)."""


@dataclass(frozen=True)
class DraftPlan:
    """The whole draft: declared tables in catalog order, and the tables left out."""

    tables: tuple[TablePlan, ...]
    left_out: dict[str, str]  # table -> why
    problems: tuple[str, ...] = ()  # what resolve_follow still refuses (none expected)


def singular(name: str) -> str:
    """``customers`` -> ``customer``, ``companies`` -> ``company`` (for derived names)."""
    lowered = name.lower()
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("xes", "x"), ("s", "")):
        if lowered.endswith(suffix) and len(lowered) > len(suffix) + 1:
            return lowered[: -len(suffix)] + repl
    return lowered


def _fk_columns(info: TableInfo) -> set[str]:
    return {c for fk in info.foreign_keys for c in fk.columns}


def _candidates(info: TableInfo, found: Mapping[str, Detection]) -> dict[str, Detection]:
    fks = _fk_columns(info)
    return {c: d for c, d in found.items() if d.kind in IDENTITY_KINDS and c not in fks}


def _inbound(catalog: Catalog, table: str) -> int:
    return len({holder for holder, _ in catalog.referenced_by(table) if holder != table})


def subject_tables(catalog: Catalog, findings: Findings) -> set[str]:
    """Tables proposed as subject tables (identity columns of their own).

    Tables with e-mail candidates are preferred (see the code). A table with identity
    candidates that references another such table is owned through that reference
    instead (an order's contact e-mail) when the other table is referenced by more
    tables than itself (the customers everything points at); otherwise both keep their
    identities (a customer pointing at an agent: another person).
    """
    candidates = {t for t in catalog.tables if _candidates(catalog.tables[t], findings.get(t, {}))}
    # An e-mail address names one person; a phone number is often a shared line on a row
    # that many others point at (an address, a store). Where any table has e-mail
    # candidates, only those are subject tables: the rest are reached through them, and
    # their phone numbers are offered as identities commented out.
    by_email = {
        t
        for t in candidates
        if any(d.kind == "email" for d in _candidates(catalog.tables[t], findings[t]).values())
    }
    candidates = by_email or candidates
    roots: set[str] = set()
    for name in candidates:
        info = catalog.tables[name]
        parents = {fk.referred_table for fk in info.foreign_keys} & candidates - {name}
        if not any(_inbound(catalog, p) > _inbound(catalog, name) for p in parents):
            roots.add(name)
    return roots


def _owned_closure(catalog: Catalog, roots: set[str]) -> set[str]:
    """Tables reached from ``roots`` through the references they are held by."""
    owned = set(roots)
    grew = True
    while grew:
        grew = False
        for name, info in catalog.tables.items():
            if name not in owned and any(fk.referred_table in owned for fk in info.foreign_keys):
                owned.add(name)
                grew = True
    return owned


def _store_model(plans: list[TablePlan]) -> SqlStore:
    """The draft's tables as the connector's config model (for resolving references)."""
    tables = [
        {
            "name": p.info.name,
            "identity": [{"column": c, "kind": identity_kind(c, d)} for c, d in p.identity.items()],
            "fields": {c: [d.category] for c, d in p.fields.items()},
            "references": [
                {"columns": r.columns, "table": r.table, "to_columns": r.to_columns}
                | {"follow": r.follow}
                for r in p.references
                if r.chosen
            ],
        }
        for p in plans
    ]
    return SqlStore.model_validate(
        {"name": "draft", "type": "sql", "url": "sqlite://", "region": "eu-central-1"}
        | {"tables": tables}
    )


def identity_kind(column: str, detection: Detection) -> str:
    """The identity kind proposed for a column: email, phone, else the column's name."""
    if detection.kind in ("email", "phone"):
        return detection.kind
    return re.sub(r"[^a-z0-9_]", "_", column.lower()).lstrip("_0123456789") or "identifier"


def _edges(catalog: Catalog, declared: set[str]) -> list[Edge]:
    return [
        Edge(name, fk.columns, fk.referred_table, fk.referred_columns, True)
        for name in sorted(declared)
        for fk in catalog.tables[name].foreign_keys
        if fk.referred_table in declared
    ]


def _resolve(plans: list[TablePlan], catalog: Catalog) -> tuple[str, ...]:
    """Give every reference its way; where the defaults are ambiguous, pick one (marked)."""
    by_name = {p.info.name: p for p in plans}
    edges = _edges(catalog, set(by_name))
    resolved, problems = resolve_follow(_store_model(plans), edges)
    if problems:  # equally near references: the first holds, the others point (a TODO)
        for plan in plans:
            kept = {(r.columns, r.table) for r in plan.references if r.chosen}
            mine = [
                e
                for e in resolved
                if e.child == plan.info.name
                and e.follow == "none"
                and (e.columns, e.parent) not in kept
            ]
            if len(mine) > 1 and not plan.identity and not plan.pointer:
                ways = ["holders"] + ["target"] * (len(mine) - 1)
                plan.references = tuple(r for r in plan.references if r.chosen) + tuple(
                    Reference(e.columns, e.parent, e.to_columns, w, chosen=True)
                    for e, w in zip(mine, ways, strict=True)
                )
        resolved, problems = resolve_follow(_store_model(plans), edges)
    for plan in plans:
        chosen = {(r.columns, r.table): r for r in plan.references}
        plan.references = tuple(
            chosen.get(
                (e.columns, e.parent), Reference(e.columns, e.parent, e.to_columns, e.follow)
            )
            for e in resolved
            if e.child == plan.info.name
        )
    store = _store_model(plans)
    found = reachable(resolved, store)
    for plan in plans:
        if plan.identity:
            plan.reached = "identity"
        elif plan.info.name in found:
            plan.reached = "reference"
    return tuple(problems)


def _left_out_reason(info: TableInfo) -> str | None:
    if not _PLAIN.match(info.name):
        return "its name is not a plain SQL identifier, which the inventory cannot name"
    return None


def plan_draft(catalog: Catalog, findings: Findings, derive: bool = False) -> DraftPlan:
    """The draft for ``catalog`` given ``findings``; ``derive`` proposes each subject
    table's single-column key as a derived identity (for key templates in buckets)."""
    roots = subject_tables(catalog, findings)
    owned = _owned_closure(catalog, roots)
    left_out: dict[str, str] = {}
    plans: list[TablePlan] = []
    for name, info in catalog.tables.items():
        found = {c: d for c, d in findings.get(name, {}).items() if _PLAIN.match(c)}
        reason = _left_out_reason(info)
        if reason is None and not found and name not in owned:
            reason = "no personal-data candidates, and no subject's rows reference it"
        if reason is not None:
            left_out[name] = reason
            continue
        plans.append(_table_plan(info, found, name in roots, derive))
    pointers: list[TablePlan] = []
    while more := _pointers(catalog, {p.info.name for p in plans + pointers}, left_out):
        pointers += more  # a table pointing at a pointer table (stock at a store) too
    _point_without_reaching(plans, {p.info.name for p in pointers})
    plans += pointers
    problems = _resolve(plans, catalog) if plans else ()
    return DraftPlan(parents_first(plans), left_out, problems)


def _pointers(catalog: Catalog, declared: set[str], left_out: dict[str, str]) -> list[TablePlan]:
    """Left-out tables whose enforced foreign keys point into declared tables, declared
    after all with those references as ``follow: none``: undeclared, they would make an
    erasure that deletes a row they point at fail at run time; declared, the rows they
    still point at count as shared and stay."""
    plans = []
    for name in sorted(left_out):
        info = catalog.tables[name]
        into = [fk for fk in info.foreign_keys if fk.referred_table in declared]
        if not into or not _PLAIN.match(name):
            continue
        del left_out[name]
        why = "its rows are no subject's; the rows they point at stay while they do"
        refs = tuple(
            Reference(fk.columns, fk.referred_table, fk.referred_columns, "none", True, why)
            for fk in into
        )
        plans.append(TablePlan(info, references=refs, reached="reference", pointer=True))
    return plans


def _point_without_reaching(plans: list[TablePlan], pointers: set[str]) -> None:
    """References into pointer tables are followed ``none``: a store or a branch that a
    customer row names is no part of the customer, and erasing it would take what others
    (undeclared tables too) still point at."""
    for plan in plans:
        refs = tuple(
            Reference(
                fk.columns,
                fk.referred_table,
                fk.referred_columns,
                "none",
                True,
                f"a {fk.referred_table} row is no part of the subject: never followed or erased",
            )
            for fk in plan.info.foreign_keys
            if fk.referred_table in pointers
        )
        plan.references += refs


def parents_first(plans: list[TablePlan]) -> tuple[TablePlan, ...]:
    """Tables ordered so each comes after the tables it references (customers, orders,
    order_items), otherwise by name, unreached ones last; a cycle is broken by name."""
    names = {p.info.name for p in plans}
    waiting = {
        p.info.name: {fk.referred_table for fk in p.info.foreign_keys} & names - {p.info.name}
        for p in plans
    }
    ordered: list[str] = []
    while waiting:
        ready = sorted(n for n, parents in waiting.items() if not parents) or sorted(waiting)[:1]
        for name in ready:
            del waiting[name]
            ordered.append(name)
        for parents in waiting.values():
            parents.difference_update(ready)
    by_name = {p.info.name: p for p in plans}
    # Tables no identity reaches last: they are the ones the reviewer must decide about.
    return tuple(sorted((by_name[n] for n in ordered), key=lambda p: p.reached == "unreached"))


def _table_plan(
    info: TableInfo, found: Mapping[str, Detection], is_root: bool, derive: bool
) -> TablePlan:
    plan = TablePlan(info)
    fks = _fk_columns(info)
    identity = _candidates(info, found)
    for column, detection in found.items():
        if detection.kind == "identifier":
            if column in fks:
                continue  # a reference, described with the table's references
            if is_root:
                plan.identity[column] = detection
            else:
                plan.identifiers[column] = detection
            continue
        plan.fields[column] = detection
        if column in identity:
            (plan.identity if is_root else plan.held_back)[column] = detection
    if is_root and derive and len(info.primary_key) == 1:
        plan.derives = (info.primary_key[0], f"{singular(info.name)}_{info.primary_key[0]}")
    return plan
