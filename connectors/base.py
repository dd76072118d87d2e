"""The connector contract: what every store type does for a data-subject request.

Flows branch on ``Capabilities`` (never on ``isinstance``). Plans and findings are plain,
frozen data: they can be built and tested without a store, recorded in our own tables,
summarized for approval with counts only, and executed later (or again, after a crash).
Keys are the store's own row or object identifiers (primary keys, object keys with
version ids); they never leave our own databases, and the ledger only sees their digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from core.pseudonym import Pseudonym

JsonScalar = str | int | bool | None
Key = tuple[JsonScalar, ...]
"""A row's primary key values in key-column order, or (object key, version id) on S3."""

Identities = Mapping[str, frozenset[str]]
"""Identity kind (email, customer_number, customer_id, ...) -> the subject's values."""


def _key_order(key: Key) -> tuple[tuple[int, int | str], ...]:
    # Integers in numeric order, everything else by its repr: a total order over mixed
    # values, and for integer keys the order a database's key index already has, so the
    # same digest can be computed in SQL without sorting (``connectors.sql.sweep``).
    return tuple(
        (0, v) if isinstance(v, int) and not isinstance(v, bool) else (1, repr(v)) for v in key
    )


def keys_digest(keys: Sequence[Key]) -> str:
    """SHA-256 over the sorted canonical keys: proves which keys were touched, reveals none."""
    canonical = json.dumps(sorted(keys, key=_key_order), separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def merge_identities(*parts: Identities) -> dict[str, frozenset[str]]:
    """Union of identity mappings (a store's derived identities feed later stores)."""
    merged: dict[str, frozenset[str]] = {}
    for part in parts:
        for kind, values in part.items():
            merged[kind] = merged.get(kind, frozenset()) | values
    return merged


@dataclass(frozen=True)
class Capabilities:
    """What a store type can do; flows and planners branch on these flags."""

    kind: str
    transactional: bool  # a store-wide transaction makes an erasure all-or-nothing
    can_mask: bool  # fields can be overwritten in place (rows), not just deleted
    versioned: bool  # deletion must remove every version (object stores)
    derives_identities: bool  # what it finds becomes identities for later stores


SHARED_REASON = "referenced by rows outside this request"
"""Why a row of the subject's is kept untouched: others' rows still reference it."""
WITHHELD_REASON = "belongs to another person"
"""Why a row the subject's rows point at is neither exported nor changed."""


class Action(StrEnum):
    """What an erasure does to one target's matching data."""

    DELETE = "delete"
    MASK = "mask"
    DEFER = "defer"  # legal hold, object lock: not touched now, reported with a reason
    KEEP = "keep"  # policy keeps it (e.g. no personal fields), recorded
    UNLINK = "unlink"  # clear (set NULL) references to rows being deleted; keys: those rows
    RECTIFY = "rectify"  # personal fields corrected on request (rectification batches)


@dataclass(frozen=True)
class TargetFinding:
    """The subject's data in one table or bucket."""

    target: str
    keys: tuple[Key, ...]
    categories: tuple[str, ...] = ()
    via: str = ""  # how it was reached, e.g. "identity:email" or "orders.customer_id"
    records: int | None = None  # access records the keys yield; None: one per key
    linked: tuple[Key, ...] = ()
    """Keys (among ``keys``) of rows the subject's own rows point at, not owned by them."""
    withheld: tuple[Key, ...] = ()
    """Rows the subject's rows point at that belong to another person: not in ``keys``,
    never exported or changed, reported as kept."""


@dataclass(frozen=True)
class Findings:
    """Everything one store holds for a subject, and the identities it derives."""

    store: str
    targets: tuple[TargetFinding, ...] = ()
    derived: Mapping[str, frozenset[str]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # e.g. traversal columns without an index

    @property
    def total(self) -> int:
        return sum(len(t.keys) for t in self.targets)

    def counts(self) -> dict[str, int]:
        """Matches per target, for summaries and the ledger."""
        return {t.target: len(t.keys) for t in self.targets}

    def record_counts(self) -> dict[str, int]:
        """Records an access package must hold per target (a delete marker holds none)."""
        return {t.target: len(t.keys) if t.records is None else t.records for t in self.targets}


@dataclass(frozen=True)
class MaskSpec:
    """Overwrite ``column`` with a value of kind ``mask`` (null, redact, hash, pseudonym)."""

    column: str
    mask: str


@dataclass(frozen=True)
class TargetPlan:
    """One step of a plan: an action on a set of keys of one target."""

    target: str
    action: Action
    keys: tuple[Key, ...]
    masks: tuple[MaskSpec, ...] = ()
    reason: str | None = None
    until: str | None = None  # ISO date a deferral ends (retain-until, hold end), if known

    @property
    def count(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class StorePlan:
    """What an erasure will do in one store, steps in execution order (children first)."""

    store: str
    steps: tuple[TargetPlan, ...] = ()
    warnings: tuple[str, ...] = ()

    def summary(self) -> list[dict[str, Any]]:
        """Counts per target and action: safe to show in the UI and record in the ledger."""
        return [
            {
                "store": self.store,
                "target": s.target,
                "action": str(s.action),
                "count": s.count,
                "reason": s.reason,
            }
            for s in self.steps
        ]

    def digest(self) -> str:
        """Digest of every key the plan touches, per step."""
        parts = [f"{s.target}:{s.action}:{keys_digest(s.keys)}" for s in self.steps]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """Serializable form, stored in our own tables so a rerun can resume the plan."""
        return {
            "store": self.store,
            "warnings": list(self.warnings),
            "steps": [
                {
                    "target": s.target,
                    "action": str(s.action),
                    "keys": [list(k) for k in s.keys],
                    "masks": [[m.column, m.mask] for m in s.masks],
                    "reason": s.reason,
                    "until": s.until,
                }
                for s in self.steps
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StorePlan:
        return cls(
            store=data["store"],
            warnings=tuple(data.get("warnings", ())),
            steps=tuple(
                TargetPlan(
                    target=s["target"],
                    action=Action(s["action"]),
                    keys=tuple(tuple(k) for k in s["keys"]),
                    masks=tuple(MaskSpec(c, m) for c, m in s["masks"]),
                    reason=s.get("reason"),
                    until=s.get("until"),
                )
                for s in data["steps"]
            ),
        )


@dataclass(frozen=True)
class BatchResult:
    """The outcome of one executed batch: how many rows/objects, and which (as a digest).

    ``keys`` and ``intent`` serve exactly-once auditing (see ``Connector.execute``) and
    stay in our own tables: the ledger sees only the count and the digest.
    """

    store: str
    target: str
    action: Action
    affected: int
    keys_digest: str
    keys: tuple[Key, ...] = field(default=(), repr=False, compare=False)
    """The keys the batch acted on (or, in an intent, is about to act on)."""
    intent: int | None = field(default=None, compare=False)
    """For stores whose batches take effect one by one: the index, in what ``on_prepared``
    received, of the intent this result completes."""


@dataclass(frozen=True)
class SweepBatch:
    """Keys ``lo`` (exclusive; None: from the start) to ``hi`` (inclusive), read before acting.

    A retention sweep reads a batch's keys first (their count and digest are recorded),
    then acts on the key range in one short step; re-applying a range whose data is gone
    changes nothing, which is what makes a resumed sweep exact.
    """

    lo: Key | None
    hi: Key
    count: int
    keys_digest: str


@dataclass(frozen=True)
class Verification:
    """A re-scan after execution: anything left that the plan said would be gone."""

    store: str
    remaining: Mapping[str, int]  # target -> matches that should be gone
    deferred: Mapping[str, int]  # target -> matches the plan deferred (expected to remain)
    masked: Mapping[str, int]  # target -> masked rows still present (expected)
    kept: Mapping[str, int] = field(default_factory=dict)
    """target -> rows kept because rows outside the request reference them (expected)."""

    @property
    def clean(self) -> bool:
        return not any(self.remaining.values())


@dataclass(frozen=True)
class ExportItem:
    """One exported record (a row or an object) with its categories, for an access package."""

    store: str
    target: str
    categories: tuple[str, ...]
    data: Mapping[str, Any]  # row as column -> JSON value; object as metadata + base64 body


OnBatch = Callable[[BatchResult], None]
OnPrepared = Callable[[Sequence[BatchResult]], None]
"""Receives batches before they take effect, so their intents are durable first."""


class Connector(Protocol):
    """One store of the inventory, able to locate, export, erase, rectify and verify."""

    name: str
    capabilities: Capabilities

    def locate(self, identities: Identities) -> Findings:
        """Find the subject's data from identities (and derived identities of earlier stores)."""
        ...

    def export(self, findings: Findings) -> Iterator[ExportItem]:
        """Stream what was found, in bounded batches, for the encrypted access package."""
        ...

    def plan_erasure(
        self, findings: Findings, today: str, subject: Pseudonym | None = None
    ) -> StorePlan:
        """Decide per target: delete, mask, defer (holds, locks) or keep. Pure of side effects.

        ``subject`` lets holds scoped to one subject's pseudonym apply.
        """
        ...

    def execute(
        self, plan: StorePlan, on_batch: OnBatch, on_prepared: OnPrepared | None = None
    ) -> list[BatchResult]:
        """Carry out ``plan``; ``on_batch`` is called after each batch took effect.

        ``on_prepared`` makes the audit exactly-once: a transactional store calls it with
        every batch of its transaction (counts and keys) inside that transaction, just
        before COMMIT, and an exception from it rolls the transaction back; ``on_batch``
        follows after the commit. A store without transactions calls it before its first
        call with every batch it is about to send (``affected``: the keys it will try),
        and each ``on_batch`` result names its intent (``BatchResult.intent``).
        """
        ...

    def in_effect(self, plan: StorePlan, batches: Sequence[BatchResult]) -> list[BatchResult]:
        """Per batch that ``execute`` of ``plan`` prepared, the keys whose effect is in the store.

        Deleted keys gone, masked rows masked (or gone), unlinked references cleared
        (``affected``: how many). What a resumed request asks about intents a crash left
        unconfirmed: whether a transaction committed, or which keys a non-transactional
        call deleted. Read-only.
        """
        ...

    def verify(self, identities: Identities, plan: StorePlan) -> Verification:
        """Re-scan and report anything left that should be gone."""
        ...

    def rectify(self, findings: Findings, changes: Mapping[str, str]) -> list[BatchResult]:
        """Write corrected values (``table.column`` or field -> text) to the found data."""
        ...

    def check_changes(self, changes: Mapping[str, str]) -> list[str]:
        """What ``rectify`` would refuse in ``changes``, checked without writing (at intake).

        One line per problem, naming the store, ``table.column`` and what the column
        expects, never the value; empty when every correction fits.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...
