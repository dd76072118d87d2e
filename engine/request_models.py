"""The subject-request flow's inputs and outcome, as pydantic models Prefect can show.

``RequestOutcome`` is what a run returns and the CLI prints: counts and statuses only,
never identities. (The deployment form takes a request id alone: identities are registered
by the CLI or the intake service, never given to Prefect.)
"""

from __future__ import annotations

from pydantic import BaseModel, Field

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_DEFERRED = 4


class StoreOutcome(BaseModel):
    """One store's part of a request: how far it got and the counts (no keys, no values)."""

    store: str
    phase: str
    found: int = 0
    affected: int = 0
    deferred: int = 0
    remaining: int = 0
    skipped_reason: str | None = None


class Deferral(BaseModel):
    """Data not erased now, and why (a legal hold or lock), with the date it ends if known."""

    store: str
    target: str
    count: int
    reason: str | None = None
    until: str | None = None


class Kept(BaseModel):
    """The subject's rows left untouched because they are not theirs alone, and why."""

    store: str
    target: str
    count: int
    reason: str | None = None


class PackageOutcome(BaseModel):
    """The access package written: where, its SHA-256, size and record count."""

    location: str
    sha256: str
    size: int


class RequestOutcome(BaseModel):
    """How a request ended (or stands): status, per-store counts, deferrals, package."""

    request_id: str
    kind: str
    status: str
    stores: list[StoreOutcome] = Field(default_factory=list)
    deferrals: list[Deferral] = Field(default_factory=list)
    kept: list[Kept] = Field(default_factory=list)
    package: PackageOutcome | None = None

    @property
    def exit_code(self) -> int:
        """0 completed, 4 completed with deferrals, 1 failed or rejected (or still open)."""
        if self.status != "completed":
            return EXIT_FAILED
        return EXIT_DEFERRED if self.deferrals else EXIT_COMPLETED
