"""What erasure does to one row, from the policy: per-field rules, masks that fit, holds.

Pure: ``PlanContext`` answers for a table of the store (its fields' rules, the masks of a
retained row and the problems they would cause); ``hold_decision`` applies legal holds.
``planning`` assembles these into a plan (see its module doc for the numbered rules).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import UniqueConstraint

from config.schema import ErasurePolicy, ErasureRule, LegalHold
from connectors.base import Action, Key, MaskSpec
from connectors.sql.config import SqlStore
from connectors.sql.edges import Edge
from connectors.sql.masks import mask_problem
from connectors.sql.schema import StoreSchema
from core.errors import TerminalError
from core.pseudonym import Pseudonym

_PRECEDENCE = {"delete": 0, "mask": 1, "keep": 2}
NO_FIELDS = "no personal fields"


class PlanRefused(TerminalError):
    """The plan would break the schema (a mask that does not fit); nothing was run."""

    def __init__(self, store: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(
            f"store '{store}': erasure plan refused, {len(self.problems)} {noun}: "
            + "; ".join(self.problems),
            store=store,
            problems=self.problems,
        )


@dataclass(frozen=True)
class Decision:
    """What happens to one row (key); shared between the rows of a step."""

    action: Action
    masks: tuple[MaskSpec, ...] = ()
    reason: str | None = None
    until: str | None = None
    outside: bool = False  # another person's row the subject's rows point at (withheld)


def sort_key(key: Key) -> tuple[tuple[int, Any], ...]:
    """A total order over keys of JSON scalars (None, bools, numbers and text mixed)."""
    return tuple(
        (0, 0) if v is None else (1, v) if isinstance(v, int) else (2, str(v)) for v in key
    )


def joined(reasons: Iterable[str | None]) -> str | None:
    unique = sorted({r for r in reasons if r})
    return "; ".join(unique) or None


@dataclass(frozen=True)
class PlanContext:
    schema: StoreSchema
    store: SqlStore
    erasure: ErasurePolicy

    def enforced_fk_columns(self, table: str) -> frozenset[str]:
        return frozenset(c for e in self.schema.edges_from(table) if e.enforced for c in e.columns)

    def fields(self, table: str) -> dict[str, tuple[str, ...]]:
        return dict(self.store.table(table).fields)

    def masks(self, table: str) -> tuple[tuple[MaskSpec, ...], list[str]]:
        """The masks of every personal field of ``table`` and the problems they would cause."""
        sa_table = self.schema.tables[table]
        keys = set(self.schema.keys.get(table, ()))
        fks = self.enforced_fk_columns(table)
        specs: list[MaskSpec] = []
        problems: list[str] = []
        fields = self.fields(table)
        # Identity columns identify the person whether or not they are declared as fields:
        # a kept row must not keep them, and their mask must never be found again by an
        # identity lookup (NULL, else a per-row token; never a fixed marker).
        identity = {i.column for i in self.store.table(table).identity}
        for column in sorted({*fields, *identity}):
            col = sa_table.c[column]
            if column in identity:
                kind = identity_mask(col)
            else:
                rules = [self.erasure.rule_for(c) for c in fields[column]]
                if any(r.action == "keep" for r in rules):
                    continue
                chosen = next((r.mask for r in rules if r.action == "mask" and r.mask), None)
                kind = chosen or ("null" if col.nullable else "redact")
            where = f"{self.store.name}.{table}.{column}"
            if column in keys:
                problems.append(f"{where}: mask '{kind}' targets a key column")
            elif column in fks and kind != "null":
                problems.append(
                    f"{where}: mask '{kind}' on an enforced foreign key; only 'null' keeps "
                    "references valid"
                )
            else:
                problem = mask_problem(kind, col)
                if problem is not None:
                    problems.append(f"{where}: {problem}")
            specs.append(MaskSpec(column, kind))
        if specs:
            specs += self.link_nulls(table, {s.column for s in specs})
        return tuple(specs), problems

    def link_nulls(self, table: str, masked: set[str]) -> list[MaskSpec]:
        """A masked row also loses its ``target`` references (where NULL is allowed).

        The address or card a masked customer row points at would identify the person
        again, and would keep that row alive after everyone using it is erased.
        """
        sa_table = self.schema.tables[table]
        keys = set(self.schema.keys.get(table, ()))
        nulls: list[MaskSpec] = []
        for edge in self.schema.edges_from(table):
            if edge.follow != "target" or edge.child == edge.parent:
                continue
            columns = [c for c in edge.columns if c not in masked and c not in keys]
            if columns and all(sa_table.c[c].nullable for c in edge.columns):
                nulls += [MaskSpec(c, "null") for c in columns]
                masked.update(columns)
        return nulls

    def policy_decision(self, table: str) -> tuple[Decision, list[str]]:
        """The row decision from the erasure rule of each personal field (per field).

        Each field's rule is the longest-kept of its categories' rules. Every field deleted:
        the row goes. Otherwise the row stays and every field not kept is masked (identity
        columns always); nothing to mask: KEEP. No personal fields at all: KEEP (such a row
        goes only with a deleted parent, see ``_follow_parents``).
        """
        fields = self.fields(table)
        if not fields and not self.store.table(table).identity:
            return Decision(Action.KEEP, reason=NO_FIELDS), []
        per_field: list[ErasureRule] = []
        for cats in fields.values():
            rules = [self.erasure.rule_for(c) for c in cats] or [self.erasure.default]
            action = max((r.action for r in rules), key=_PRECEDENCE.__getitem__)
            per_field += [r for r in rules if r.action == action]
        if not per_field:
            per_field = [self.erasure.default]
        if all(r.action == "delete" for r in per_field):
            return Decision(Action.DELETE, reason=joined(r.reason for r in per_field)), []
        reason = joined(r.reason for r in per_field if r.action != "delete")
        masks, problems = self.masks(table)
        if not masks:
            return Decision(Action.KEEP, reason=reason), []
        return Decision(Action.MASK, masks, reason), problems

    def downgrade(self, table: str, child: str) -> Decision:
        """A deleted row that a retained row references: mask it if possible, else defer."""
        reason = f"referenced by retained {child}"
        masks, problems = self.masks(table)
        if masks and not problems:
            return Decision(Action.MASK, masks, reason)
        return Decision(Action.DEFER, reason=reason)

    def unlinkable(self, edge: Edge) -> bool:
        """Whether the edge's FK columns can be set NULL (nullable and not key columns)."""
        child = self.schema.tables[edge.child]
        keys = set(self.schema.keys.get(edge.child, ()))
        return all(child.c[c].nullable and c not in keys for c in edge.columns)


def identity_mask(column: Any) -> str:
    """The mask for an undeclared identity column: one that keeps UNIQUE constraints valid.

    NULL where allowed; otherwise a keyed hash or pseudonym (distinct per original value),
    whichever fits; else ``redact``, which ``mask_problem`` then reports if it cannot fit.
    """
    if column.nullable:
        return "null"
    for kind in ("hash", "pseudonym"):
        if mask_problem(kind, column) is None:
            return kind
    # A fixed marker would collide in a UNIQUE column once two subjects are masked: ask
    # for the hash, so the plan is refused with the width it needs.
    return "hash" if _is_unique(column) else "redact"


def _is_unique(column: Any) -> bool:
    table = column.table
    single = [column.name]
    return (
        bool(column.unique)
        or any(
            isinstance(c, UniqueConstraint) and [col.name for col in c.columns] == single
            for c in table.constraints
        )
        or any(i.unique and [col.name for col in i.columns] == single for i in table.indexes)
    )


def _hold_applies(hold: LegalHold, store: str, table: str, subject: Pseudonym | None) -> bool:
    scope = hold.scope
    if scope.bucket is not None or scope.prefix is not None or scope.tag is not None:
        return False  # object-store scopes
    if scope.store is not None and scope.store != store:
        return False
    if scope.table is not None and scope.table != table:
        return False
    return scope.subject is None or (subject is not None and scope.subject == subject)


def hold_decision(
    holds: Sequence[LegalHold], store: str, table: str, today: date, subject: Pseudonym | None
) -> Decision | None:
    active = [h for h in holds if h.active_on(today) and _hold_applies(h, store, table, subject)]
    if not active:
        return None
    # The longest hold decides when the rows may go: open-ended first, then latest end.
    hold = min(active, key=lambda h: (h.ends is not None, -(h.ends or today).toordinal(), h.id))
    until = hold.ends.isoformat() if hold.ends is not None else None
    return Decision(Action.DEFER, reason=f"legal hold {hold.id}: {hold.reason}", until=until)
