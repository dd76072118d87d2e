"""Identity values checked and normalized at intake, one rule per identity format.

An identity kind (``email``, ``phone``, ``customer_number``) has a *format* that says what
its values look like; the inventory declares it per identity column or lets it be
inferred from the kind's name (``infer_format``). Intake passes every value through
``normalize_identity`` before anything is registered, so a typo is refused up front
instead of silently finding nothing, and every store is searched with one spelling:

- ``email``: checked by email-validator (syntax only, no DNS); the local part is kept as
  given (stores differ on its case), the domain normalized as the library does
  (lower case, Unicode NFC / IDNA).
- ``phone``: parsed by phonenumbers in international form (``+`` and country code), must
  be a valid number, and becomes E.164 (``+442079460000``). Phone identity columns must
  therefore hold E.164: a store keeping ``020 7946 0000`` is not found by its number.
- ``text``: non-empty once surrounding whitespace is stripped, no control characters,
  at most 320 characters.
- ``integer``: ASCII digits with an optional leading minus, within 64 bits; normalized to
  its plain decimal form (no leading zeros).

Every format refuses mask tokens (``core.mask_tokens``): what an erasure wrote into a
masked column is never an identity. Errors name the identity kind and what is wrong,
never the value: identities are personal data.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal, get_args

from core.errors import TerminalError
from core.mask_tokens import is_mask_token

IdentityFormat = Literal["email", "phone", "text", "integer"]
FORMATS: tuple[IdentityFormat, ...] = get_args(IdentityFormat)
TEXT_MAX_LENGTH = 320
_INT64 = (-(2**63), 2**63 - 1)
_INTEGER = re.compile(r"-?[0-9]+")


class IdentityValueError(TerminalError):
    """A value that its identity format refuses; names the kind and the problem only.

    ``correction`` names the rectification (``table.column``) that carried the value,
    when it was a corrected value rather than a request's identity.
    """

    def __init__(self, kind: str, problem: str, *, correction: str | None = None) -> None:
        label = f"identity '{kind}'" if correction is None else f"correction '{correction}'"
        super().__init__(f"{label}: {problem}", kind=kind, problem=problem, correction=correction)
        self.kind = kind
        self.problem = problem
        self.correction = correction


def infer_format(kind: str) -> IdentityFormat:
    """The format of an identity kind declared without one, from its name.

    ``email`` or ``*_email`` is an e-mail address, ``phone`` or ``*_phone`` a phone
    number, anything else text.
    """
    if kind == "email" or kind.endswith("_email"):
        return "email"
    if kind == "phone" or kind.endswith("_phone"):
        return "phone"
    return "text"


def normalize_identity(kind: str, value: str, fmt: IdentityFormat) -> str:
    """``value`` checked against ``fmt`` and normalized; IdentityValueError if refused."""
    if not isinstance(value, str):
        raise IdentityValueError(kind, "must be text")
    text = value.strip()
    if not text:
        raise IdentityValueError(kind, "empty")
    if is_mask_token(text, ignore_case=True):
        raise IdentityValueError(kind, "a masked value (erasure token), not an identity")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise IdentityValueError(kind, "contains control characters")
    if fmt == "email":
        return _email(kind, text)
    if fmt == "phone":
        return _phone(kind, text)
    if fmt == "integer":
        return _integer(kind, text)
    if fmt == "text":
        if len(text) > TEXT_MAX_LENGTH:
            raise IdentityValueError(kind, f"longer than {TEXT_MAX_LENGTH} characters")
        return text
    raise ValueError(f"unknown identity format '{fmt}'")


# email-validator's messages (which may quote characters of the value), by a phrase they
# contain, in our own words; the first phrase found wins.
_EMAIL_PROBLEMS = (
    ("must have an @-sign", "the domain part is missing"),
    ("something after the @-sign", "the domain part is missing"),
    ("something before the @-sign", "the local part is missing"),
    ("too long", "too long"),
    ("after the @-sign", "the domain part is not valid"),
    ("before the @-sign", "the local part is not valid"),
    ("periods in a row", "two periods in a row"),
    ("period and a hyphen", "a period next to a hyphen"),
)


def _email_problem(message: str) -> str:
    """What is wrong with an address, from the library's message, never quoting it."""
    text = message.lower()
    return next((problem for phrase, problem in _EMAIL_PROBLEMS if phrase in text), "bad syntax")


def _email(kind: str, text: str) -> str:
    from email_validator import EmailNotValidError, validate_email  # ~80 ms: only when used

    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as e:
        raise IdentityValueError(
            kind, f"not a valid e-mail address ({_email_problem(str(e))})"
        ) from None
    # Unquoted local parts (the only ones accepted) hold no "@": everything before the
    # last one is the local part exactly as given; the library may have re-normalized it.
    local = text.rpartition("@")[0]
    return f"{local}@{result.domain}"


def _phone(kind: str, text: str) -> str:
    import phonenumbers  # ~130 ms: only when used

    errors = phonenumbers.NumberParseException
    problems = {
        errors.INVALID_COUNTRY_CODE: "give it in international form, + and a valid country code",
        errors.NOT_A_NUMBER: "it does not look like a phone number",
        errors.TOO_SHORT_AFTER_IDD: "too short",
        errors.TOO_SHORT_NSN: "too short",
        errors.TOO_LONG: "too long",
    }
    try:
        number = phonenumbers.parse(text, None)
    except errors as e:
        problem = problems.get(e.error_type, "it cannot be parsed")
        raise IdentityValueError(kind, f"not a valid phone number ({problem})") from None
    if number.extension:
        # E.164 has no extension: dropping it would search for the switchboard's number.
        raise IdentityValueError(kind, "not a valid phone number (extensions are not supported)")
    if not phonenumbers.is_valid_number(number):
        raise IdentityValueError(
            kind, "not a valid phone number (not a number in use for its country code)"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _integer(kind: str, text: str) -> str:
    if not _INTEGER.fullmatch(text):
        raise IdentityValueError(
            kind, "not an integer (digits only, with an optional leading minus)"
        )
    # Length first: int() of thousands of digits is slow, and refused past 4300.
    digits = text.lstrip("-").lstrip("0")
    if len(digits) > 19 or not _INT64[0] <= int(text) <= _INT64[1]:
        raise IdentityValueError(kind, "out of range (an integer must fit in 64 bits)")
    return str(int(text))


MAX_CASED_LETTERS = 8
"""Non-ASCII letters with a case partner that a case-insensitive identity may hold: each
doubles the spellings searched (2**8 = 256), see ``connectors.sql.casefold``."""


def cased_letters(value: str) -> int:
    """How many non-ASCII letters of ``value`` have a one-character case partner."""
    return sum(
        1
        for c in value
        if not c.isascii() and any(len(p) == 1 and p != c for p in (c.lower(), c.upper()))
    )


def check_case_insensitive(kind: str, value: str) -> None:
    """Refuse a value too rich in non-ASCII letters to be matched without case."""
    cased = cased_letters(value)
    if cased > MAX_CASED_LETTERS:
        raise IdentityValueError(
            kind,
            f"too many non-ASCII letters to match without case "
            f"({cased}, at most {MAX_CASED_LETTERS})",
        )
