"""The transfer policy: where each data category may be stored, and under which safeguard.

Data may always stay ``home`` (a region group such as the EEA, or one region). Anywhere
else needs a route per category naming the legal safeguard (GDPR chapter V): an
adequacy decision, standard contractual clauses (with the document reference and an
expiry to re-review), binding corporate rules, or explicit consent.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field

from config.schema.common import Name, NonEmpty, Region, Strict, shaped

Safeguard = Literal["home", "adequacy", "scc", "bcr", "consent"]

GroupName = Annotated[
    str,
    shaped(
        r"^[A-Za-z][A-Za-z0-9_-]*$",
        "must start with a letter and contain only letters, digits, '_' or '-'",
        max_length=63,
    ),
]
CountryCode = Annotated[
    str, shaped(r"^[A-Z]{2}$", "must be an ISO 3166 two-letter country code such as CH")
]


class Adequacy(Strict):
    """An adequacy decision covering the regions located in ``country``."""

    country: CountryCode
    regions: Annotated[tuple[Region, ...], NonEmpty]
    decided: date


class TransferRoute(Strict):
    """One allowed destination (region group or region) for a category, and why."""

    destination: str = Field(min_length=1, description="A region group name or a region.")
    safeguard: Safeguard
    reference: str | None = Field(
        default=None, min_length=1, description="The SCC or BCR document reference."
    )
    expires: date | None = Field(default=None, description="When the safeguard must be renewed.")


class TransferPolicy(Strict):
    """The ``transfers`` section of policy.yaml."""

    home: str = Field(min_length=1, description="Region group or region where data belongs.")
    region_groups: dict[GroupName, tuple[Region, ...]] = Field(default_factory=dict)
    adequacy: tuple[Adequacy, ...] = ()
    categories: dict[Name, tuple[TransferRoute, ...]] = Field(default_factory=dict)

    def regions_of(self, destination: str) -> frozenset[str]:
        """The regions a destination stands for: a group's members, or the region itself."""
        return frozenset(self.region_groups.get(destination, (destination,)))

    def home_regions(self) -> frozenset[str]:
        """The regions data may always be stored in."""
        return self.regions_of(self.home)

    def adequate_regions(self) -> frozenset[str]:
        """Regions covered by an adequacy decision."""
        return frozenset(region for decision in self.adequacy for region in decision.regions)

    def routes_for(self, category: str) -> tuple[TransferRoute, ...]:
        """The declared routes for ``category`` (home is always allowed besides these)."""
        return self.categories.get(category, ())
