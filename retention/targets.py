"""Retention rules resolved into sweep targets: pure data, no store is touched.

A *target* is one thing a sweep acts on: the rows of one table (delete), some fields of
one table's rows (anonymize), or the objects of one bucket under a prefix (delete, every
version). Each target carries the *conditions* under which data is expired; data is
acted on only when every condition holds, which is how overlapping rules resolve to the
longest retention (a 2-year and a 7-year rule on the same rows: rows go after 7 years).

Resolution is per store, by the store's type: the ``sweep_targets`` hook its
``connectors.catalog`` spec names (a ``SweepTargets``, in ``connectors/<type>/
retention_targets.py``) turns the rules reaching the store into targets and says how far
a legal hold's scope reaches into one of them. A type without the hook has no sweep
targets. This module holds the generic data (targets, conditions, clocks) and assembles
every store's targets.

Legal holds (``policy.legal_holds``) are matched here too: a hold whose scope covers a
whole target stops it (its data is counted as held); a narrower hold (a subject, a
prefix inside the target, a tag) is carried as *partial* and applied per row or object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from config.schema import LifecycleConfig
from config.schema.inventory import Reference
from config.schema.policy import HoldScope, LegalHold, RetentionRule
from config.schema.stores import SweepAudit
from connectors import catalog
from connectors.hooks import load_hook

if TYPE_CHECKING:
    from config.schema.stores import StoreConfig

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
    kind: str
    """The store's type (its ``type:``), whose ``sweep_targets`` hook resolved the target."""
    store: str
    label: str
    """Human name of what is acted on, as the type's hook words it: ``crm.customers`` or
    ``files/bucket/prefix``."""
    action: Action
    conditions: tuple[Condition, ...]
    table: str | None = None
    fields: tuple[str, ...] = ()
    bucket: str | None = None
    prefix: str | None = None
    exclude_prefixes: tuple[str, ...] = ()
    holds: tuple[str, ...] = ()  # active holds covering the whole target
    partial_holds: tuple[LegalHold, ...] = field(default=(), compare=False)
    audit: SweepAudit = "range"
    """What the ledger records per batch: ``range`` (rules, cut-offs, key range, count) or
    ``keys`` (also the digest of every key): ``keys`` if the store or any rule asks for it."""
    keys_personal: bool = False
    """Whether the target's keys may be personal data (an S3 bucket's
    ``keys_contain_personal_data``, a SQL key column that is an identity or personal
    field): the ledger then records the batch's range as keyed hashes, never the keys."""

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


@dataclass(frozen=True)
class Subject:
    """What ``lifecycle retention explain`` asks about: a part of a store, parsed by the
    store type's hook (``store.table.column``, ``store/bucket/key``)."""

    store: str
    kind: str
    """The store's type."""
    table: str | None = None
    column: str | None = None
    bucket: str | None = None
    key: str | None = None


@runtime_checkable
class SweepTargets(Protocol):
    """A store type's part in retention: what its catalog spec's ``sweep_targets`` names.

    The reference names a class; an instance resolves the type's sweep targets, says how
    far a hold's scope reaches into one, and parses and words what ``retention explain``
    is asked about. Each method is given stores and targets of its own type only.
    """

    @property
    def noun(self) -> str:
        """The type in a message: ``a SQL store``."""
        ...

    @property
    def syntax(self) -> tuple[str, ...]:
        """How ``retention explain`` names a part of such a store: ``store.table``, ..."""
        ...

    @property
    def deletes(self) -> str:
        """What a delete target's sweep does, in a verdict: ``rows are deleted``."""
        ...

    def resolve(
        self, store: StoreConfig, rules: Sequence[RetentionRule], now: datetime
    ) -> list[SweepTarget]:
        """The targets ``rules`` give the parts of ``store`` at ``now`` (holds not applied)."""
        ...

    def hold_reach(self, scope: HoldScope, target: SweepTarget) -> Reach:
        """How much of ``target`` ``scope`` covers (its store already matches)."""
        ...

    def store_of(self, text: str) -> str | None:
        """The store ``text`` names if it is in this type's ``syntax``, else None."""
        ...

    def subject(self, store: StoreConfig, text: str) -> Subject:
        """``text`` parsed against ``store``; NotFoundError names what it does not declare."""
        ...

    def covers(self, target: SweepTarget, subject: Subject) -> bool:
        """Whether ``target`` (in the subject's store) acts on data of ``subject``."""
        ...


def sweep_targets_of(spec: catalog.StoreSpec[Any]) -> SweepTargets | None:
    """The ``sweep_targets`` hook of a store type, its module imported now; None if none."""
    return None if spec.sweep_targets is None else _hook(spec.name, spec.sweep_targets)


@cache
def _hook(name: str, ref: str) -> SweepTargets:
    # One instance per reference: hold reach is asked per target and hold.
    hook = load_hook(ref)()
    if not isinstance(hook, SweepTargets):
        raise TypeError(
            f"the sweep_targets hook of store type '{name}' ({ref}) "
            f"gave a {type(hook).__name__}, not a retention.targets.SweepTargets"
        )
    return hook


def sweep_targets_for(kind: str) -> SweepTargets:
    """The hook of the store type named ``kind`` (a target's); LookupError if it has none."""
    for spec in catalog.STORE_TYPES:
        if spec.name == kind:
            hook = sweep_targets_of(spec)
            if hook is not None:
                return hook
    raise LookupError(f"store type '{kind}' has no sweep targets")


def utc_naive(moment: datetime) -> datetime:
    """``moment`` in UTC without tzinfo (naive values are taken to be UTC already)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def expiry_condition(rule: RetentionRule, clock: Clock, now: datetime) -> Condition:
    """The condition ``rule`` puts, at ``now``, on data whose age ``clock`` reads."""
    return Condition(
        rule_id=rule.id,
        age=str(rule.age),
        approx_days=rule.age.approx_days,
        clock=clock,
        cutoff=utc_naive(rule.age.before(now)),
    )


def hold_reach(hold: LegalHold, target: SweepTarget) -> Reach:
    """How much of ``target`` a hold's scope covers: none, part (per row/object) or whole."""
    if hold.scope.store is not None and hold.scope.store != target.store:
        return "none"
    return sweep_targets_for(target.kind).hold_reach(hold.scope, target)


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


def audited(target: SweepTarget, store: StoreConfig, rules: Sequence[RetentionRule]) -> SweepTarget:
    """``target`` with its audit mode: ``keys`` if any of its rules asks for key digests,
    or none says and its store does; ``range`` otherwise."""
    own = {c.rule_id for c in target.conditions}
    modes = {r.audit or store.retention_audit for r in rules if r.id in own}
    return replace(target, audit="keys" if "keys" in modes else "range")


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
        hook = sweep_targets_of(catalog.spec_for(store))
        if hook is not None:  # a type without the hook has no sweep targets
            targets.extend(audited(t, store, rules) for t in hook.resolve(store, rules, now))
    if rule_ids:
        wanted = set(rule_ids)
        targets = [t for t in targets if wanted & {c.rule_id for c in t.conditions}]
    today = utc_naive(now).date()
    return [with_holds(t, config.policy.legal_holds, today) for t in targets]
