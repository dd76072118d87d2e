"""A SQL store's retention sweep targets: a table's rows (delete) or some of its fields.

The ``sweep_targets`` hook of the SQL type (``connectors.catalog``), a
``retention.targets.SweepTargets``: ``retention.targets`` assembles every store's targets
through it, ``retention.explain`` parses and words ``store.table[.column]`` with it. Pure
data: no database is touched.

Resolution, per table:

- Table rules give their table a delete condition, or anonymize conditions on their fields.
- Category rules reach every table with fields of that category (measured from the
  table's ``timestamps.created``). A ``delete`` category rule deletes a table's rows only
  when all of the table's categorised fields are of that category; in a table that also
  holds other categories it anonymizes the category's fields instead, so data of another
  category is never removed before its own period.
- Anonymize conditions are grouped per field: a field covered by two anonymize rules waits
  for both. Delete and anonymize are different stages (anonymize at 3 years, delete at
  10) and do not combine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from config.schema.policy import HoldScope, RetentionRule
from config.schema.stores import StoreConfig
from connectors.sql.config import SqlStore, Table
from core.errors import NotFoundError
from retention.targets import Clock, Condition, Reach, Subject, SweepTarget, expiry_condition


def _sql(store: StoreConfig) -> SqlStore:
    if not isinstance(store, SqlStore):
        raise TypeError(f"store '{store.name}' is not a SQL store")
    return store


def _table_clock(rule: RetentionRule, created: str | None) -> Clock | None:
    if rule.measured_from is not None and rule.measured_from.column is not None:
        return Clock(rule.measured_from.column, tuple(rule.measured_from.via))
    return Clock(created) if created is not None else None


class _Collector:
    """Delete and per-field anonymize conditions of one table."""

    def __init__(self) -> None:
        self.delete: list[Condition] = []
        self.anonymize: dict[str, list[Condition]] = {}

    def add_fields(self, fields: Iterable[str], condition: Condition) -> None:
        for name in fields:
            self.anonymize.setdefault(name, []).append(condition)


def _collect(
    store: SqlStore, table: Table, rules: Sequence[RetentionRule], now: datetime
) -> _Collector:
    """The delete and anonymize conditions the rules put on one table."""
    created = table.timestamps.created if table.timestamps else None
    collected = _Collector()
    categorised = {c for cats in table.fields.values() for c in cats}
    for rule in rules:
        own = rule.target_kind == "table" and (rule.store, rule.table) == (store.name, table.name)
        if own:
            clock = _table_clock(rule, created)
            if clock is None:
                continue  # refused by config validation; never guess a clock
            cond = expiry_condition(rule, clock, now)
            if rule.action == "delete":
                collected.delete.append(cond)
            else:
                collected.add_fields(rule.fields, cond)
        elif rule.target_kind == "category" and rule.category in categorised:
            if created is None:
                continue  # refused by config validation
            cond = expiry_condition(rule, Clock(created), now)
            if rule.action == "delete" and categorised == {rule.category}:
                collected.delete.append(cond)
            else:
                collected.add_fields(rule.fields or table.fields_in(str(rule.category)), cond)
    return collected


def keys_personal(table: Table) -> bool:
    """Whether the table's row keys may be personal data (then the ledger hashes them).

    A declared primary key is personal when one of its columns is an identity column or a
    personal field; an undeclared (reflected) one is taken to be personal in a table with
    identity columns of its own, whose key may well be one of them.
    """
    personal = {i.column for i in table.identity} | set(table.fields)
    if table.primary_key:
        return bool(personal & set(table.primary_key))
    return bool(table.identity)


def _table_targets(
    store: SqlStore, table: Table, rules: Sequence[RetentionRule], now: datetime
) -> list[SweepTarget]:
    collected = _collect(store, table, rules, now)
    personal = keys_personal(table)
    base = f"{store.name}.{table.name}"
    out: list[SweepTarget] = []
    if collected.delete:
        out.append(
            SweepTarget(
                id=f"{base}:delete",
                kind=store.type,
                store=store.name,
                label=base,
                action="delete",
                conditions=tuple(collected.delete),
                table=table.name,
                keys_personal=personal,
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
                kind=store.type,
                store=store.name,
                label=base,
                action="anonymize",
                conditions=by_rules[ids],
                table=table.name,
                fields=tuple(names),
                keys_personal=personal,
            )
        )
    return out


class SqlSweepTargets:
    """The ``retention.targets.SweepTargets`` of SQL stores: tables and their fields."""

    noun = "a SQL store"
    syntax = ("store.table", "store.table.column")
    deletes = "rows are deleted"

    def resolve(
        self, store: StoreConfig, rules: Sequence[RetentionRule], now: datetime
    ) -> list[SweepTarget]:
        sql = _sql(store)
        return [t for table in sql.tables for t in _table_targets(sql, table, rules, now)]

    def hold_reach(self, scope: HoldScope, target: SweepTarget) -> Reach:
        if scope.bucket is not None or scope.prefix is not None or scope.tag is not None:
            return "none"  # object-store scopes
        if scope.table is not None and scope.table != target.table:
            return "none"
        return "part" if scope.subject is not None else "whole"

    def store_of(self, text: str) -> str | None:
        parts = text.split(".")
        return parts[0] if "/" not in text and len(parts) in (2, 3) else None

    def subject(self, store: StoreConfig, text: str) -> Subject:
        sql = _sql(store)
        parts = text.split(".")
        tables = {t.name: t for t in sql.tables}
        table = tables.get(parts[1])
        if table is None:
            known = ", ".join(sorted(tables))
            raise NotFoundError(f"no table '{parts[1]}' in store '{parts[0]}' (known: {known})")
        column = parts[2] if len(parts) == 3 else None
        if column is not None and column not in table.fields:
            raise NotFoundError(f"'{column}' is not a declared field of {parts[0]}.{parts[1]}")
        return Subject(parts[0], sql.type, table=parts[1], column=column)

    def covers(self, target: SweepTarget, subject: Subject) -> bool:
        if target.table != subject.table:
            return False
        return (
            subject.column is None or target.action == "delete" or subject.column in target.fields
        )
