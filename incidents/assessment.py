"""An incident's assessment as data: counts per scope part and in total, never a key or value.

Built by ``incidents.assess`` from the stores, judged by ``incidents.rules``, stored as
JSON in the incident register and summarized in the ledger and the assessment artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class AtRestFact:
    """Whether a store's data in scope is encrypted at rest, and who holds the key."""

    encrypted: bool | None  # None: the store could not say and the inventory does not
    key_held_by: str | None = None
    evidence: str = ""


@dataclass(frozen=True)
class PartAssessment:
    """One scope part: what it holds, by counts."""

    label: str
    store: str
    records: int
    subjects: int
    identity: str | None
    categories: tuple[str, ...]
    region: str | None
    clients: Mapping[str, int] = field(default_factory=dict)
    at_rest: AtRestFact = AtRestFact(encrypted=None)

    @property
    def unintelligible(self) -> bool:
        """Encrypted at rest (the key's compromise is judged for the whole incident)."""
        return self.records == 0 or self.at_rest.encrypted is True


@dataclass(frozen=True)
class Assessment:
    """The whole scope: per part and in total, with the risk the policy's rules give."""

    parts: tuple[PartAssessment, ...]
    records: int
    subjects: int
    subjects_by: tuple[str, ...]  # the identities subjects were counted by
    categories: tuple[str, ...]
    high_risk_categories: tuple[str, ...]
    regions: tuple[str, ...]
    clients: Mapping[str, int]
    key_compromised: bool | None
    unintelligible: bool
    risk: str = "low"
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (tuples as lists), for the register and artifacts."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Assessment:
        parts = tuple(
            PartAssessment(
                **{
                    **p,
                    "categories": tuple(p["categories"]),
                    "clients": dict(p["clients"]),
                    "at_rest": AtRestFact(**p["at_rest"]),
                }
            )
            for p in data["parts"]
        )
        return cls(
            parts=parts,
            records=data["records"],
            subjects=data["subjects"],
            subjects_by=tuple(data["subjects_by"]),
            categories=tuple(data["categories"]),
            high_risk_categories=tuple(data["high_risk_categories"]),
            regions=tuple(data["regions"]),
            clients=dict(data["clients"]),
            key_compromised=data["key_compromised"],
            unintelligible=data["unintelligible"],
            risk=data["risk"],
            reasons=tuple(data["reasons"]),
        )

    def ledger_counts(self) -> dict[str, int]:
        """The counts the ledger records for the assessment."""
        return {
            "parts": len(self.parts),
            "records": self.records,
            "subjects": self.subjects,
            "clients": len(self.clients),
            "high_risk_categories": len(self.high_risk_categories),
        }
