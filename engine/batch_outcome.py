"""What a batch run returns and the CLI prints: one line per request, counts by status.

Request ids, line numbers, statuses and counts only: never an identity.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from engine.request_models import EXIT_COMPLETED, EXIT_DEFERRED, EXIT_FAILED


class BatchItem(BaseModel):
    """One request of the batch: its line in the file, where it stands, why if not done."""

    line: int
    request_id: str
    kind: str
    status: str
    deferred: int = 0
    exit_code: int = EXIT_FAILED
    error: str | None = None


class BatchOutcome(BaseModel):
    """How a batch run left its requests."""

    batch_id: str
    items: list[BatchItem] = Field(default_factory=list)
    refused_lines: int = 0
    """Lines of the file that were not registered (reported when the batch was submitted)."""

    def counts(self) -> dict[str, int]:
        """Requests per status (``completed`` split off when some data was deferred)."""
        counter = Counter(
            "completed with deferrals" if i.status == "completed" and i.deferred else i.status
            for i in self.items
        )
        return dict(sorted(counter.items()))

    @property
    def exit_code(self) -> int:
        """1 when a request is not completed, else 4 when data was deferred, else 0 (the
        single request's codes, worst first). Refused lines are the submission's (exit 2)."""
        if any(i.status != "completed" for i in self.items):
            return EXIT_FAILED
        return EXIT_DEFERRED if any(i.deferred for i in self.items) else EXIT_COMPLETED
