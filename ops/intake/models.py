"""What an intake request carries, and its problems as field names and messages.

The webhook sends JSON; the page posts a form with the same fields (identities as
``identity.<kind>``, corrections as ``table.column=value`` lines). Problems name the field
and what is wrong, never the value: pydantic's error input is dropped, a key is named only
when it is a plain identifier, and ``scrub`` is the backstop for any message that would
still carry a submitted value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError

from core.errors import LifecycleError

DEFAULT_REQUESTER = "help-desk"
IDENTITY_PREFIX = "identity."
KEY = "(a key)"  # stands for a key that is not a plain name (it could be a value)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_CHANGE = r"^(?:[A-Za-z_][A-Za-z0-9_$]*\.)?[A-Za-z_][A-Za-z0-9_$]*$"
_NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"

IdentityKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
IdentityValue = Annotated[str, StringConstraints(min_length=1, max_length=512)]
ChangeName = Annotated[str, StringConstraints(pattern=_CHANGE, max_length=129)]
ChangeValue = Annotated[str, StringConstraints(max_length=4000)]


class IntakeRequest(BaseModel):
    """A data-subject request as the webhook (JSON) and the page (form) submit it."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    kind: str = Field(min_length=1, max_length=32, description="access, rectification, erasure")
    identity: dict[IdentityKind, IdentityValue] = Field(
        min_length=1, max_length=16, description="Identity kind -> value, e.g. email."
    )
    changes: dict[ChangeName, ChangeValue] | None = Field(
        default=None, max_length=200, description="Rectification: table.column -> new value."
    )
    requested_by: str = Field(default=DEFAULT_REQUESTER, min_length=1, max_length=128)
    ticket: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=_NO_CONTROL, description="Ticket id."
    )
    note: str = Field(default="", max_length=4000)
    recipient_public_key: str | None = Field(default=None, max_length=2000)
    passphrase: SecretStr | None = Field(default=None, min_length=1, max_length=1024)

    def values(self) -> list[str]:
        """The submitted values no response may contain (keys and kind are names, checked)."""
        found = [self.requested_by, self.note, *self.identity.values()]
        found += list((self.changes or {}).values())
        found += [v for v in (self.ticket, self.recipient_public_key) if v]
        if self.passphrase is not None:
            found.append(self.passphrase.get_secret_value())
        return found


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: the field (None: the request as a whole) and why."""

    field: str | None
    message: str

    def as_dict(self) -> dict[str, str | None]:
        return {"field": self.field, "message": self.message}


class IntakeRefused(Exception):
    """A request refused before anything was registered; ``status`` is the HTTP status."""

    def __init__(self, problems: Sequence[Problem], status: int = 422) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = list(problems)
        self.status = status


def loc_name(loc: Sequence[int | str]) -> str | None:
    """A dotted field path from a pydantic location, with unsafe keys left out."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(str(part))
        elif part != "[key]" and _NAME.match(part.replace(".", "_").replace("$", "_")):
            parts.append(part)
        elif not parts or parts[-1] != KEY:  # a key's own error follows the key
            parts.append(KEY)
    return ".".join(parts) or None


def validation_problems(error: ValidationError) -> list[Problem]:
    """pydantic's errors as problems: location and message, never the input."""
    problems = []
    for item in error.errors(include_input=False, include_url=False, include_context=False):
        message = str(item["msg"])
        if item["type"] == "string_pattern_mismatch":
            message = "has characters or a form this field does not take"
        problems.append(Problem(loc_name(item["loc"]), message))
    return problems


def parse_json(data: Any) -> IntakeRequest:
    """The request in a decoded JSON body; IntakeRefused naming the fields otherwise."""
    if not isinstance(data, dict):
        raise IntakeRefused([Problem(None, "the body must be a JSON object")])
    try:
        return IntakeRequest.model_validate(data)
    except ValidationError as e:
        raise IntakeRefused(validation_problems(e)) from None


def parse_form(fields: Mapping[str, list[str]]) -> IntakeRequest:
    """The request in the page's form fields (blank ones left out)."""
    from engine.intake import parse_changes

    data: dict[str, Any] = {}
    identity: dict[str, str] = {}
    for name, values in fields.items():
        safe = name if _NAME.match(name.replace(".", "_")) else "(a field)"
        if len(values) > 1:
            raise IntakeRefused([Problem(safe, "is given more than once")])
        value = values[0]
        if not value.strip():
            continue
        if name.startswith(IDENTITY_PREFIX):
            identity[name.removeprefix(IDENTITY_PREFIX)] = value.strip()
        elif name == "changes":
            lines = [line for line in value.splitlines() if line.strip()]
            try:
                data["changes"] = parse_changes(lines)
            except LifecycleError as e:
                raise IntakeRefused([Problem("changes", e.message)]) from None
        else:
            data[name] = value.strip() if name != "passphrase" else value
    data["identity"] = identity
    return parse_json(data)


_FIELD_HINTS = (
    ("unknown request kind", "kind"),
    ("requested_by", "requested_by"),
    ("identity", "identity"),
    ("correction", "changes"),
    ("rectification", "changes"),
    ("recipient", "recipient_public_key"),
    ("package", "recipient_public_key"),
    ("public key", "recipient_public_key"),
)


def submit_problems(error: LifecycleError) -> list[Problem]:
    """Problems from ``engine.intake.submit``'s refusals, each naming the field it concerns."""
    from core.free_text import FreeTextRefused
    from core.identity_values import IdentityValueError
    from engine.intake import CorrectionError

    if isinstance(error, IdentityValueError):
        if error.correction is not None:
            return [Problem(f"changes.{error.correction}", error.problem)]
        return [Problem(f"identity.{error.kind}", error.problem)]
    if isinstance(error, CorrectionError):
        return [Problem("changes", problem) for problem in error.problems]
    if isinstance(error, FreeTextRefused):
        if error.field == "ticket":
            return [Problem("ticket", f"holds {error.found}; a ticket id must not")]
        return [Problem(error.field, error.message)]
    lowered = error.message.lower()
    field = next((name for hint, name in _FIELD_HINTS if hint in lowered), None)
    return [Problem(field, error.message)]


def scrub(problems: Iterable[Problem], values: Iterable[str]) -> list[Problem]:
    """``problems`` with any message or field that holds a submitted value made generic."""
    secrets = [v for v in values if len(v.strip()) >= 3]

    def clean(text: str | None, generic: str | None) -> str | None:
        if text is not None and any(v in text for v in secrets):
            return generic
        return text

    return [
        Problem(clean(p.field, "(a field)"), clean(p.message, "invalid value") or "")
        for p in problems
    ]
