"""The subject-request flow's inputs and outcome, as pydantic models Prefect can show.

``NewRequest`` is the deployment form: identity fields are ``SecretStr`` (a password
field in the UI, masked wherever Prefect serializes the model itself). ``RequestOutcome``
is what a run returns and the CLI prints: counts and statuses only, never identities.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from core.errors import TerminalError

IDENTITY_FIELDS = ("email", "customer_number", "phone")
EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_DEFERRED = 4


class NewRequest(BaseModel):
    """A data-subject request entered in the Prefect UI; registered, then removed from Prefect."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["access", "rectification", "erasure"] = Field(
        description="What the subject asked for: a copy of their data (access), a correction "
        "(rectification) or deletion (erasure)."
    )
    email: SecretStr | None = Field(
        default=None, description="The subject's e-mail address (matched without case)."
    )
    customer_number: SecretStr | None = Field(
        default=None, description="The subject's customer number."
    )
    phone: SecretStr | None = Field(default=None, description="The subject's phone number.")
    changes: SecretStr | None = Field(
        default=None,
        description="Rectification only: the corrected values, one `table.column=value` per line.",
    )
    requested_by: str = Field(
        description="Who registers the request (an operator or role, not the subject); "
        "the approver must be someone else."
    )
    recipient_public_key: str | None = Field(
        default=None,
        description="Access only: the subject's X25519 public key (base64), from "
        "`lifecycle request keygen`; the package is encrypted for it.",
    )
    passphrase: SecretStr | None = Field(
        default=None,
        description="Access only: a passphrase to encrypt the package with, instead of a key.",
    )

    def identity(self) -> dict[str, str]:
        """The identity values given (kind -> value)."""
        values = {
            name: secret.get_secret_value()
            for name in IDENTITY_FIELDS
            if (secret := getattr(self, name)) is not None and secret.get_secret_value().strip()
        }
        if not values:
            raise TerminalError(
                "a request needs at least one identity value: " + ", ".join(IDENTITY_FIELDS)
            )
        return values

    def change_lines(self) -> list[str]:
        """The rectification lines (``table.column=value``), blank lines dropped."""
        if self.changes is None:
            return []
        return [line for line in self.changes.get_secret_value().splitlines() if line.strip()]


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
