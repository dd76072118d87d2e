"""One error tree for the whole product.

Callers branch on the two middle classes: a ``TransientError`` may succeed if retried
(Prefect tasks declare retries only for it); a ``TerminalError`` must stop the work,
be audited and be reported. Messages never carry personal data: structured fields name
the store, target and operation instead.
"""

from __future__ import annotations

from typing import Any


class LifecycleError(Exception):
    """Root of every error this product raises on purpose."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = fields

    def __str__(self) -> str:
        return self.message


class TransientError(LifecycleError):
    """A failure that may clear on retry (lock timeout, throttling, lost connection)."""


class TerminalError(LifecycleError):
    """A failure retrying cannot fix: stop, audit and report."""


class ConfigError(TerminalError):
    """Configuration is invalid; ``problems`` lists each one as ``file:line path: message``."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems or [message]


class InvalidInput(TerminalError):
    """What was given (an option, an argument, a value) is invalid as given: the CLI exits 2
    (a usage or validation error) and nothing was changed."""


class NotFoundError(TerminalError):
    """A named thing (request, store, table) does not exist."""


class IntegrityError(TerminalError):
    """The audit ledger or a checkpoint failed verification."""


class PersonalDataRefused(TerminalError):
    """Something tried to put raw personal data where only pseudonyms may go."""
