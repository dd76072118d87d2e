"""The connector contract: what every store type does, and what some store types can do.

``Connector`` holds the operations every store has (locate, export, plan, execute,
verify); optional operations (rectification, retention sweeps, subject scans for legal
holds) are protocols of their own, asked for through ``connectors.registry`` (``require``,
``supports``), which refuses a missing one with ``Unsupported``. Flows branch on
``Capabilities`` and on these protocols, never on a store type. Plans and findings are plain,
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
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from core.errors import TerminalError
from core.pseudonym import Pseudonym, Pseudonymizer

if TYPE_CHECKING:
    from config.schema.inventory import IdentityColumn
    from incidents.scope import ScopePart
    from retention.targets import SweepTarget

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
    reference: str | None = field(default=None, compare=False)
    """The store's own reference for the work (a processor's request id), for the ledger;
    None for stores that give none. Never personal data."""


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
    """One store of the inventory: what every store type does for a data-subject request.

    Optional operations are separate protocols below (``Rectifying``, ``Sweeping``,
    ``SweepFinishing``, ``SubjectScanning``); a connector offers one by having its methods,
    and callers ask ``connectors.registry.require`` or ``supports`` for it, never for a
    store type.
    """

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

    def close(self) -> None:
        """Release connections."""
        ...


# -- optional capabilities ---------------------------------------------------------------
#
# Each is a runtime-checkable protocol: ``isinstance(connector, Sweeping)`` (or
# ``registry.supports``/``registry.require``) tells whether a connector offers it, and
# mypy narrows on it. A store type implements them structurally, by having the methods.


class Unsupported(TerminalError):
    """A store was asked for an optional operation its connector does not offer."""

    def __init__(self, store: str, store_type: str, capability: str) -> None:
        super().__init__(
            f"store '{store}' (type {store_type}) does not support {capability}",
            store=store,
            store_type=store_type,
            capability=capability,
        )
        self.store = store
        self.store_type = store_type
        self.capability = capability


@runtime_checkable
class Rectifying(Protocol):
    """Corrects a subject's data field by field (rows; not objects)."""

    def changes_for(self, changes: Mapping[str, str]) -> dict[str, str]:
        """The corrections (``table.column`` or field -> text) that name this store's data.

        Config only (no store access): intake refuses a correction no store claims.
        """
        ...

    def identity_columns_for(self, name: str) -> tuple[IdentityColumn, ...]:
        """The identity columns the correction ``name`` writes (config only).

        Intake checks and normalizes its value by their format, as a request's identity.
        """
        ...

    def identities_after(
        self, identities: Identities, changes: Mapping[str, str]
    ) -> dict[str, frozenset[str]]:
        """``identities`` plus the new values of corrected identity fields (to re-locate)."""
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


@runtime_checkable
class Sweeper(Protocol):
    """One retention sweep target in one store: counts, keyset batches and their execution.

    A batch's keys are read first (``next_batch``: count and digest, recorded as the
    intent), then its range is acted on (``apply``); re-applying a range whose data is
    gone changes nothing, which is what makes a resumed sweep exact.
    """

    @property
    def exact_counts(self) -> bool:
        """Whether ``counts`` and ``next_batch`` see every expired key (a keyset query).

        True lets a first pass stop once the planned count is done; False (a listing
        that may skip keys) reads on until ``next_batch`` finds nothing.
        """
        ...

    def batch_size(self, requested: int) -> int:
        """The batch size to use when the sweep asks for ``requested`` (rows per batch)."""
        ...

    def counts(self) -> tuple[int, int]:
        """(expired data the sweep will act on, expired data kept by holds or locks)."""
        ...

    def next_batch(self, cursor: Key | None, size: int) -> SweepBatch | None:
        """The next batch of expired, unheld keys after ``cursor``; None when none are left."""
        ...

    def apply(self, batch: SweepBatch) -> int:
        """Act on the batch's range (delete or anonymize); how many rows or objects changed."""
        ...


@runtime_checkable
class TransactionalSweeper(Sweeper, Protocol):
    """A sweeper that can also read and delete a batch in one store transaction."""

    @property
    def deletes_in_one_transaction(self) -> bool:
        """Whether ``delete_next`` applies to this target (else: ``next_batch``/``apply``)."""
        ...

    def delete_next(
        self, cursor: Key | None, size: int, before_commit: Callable[[SweepBatch], None]
    ) -> SweepBatch | None:
        """Find and delete the next batch; ``before_commit`` records it before the COMMIT."""
        ...


@runtime_checkable
class Sweeping(Protocol):
    """Retention sweeps: expired data deleted or anonymized in batches."""

    def sweeper(
        self, target: SweepTarget, *, today: date, held_keys: frozenset[Key] = frozenset()
    ) -> Sweeper:
        """A sweeper for one of this store's targets, leaving ``held_keys`` alone.

        ``held_keys`` are keys ``target_keys`` gave for subjects under a legal hold.
        """
        ...

    def target_keys(self, target: SweepTarget, findings: Findings) -> frozenset[Key]:
        """The keys of ``findings`` (a subject's, this store's) within ``target``.

        In the form ``sweeper(held_keys=...)`` takes; empty for another store's findings.
        """
        ...


@runtime_checkable
class SweepFinishing(Protocol):
    """Work after a swept target is done (e.g. reclaiming storage so data is unrecoverable)."""

    def finish_sweep(self, target: SweepTarget) -> None: ...


@runtime_checkable
class BatchLocating(Protocol):
    """Locates many subjects at once, with set-based statements (bulk requests).

    A store without it is searched subject by subject (``Connector.locate`` in a loop);
    callers ask ``registry.supports(connector, BatchLocating)``.
    """

    def locate_many(self, subjects: Sequence[Identities]) -> list[Findings]:
        """Per subject, in order, exactly what ``locate`` finds for it alone.

        ``locate_many(subjects)[i] == locate(subjects[i])``: the same rows, linked and
        withheld rows, ``via``, derived identities and warnings; a row two subjects reach
        (a household's address) is in both. The store's statements depend on its schema
        and on key batches, not on the number of subjects.
        """
        ...


SubjectValues = dict[str, dict[str, set[str]]]
"""Pseudonym -> identity kind -> the subject's values of that kind."""


@runtime_checkable
class SubjectScanning(Protocol):
    """Finds subjects by pseudonym: reads every identity value and pseudonymizes it.

    What a legal hold on a subject needs: a pseudonym cannot be reversed, so the stores
    that hold identities are scanned for the values that match it.
    """

    def scan_subjects(self, held: frozenset[str], pseudonymizer: Pseudonymizer) -> SubjectValues:
        """The identities of the subjects in ``held`` (pseudonyms) found in this store."""
        ...


class AwaitingConfirmation(TerminalError):
    """The store's work needs a person: an operator does it and confirms (a manual processor).

    Raised by ``execute`` after ``on_prepared`` received the intents (``batches``), by
    ``in_effect`` for such intents (the store cannot tell by itself), and by ``rectify``
    (its one batch, never run before). A flow that knows it suspends with a form
    (``instructions``, no identity: the operator reads those from the register) and then
    passes the operator's answer to ``ManualConfirmation.confirm``; one that does not
    stops here (terminal), with nothing recorded as done. ``batches`` stay in our own
    tables: the message names the store, the action and counts only.
    """

    def __init__(
        self, store: str, action: str, batches: Sequence[BatchResult], instructions: str
    ) -> None:
        super().__init__(
            f"store '{store}': {action} awaits an operator's confirmation ({instructions})",
            store=store,
            action=action,
            counts={b.target: b.affected for b in batches},
        )
        self.store = store
        self.action = action
        self.batches = tuple(batches)
        self.instructions = instructions


@runtime_checkable
class ManualConfirmation(Protocol):
    """Records an operator's confirmation of work ``AwaitingConfirmation`` asked for."""

    def confirm(self, batches: Sequence[BatchResult], reference: str) -> list[BatchResult]:
        """The confirmed ``batches`` (from ``AwaitingConfirmation.batches``) as done, with the
        provider's ``reference`` the operator entered (checked: no free text)."""
        ...


UNASSIGNED = "unassigned"
"""The client ``ImpactCount.clients`` names for rows whose client column is empty."""


@dataclass(frozen=True)
class ImpactCount:
    """What one incident scope part holds, as counts only (never a key or a value).

    ``subjects`` counts distinct subjects by ``identity``: the identity column or derived
    identity (``customer_id``) that reaches the part's rows or objects; None when no
    identity reaches them (then ``subjects`` is 0). ``clients`` maps each distinct value of
    the inventory's client column to its distinct subjects (empty without one).
    """

    records: int
    subjects: int
    identity: str | None
    categories: tuple[str, ...]
    region: str | None
    clients: Mapping[str, int] = field(default_factory=dict)


@runtime_checkable
class ImpactCounting(Protocol):
    """Counts what an incident's scope part holds, and names the subjects it concerns.

    What an incident assessment asks of a store: exact counts in a bounded number of
    set-based statements (or listings), and, only for the encrypted affected-subjects
    package, the subjects' keys and their identities.
    """

    def count_impact(self, part: ScopePart) -> ImpactCount:
        """Records and distinct subjects in ``part`` (validated against the inventory)."""
        ...

    def affected_keys(self, part: ScopePart) -> Iterator[str]:
        """Each distinct subject in ``part`` once, as its value of ``count_impact().identity``."""
        ...

    def subject_identities(self, identity: str, values: Sequence[str]) -> Iterator[ExportItem]:
        """For subjects known by ``identity`` values: one item each with every identity
        column of their subject row (e-mail, customer number) and ``identity`` itself.
        Values this store cannot resolve are left out; an empty iterator when the store
        does not hold ``identity``'s subject table."""
        ...
