"""Inventory drift: what the live stores hold that the inventory does not say, and the reverse.

Each store type with a drift reader (``DRIFT_READERS``: ``discovery.drift_sql``,
``discovery.drift_s3``) compares one store's live catalog with its declaration and
returns ``DriftFinding``s; stores of other types are listed as unchecked. Findings name
tables, columns, buckets and prefixes, count sampled values and say which kinds of
personal data the samples looked like: never a value. Their ``key`` (rule, store,
resource) identifies them across runs, so each run reports them as new, persisting or
resolved (as the transfer check does, ``transfers.findings``).

Severity (README, "Inventory drift"):

- high: an undeclared table holding an enforced foreign key into a declared table (an
  erasure of the declared rows fails at run time); an undeclared table, column, bucket
  or prefix whose samples look personal; a declared table, column or bucket that vanished
  (requests on the store fail);
- medium: a declared table no identity reaches (requests never find its rows); an
  undeclared table, bucket or prefix whose samples do not look personal.

An undeclared column that does not look personal is no finding: inventories name
personal columns only.

A store's ``ignore:`` entries (each with its reason) drop the findings they name, and the
run counts how many it dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, cast

from config.schema.model import LifecycleConfig
from config.schema.stores import StoreConfig
from connectors.catalog import spec_for
from connectors.hooks import load_hook

Severity = Literal["high", "medium", "low"]
# No rule is low now; checks recorded by earlier versions may hold low findings.
SEVERITY_ORDER: Mapping[str, int] = {"high": 0, "medium": 1, "low": 2}

DECLARE = "declare it in inventory.yaml, or add an ignore entry with the reason"
RULES: Mapping[str, tuple[Severity, str]] = {
    "sql.table-vanished": ("high", "restore the table, or remove it from inventory.yaml"),
    "sql.column-vanished": ("high", "restore the column, or remove it from inventory.yaml"),
    "sql.undeclared-fk-holder": (
        "high",
        "declare the table (its rows are erased with the rows they reference), or drop the "
        "foreign key",
    ),
    "sql.undeclared-personal-table": ("high", DECLARE),
    "sql.undeclared-personal-column": ("high", DECLARE + " (add it to the table's fields)"),
    "sql.unreachable-table": (
        "medium",
        "declare an identity column or a reference (with follow:) that reaches it",
    ),
    "sql.undeclared-table": ("medium", DECLARE),
    "s3.bucket-vanished": ("high", "restore the bucket, or remove it from inventory.yaml"),
    "s3.undeclared-personal-bucket": ("high", DECLARE),
    "s3.undeclared-personal-prefix": ("high", DECLARE + " (a key template for the prefix)"),
    "s3.personal-prefix-names": (
        "high",
        "keys must not be named after people: move the objects under a key template",
    ),
    "s3.undeclared-bucket": ("medium", DECLARE),
    "s3.undeclared-prefix": ("medium", DECLARE + " (a key template for the prefix)"),
}
"""Every rule: its severity and what to do about a finding."""


@dataclass(frozen=True)
class DriftFinding:
    """One difference between a live store and its declaration."""

    rule: str
    severity: Severity
    store: str
    resource: str
    """``table``, ``table.column``, ``holder(columns) -> table``, ``s3://bucket/prefix/``."""
    evidence: str
    """What was read: counts, kinds and shares of sampled values; never a value."""
    categories: tuple[str, ...] = ()
    action: str = ""

    @property
    def key(self) -> str:
        """Identity across runs: the same rule broken by the same resource."""
        return f"{self.rule}|{self.store}|{self.resource}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["categories"] = list(self.categories)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DriftFinding:
        return cls(
            rule=data["rule"],
            severity=data["severity"],
            store=data["store"],
            resource=data["resource"],
            evidence=data["evidence"],
            categories=tuple(data.get("categories", ())),
            action=data.get("action", ""),
        )


def finding(
    rule: str, store: str, resource: str, evidence: str, categories: Iterable[str] = ()
) -> DriftFinding:
    """A finding of ``rule``, with the rule's severity and action."""
    severity, action = RULES[rule]
    return DriftFinding(
        rule, severity, store, resource, evidence, tuple(sorted(set(categories))), action
    )


def ordered(findings: Iterable[DriftFinding]) -> list[DriftFinding]:
    """High first, then by rule, store and resource (stable output for people and tests)."""
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.rule, f.store, f.resource))


@dataclass(frozen=True)
class DriftComparison:
    """This run's findings against the previous run's."""

    new: tuple[DriftFinding, ...]
    persisting: tuple[DriftFinding, ...]
    resolved: tuple[DriftFinding, ...]

    @property
    def current(self) -> tuple[DriftFinding, ...]:
        return tuple(ordered(self.new + self.persisting))

    @property
    def high(self) -> tuple[DriftFinding, ...]:
        return tuple(f for f in self.current if f.severity == "high")

    def status_of(self, f: DriftFinding) -> str:
        return "new" if f in self.new else "persisting"


def compare(previous: Iterable[DriftFinding], current: Iterable[DriftFinding]) -> DriftComparison:
    """Split ``current`` into new and persisting; list what ``previous`` had that is gone."""
    before = {f.key: f for f in previous}
    now = {f.key: f for f in current}
    return DriftComparison(
        new=tuple(ordered(f for k, f in now.items() if k not in before)),
        persisting=tuple(ordered(f for k, f in now.items() if k in before)),
        resolved=tuple(ordered(f for k, f in before.items() if k not in now)),
    )


@dataclass(frozen=True)
class StoreDrift:
    """One store's findings, what was read (``{"tables": 7, "sampled_columns": 3}``) and how
    many findings its ``ignore:`` entries dropped."""

    store: str
    findings: tuple[DriftFinding, ...]
    counts: Mapping[str, int] = field(default_factory=dict)
    ignored: int = 0


class DriftReader(Protocol):
    """Reads one store of a type and compares it with its declaration."""

    def __call__(
        self,
        config: LifecycleConfig,
        store: StoreConfig,
        *,
        account_wide: bool,
        sample_rows: int,
    ) -> StoreDrift: ...


DRIFT_READERS: Mapping[str, str] = {
    "sql": "discovery.drift_sql:read_drift",
    "s3": "discovery.drift_s3:read_drift",
}
"""Store type -> its drift reader (``"package.module:function"``, imported when run).
Belongs in ``connectors.catalog.StoreSpec`` as a hook like ``posture``."""

NO_DRIFT = "its type offers no drift check"


def drift_reader(store: StoreConfig) -> DriftReader | None:
    """The drift reader of ``store``'s type, its module imported now; None if it has none."""
    ref = DRIFT_READERS.get(spec_for(store).name)
    return None if ref is None else cast(DriftReader, load_hook(ref))


@dataclass(frozen=True)
class DriftStep:
    """One store to read; ``account_wide``: also list what its account holds (the first
    store of each type reads the account once for all of them)."""

    store: str
    account_wide: bool


def drift_steps(config: LifecycleConfig) -> tuple[tuple[DriftStep, ...], tuple[str, ...]]:
    """The stores to read, in inventory order, and those left unchecked (as messages)."""
    steps: list[DriftStep] = []
    unchecked: list[str] = []
    types_done: set[str] = set()
    for store in config.inventory.stores:
        spec = spec_for(store)
        if spec.name not in DRIFT_READERS:
            unchecked.append(f"store '{store.name}' (type {spec.name}): {NO_DRIFT}")
            continue
        steps.append(DriftStep(store.name, spec.name not in types_done))
        types_done.add(spec.name)
    return tuple(steps), tuple(unchecked)


def without_ignored(
    findings: Iterable[tuple[DriftFinding, tuple[str, str | None]]],
    matches: Callable[[str, str | None], bool],
) -> tuple[list[DriftFinding], int]:
    """The findings no ignore entry names, and how many were dropped. Each finding comes
    with the (part, sub-part) it is about: (table, column) or (bucket, prefix)."""
    kept: list[DriftFinding] = []
    dropped = 0
    for f, (part, sub) in findings:
        if matches(part, sub):
            dropped += 1
        else:
            kept.append(f)
    return kept, dropped
