"""The subject-request flow's inputs and outcome, as pydantic models Prefect can show.

``RequestOutcome`` is what a run returns and the CLI prints: counts and statuses only,
never identities. (The deployment form takes a request id alone: identities are registered
by the CLI or the intake service, never given to Prefect.)
"""

from __future__ import annotations

from pydantic import BaseModel, Field

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_DEFERRED = 4  # as listed for every command in ``cli.output.EXIT_CODES``


class StoreOutcome(BaseModel):
    """One store's part of a request: how far it got and the counts (no keys, no values)."""

    store: str
    phase: str
    found: int = 0
    affected: int = 0
    deferred: int = 0
    remaining: int = 0
    skipped_reason: str | None = None


class TableOutcome(BaseModel):
    """One table (bucket, provider) of one store: what was found and what became of it.

    ``deleted``, ``masked``, ``exported`` and ``rectified`` count what was done (committed
    batches; the access package); ``planned`` what the plan will do before it is done.
    ``kept`` and ``deferred`` are left untouched on purpose, each with its reason;
    ``remaining`` is what verification found wrong afterwards (erasure: rows that should be
    gone; access: records missing from the package; rectification: rows no longer found).
    Counts and policy reasons only: no keys, no values.
    """

    store: str
    target: str
    phase: str
    found: int = 0
    deleted: int = 0
    masked: int = 0
    masked_reason: str | None = None
    exported: int = 0
    rectified: int = 0
    unlinked: int = 0
    kept: int = 0
    kept_reason: str | None = None
    deferred: int = 0
    deferred_reason: str | None = None
    deferred_until: str | None = None
    remaining: int = 0
    planned: dict[str, int] = Field(default_factory=dict)
    note: str | None = None  # a skipped store's reason, "nothing found", an unlink's reason


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
    """How a request ended (or stands): status, per-store and per-table counts, deferrals,
    what was kept, the package."""

    request_id: str
    kind: str
    status: str
    stores: list[StoreOutcome] = Field(default_factory=list)
    tables: list[TableOutcome] = Field(default_factory=list)
    deferrals: list[Deferral] = Field(default_factory=list)
    kept: list[Kept] = Field(default_factory=list)
    package: PackageOutcome | None = None

    @property
    def exit_code(self) -> int:
        """0 completed, 4 completed with deferrals, 1 failed or rejected (or still open)."""
        if self.status != "completed":
            return EXIT_FAILED
        return EXIT_DEFERRED if self.deferrals else EXIT_COMPLETED


class FailureReport(BaseModel):
    """Why a run of a request stopped, for one line on the terminal: the stores that failed
    (none: the request as a whole), the step, the reason (a product error's message, free of
    personal data) and the command that resumes it (None: it cannot be, or the reason says
    how)."""

    request_id: str
    stores: list[str] = Field(default_factory=list)
    step: str | None = None
    reason: str
    hint: str | None = None  # how to fix it, where the reason alone does not say
    resume: str | None = None
    log: str | None = None

    def line(self) -> str:
        """``request ID failed in store 'crm' while executing: REASON; resume: COMMAND``."""
        where = ""
        if self.stores:
            names = ", ".join(f"'{s}'" for s in self.stores)
            where = f" in store{'s' if len(self.stores) > 1 else ''} {names}"
        verb = "failed" if self.stores or self.step else "stopped"
        step = f" while {self.step}" if self.step else ""
        resume = f"; resume: {self.resume}" if self.resume else ""
        reason = self.reason
        if len(self.stores) == 1:  # the store named once: "store 'crm': ..." says it again
            for said in (f"store '{self.stores[0]}': ", f"store '{self.stores[0]}' is "):
                reason = reason.removeprefix(said)
        hint = f"; {self.hint}" if self.hint else ""
        return f"request {self.request_id} {verb}{where}{step}: {reason}{hint}{resume}"
