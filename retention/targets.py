"""Retention rules resolved into sweep targets: pure data, no store is touched.

A *target* is one thing a sweep acts on: the rows of one table (delete), some fields of
one table's rows (anonymize), or the objects of one bucket under a prefix (delete, every
version). Each target carries the *conditions* under which data is expired; data is
acted on only when every condition holds, which is how overlapping rules resolve to the
longest retention (a 2-year and a 7-year rule on the same rows: rows go after 7 years).

Resolution, per store:

- Table rules give their table a delete condition, or anonymize conditions on their fields.
- Category rules reach every table with fields of that category (measured from the
  table's ``timestamps.created``) and every bucket tagged with it. A ``delete`` category
  rule deletes a table's rows only when all of the table's categorised fields are of that
  category; in a table that also holds other categories it anonymizes the category's
  fields instead, so data of another category is never removed before its own period.
- Anonymize conditions are grouped per field: a field covered by two anonymize rules waits
  for both. Delete and anonymize are different stages (anonymize at 3 years, delete at
  10) and do not combine.
- Bucket rules with nested prefixes: the narrower prefix takes the wider rule's
  conditions too, and the wider target leaves the narrower prefix to it.

Legal holds (``policy.legal_holds``) are matched here too: a hold whose scope covers a
whole target stops it (its data is counted as held); a narrower hold (a subject, a
prefix inside the target, a tag) is carried as *partial* and applied per row or object.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Literal

from config.schema import LifecycleConfig, S3Store, SqlStore
from config.schema.inventory import Reference, Table
from config.schema.policy import HoldScope, LegalHold, RetentionRule

Action = Literal["delete", "anonymize"]
Reach = Literal["none", "whole", "part"]


@dataclass(frozen=True)
class Clock:
    """Where age is read: a column, reached from the target table through ``via``; or S3."""

    column: str | None  # None: the object's LastModified
    via: tuple[Reference, ...] = ()

    def describe(self) -> str:
        """``created_at``, ``customers.contract_ended_at via customer_id`` or ``LastModified``."""
        if self.column is None:
            return "LastModified"
        if not self.via:
            return self.column
        path = " -> ".join(f"{','.join(r.columns)}->{r.table}" for r in self.via)
        return f"{self.via[-1].table}.{self.column} (via {path})"


@dataclass(frozen=True)
class Condition:
    """Data whose clock is before ``cutoff`` is expired under ``rule_id``."""

    rule_id: str
    age: str
    approx_days: float
    clock: Clock
    cutoff: datetime  # naive UTC, as the stores hold timestamps


@dataclass(frozen=True)
class SweepTarget:
    """One table (rows or fields) or one bucket prefix a sweep acts on."""

    id: str
    kind: Literal["sql", "s3"]
    store: str
    action: Action
    conditions: tuple[Condition, ...]
    table: str | None = None
    fields: tuple[str, ...] = ()
    bucket: str | None = None
    prefix: str | None = None
    exclude_prefixes: tuple[str, ...] = ()
    holds: tuple[str, ...] = ()  # active holds covering the whole target
    partial_holds: tuple[LegalHold, ...] = field(default=(), compare=False)

    @property
    def governing(self) -> Condition:
        """The longest of the conditions (the one that decides in the common case)."""
        return max(self.conditions, key=lambda c: (c.approx_days, c.rule_id))

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """The rules behind this target, the governing one first."""
        rest = sorted(c.rule_id for c in self.conditions if c is not self.governing)
        return (self.governing.rule_id, *rest)

    @property
    def held(self) -> bool:
        """A hold covers the whole target: the sweep only counts it."""
        return bool(self.holds)

    @property
    def subject_holds(self) -> tuple[LegalHold, ...]:
        """Partial holds naming a subject pseudonym."""
        return tuple(h for h in self.partial_holds if h.scope.subject is not None)

    @property
    def label(self) -> str:
        """Human name: ``crm.customers`` or ``files/bucket/prefix``."""
        if self.kind == "sql":
            return f"{self.store}.{self.table}"
        return f"{self.store}/{self.bucket}/{self.prefix or ''}"


def utc_naive(moment: datetime) -> datetime:
    """``moment`` in UTC without tzinfo (naive values are taken to be UTC already)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _condition(rule: RetentionRule, clock: Clock, now: datetime) -> Condition:
    return Condition(
        rule_id=rule.id,
        age=str(rule.age),
        approx_days=rule.age.approx_days,
        clock=clock,
        cutoff=utc_naive(rule.age.before(now)),
    )


def _table_clock(rule: RetentionRule, created: str | None) -> Clock | None:
    if rule.measured_from is not None and rule.measured_from.column is not None:
        return Clock(rule.measured_from.column, tuple(rule.measured_from.via))
    return Clock(created) if created is not None else None


class _SqlCollector:
    """Delete and per-field anonymize conditions of one table."""

    def __init__(self) -> None:
        self.delete: list[Condition] = []
        self.anonymize: dict[str, list[Condition]] = {}

    def add_fields(self, fields: Iterable[str], condition: Condition) -> None:
        for name in fields:
            self.anonymize.setdefault(name, []).append(condition)


def _collect(
    store: SqlStore, table: Table, rules: Sequence[RetentionRule], now: datetime
) -> _SqlCollector:
    """The delete and anonymize conditions the rules put on one table."""
    created = table.timestamps.created if table.timestamps else None
    collected = _SqlCollector()
    categorised = {c for cats in table.fields.values() for c in cats}
    for rule in rules:
        own = rule.target_kind == "table" and (rule.store, rule.table) == (store.name, table.name)
        if own:
            clock = _table_clock(rule, created)
            if clock is None:
                continue  # refused by config validation; never guess a clock
            cond = _condition(rule, clock, now)
            if rule.action == "delete":
                collected.delete.append(cond)
            else:
                collected.add_fields(rule.fields, cond)
        elif rule.target_kind == "category" and rule.category in categorised:
            if created is None:
                continue  # refused by config validation
            cond = _condition(rule, Clock(created), now)
            if rule.action == "delete" and categorised == {rule.category}:
                collected.delete.append(cond)
            else:
                collected.add_fields(rule.fields or table.fields_in(str(rule.category)), cond)
    return collected


def _sql_targets(
    store: SqlStore, rules: Sequence[RetentionRule], now: datetime
) -> list[SweepTarget]:
    out: list[SweepTarget] = []
    for table in store.tables:
        collected = _collect(store, table, rules, now)
        base = f"{store.name}.{table.name}"
        common = {"kind": "sql", "store": store.name, "table": table.name}
        if collected.delete:
            out.append(
                SweepTarget(
                    id=f"{base}:delete",
                    action="delete",
                    conditions=tuple(collected.delete),
                    **common,  # type: ignore[arg-type]
                )
            )
        groups: dict[tuple[str, ...], list[str]] = {}
        by_rules: dict[tuple[str, ...], tuple[Condition, ...]] = {}
        for name, conds in sorted(collected.anonymize.items()):
            ids = tuple(sorted({c.rule_id for c in conds}))
            groups.setdefault(ids, []).append(name)
            by_rules[ids] = tuple({c.rule_id: c for c in conds}.values())
        for ids, names in groups.items():
            out.append(
                SweepTarget(
                    id=f"{base}:anonymize:{','.join(names)}",
                    action="anonymize",
                    fields=tuple(names),
                    conditions=by_rules[ids],
                    **common,  # type: ignore[arg-type]
                )
            )
    return out


def _covers(outer: str | None, inner: str | None) -> bool:
    """Whether prefix ``outer`` (None: the whole bucket) contains prefix ``inner``."""
    return outer is None or (inner is not None and inner.startswith(outer))


def _s3_targets(store: S3Store, rules: Sequence[RetentionRule], now: datetime) -> list[SweepTarget]:
    out: list[SweepTarget] = []
    clock = Clock(None)
    for bucket in store.buckets:
        scoped: list[tuple[str | None, RetentionRule]] = []
        for rule in rules:
            if (
                rule.target_kind == "bucket"
                and rule.store == store.name
                and rule.bucket == bucket.name
            ):
                scoped.append((rule.prefix, rule))
            elif rule.target_kind == "category" and rule.category in bucket.categories:
                scoped.append((None, rule))
        prefixes = sorted({p for p, _ in scoped}, key=lambda p: (p is not None, p or ""))
        for prefix in prefixes:
            conds = tuple(_condition(r, clock, now) for p, r in scoped if _covers(p, prefix))
            narrower = tuple(
                p for p in prefixes if p is not None and p != prefix and _covers(prefix, p)
            )
            out.append(
                SweepTarget(
                    id=f"{store.name}/{bucket.name}/{prefix or ''}",
                    kind="s3",
                    store=store.name,
                    action="delete",
                    conditions=conds,
                    bucket=bucket.name,
                    prefix=prefix,
                    exclude_prefixes=narrower,
                )
            )
    return out


def _sql_reach(scope: HoldScope, target: SweepTarget) -> Reach:
    if scope.bucket is not None or scope.prefix is not None or scope.tag is not None:
        return "none"  # S3 scopes
    if scope.table is not None and scope.table != target.table:
        return "none"
    return "part" if scope.subject is not None else "whole"


def _s3_reach(scope: HoldScope, target: SweepTarget) -> Reach:
    if scope.table is not None or (scope.bucket is not None and scope.bucket != target.bucket):
        return "none"
    if scope.prefix is not None and not _covers(scope.prefix, target.prefix):
        inside = target.prefix is None or scope.prefix.startswith(target.prefix)
        return "part" if inside else "none"
    return "part" if scope.subject is not None or scope.tag is not None else "whole"


def hold_reach(hold: LegalHold, target: SweepTarget) -> Reach:
    """How much of ``target`` a hold's scope covers: none, part (per row/object) or whole."""
    if hold.scope.store is not None and hold.scope.store != target.store:
        return "none"
    if target.kind == "sql":
        return _sql_reach(hold.scope, target)
    return _s3_reach(hold.scope, target)


def with_holds(target: SweepTarget, holds: Sequence[LegalHold], today: date) -> SweepTarget:
    """``target`` with the holds active on ``today`` that cover all or part of it."""
    whole: list[str] = []
    part: list[LegalHold] = []
    for hold in holds:
        if not hold.active_on(today):
            continue
        reach = hold_reach(hold, target)
        if reach == "whole":
            whole.append(hold.id)
        elif reach == "part":
            part.append(hold)
    return replace(
        target, holds=tuple(sorted(whole)), partial_holds=tuple(sorted(part, key=lambda h: h.id))
    )


def resolve_targets(
    config: LifecycleConfig, now: datetime, rule_ids: Sequence[str] = ()
) -> list[SweepTarget]:
    """Every sweep target of the configuration at ``now``, with its conditions and holds.

    ``rule_ids`` limits the sweep to targets those rules contribute to (their conditions
    still include every other rule on the same data, so a narrowed sweep never deletes
    earlier than a full one would).
    """
    rules = config.policy.retention
    known = {r.id for r in rules}
    unknown = [r for r in rule_ids if r not in known]
    if unknown:
        from core.errors import NotFoundError

        raise NotFoundError(
            f"no retention rule named {', '.join(repr(u) for u in unknown)} "
            f"(known: {', '.join(sorted(known)) or 'none'})",
        )
    targets: list[SweepTarget] = []
    for store in config.inventory.stores:
        if isinstance(store, SqlStore):
            targets.extend(_sql_targets(store, rules, now))
        else:
            targets.extend(_s3_targets(store, rules, now))
    if rule_ids:
        wanted = set(rule_ids)
        targets = [t for t in targets if wanted & {c.rule_id for c in t.conditions}]
    today = utc_naive(now).date()
    return [with_holds(t, config.policy.legal_holds, today) for t in targets]
