"""What the posture check reads from a processor store: plain facts, judged by ``posture_rules``.

``connectors.processor.posture`` gathers them from the configuration alone (the provider
is not asked); each ``ProcessorFacts`` judges itself against the transfer policy
(``transfers.posture.PostureFacts``). Imports no client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.schema.transfers import TransferPolicy
    from transfers.findings import Finding


@dataclass(frozen=True)
class ProcessorFacts:
    """One processor store: where the provider processes the data, under which agreement."""

    store: str
    provider: str
    region: str
    categories: tuple[str, ...] = ()
    agreement_reference: str | None = None
    agreement_expires: date | None = None  # None with a reference: never (not allowed)
    mode: str = "api"

    @property
    def posture_key(self) -> str:
        """The store itself (store names are unique across the inventory)."""
        return f"store:{self.store}"

    @property
    def counted_as(self) -> str:
        return "processors"

    def findings(self, policy: TransferPolicy | None, today: date) -> list[Finding]:
        """Everything wrong with this processor (``posture_rules.processor_findings``)."""
        from connectors.processor.posture_rules import processor_findings

        return processor_findings(self, policy, today)
