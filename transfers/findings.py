"""Findings of the transfer and posture check, and how one run compares with the last.

A finding says precisely what is wrong: the rule broken, its severity, the store and
resource, the evidence read from the store, the data categories affected and the
safeguard that is missing or expired. Its ``key`` (rule, store, resource) identifies it
across runs, so each run reports findings as new, persisting or resolved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["high", "medium", "low"]
SEVERITY_ORDER: Mapping[str, int] = {"high": 0, "medium": 1, "low": 2}


@dataclass(frozen=True)
class Finding:
    """One way a store falls short of the transfer or security policy."""

    rule: str
    severity: Severity
    store: str | None
    resource: str
    evidence: str
    categories: tuple[str, ...] = ()
    safeguard: str = ""

    @property
    def key(self) -> str:
        """Identity across runs: the same rule broken by the same resource."""
        return f"{self.rule}|{self.store or '-'}|{self.resource}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["categories"] = list(self.categories)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        return cls(
            rule=data["rule"],
            severity=data["severity"],
            store=data.get("store"),
            resource=data["resource"],
            evidence=data["evidence"],
            categories=tuple(data.get("categories", ())),
            safeguard=data.get("safeguard", ""),
        )


def ordered(findings: Iterable[Finding]) -> list[Finding]:
    """High first, then by rule, store and resource (stable output for people and tests)."""
    return sorted(
        findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.rule, f.store or "", f.resource)
    )


@dataclass(frozen=True)
class Comparison:
    """This run's findings against the previous run's."""

    new: tuple[Finding, ...]
    persisting: tuple[Finding, ...]
    resolved: tuple[Finding, ...]

    @property
    def current(self) -> tuple[Finding, ...]:
        return self.new + self.persisting

    @property
    def high(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.current if f.severity == "high")

    def status_of(self, finding: Finding) -> str:
        return "new" if finding in self.new else "persisting"


def compare(previous: Iterable[Finding], current: Iterable[Finding]) -> Comparison:
    """Split ``current`` into new and persisting, and list what ``previous`` had that is gone."""
    before = {f.key: f for f in previous}
    now = {f.key: f for f in current}
    return Comparison(
        new=tuple(ordered(f for k, f in now.items() if k not in before)),
        persisting=tuple(ordered(f for k, f in now.items() if k in before)),
        resolved=tuple(ordered(f for k, f in before.items() if k not in now)),
    )
