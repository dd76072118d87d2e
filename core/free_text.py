"""Operator free text (notes, reasons) refused when it holds an e-mail address or phone number.

Notes are kept verbatim in the request register and, from the approval form, in Prefect's
flow run input: neither may hold personal data. Intake, the CLI and the approval path call
``check_free_text`` before anything is stored; the refusal names the field and what was
found, never the value.

Detection uses the validators that check identities (``core.identity_values``): cheap
patterns pick candidates, the libraries confirm them, so ordinary notes (ticket numbers,
dates, counts, IP addresses) pass.

- E-mail: every word holding an ``@`` (split at spaces and the brackets, quotes and
  punctuation that surround addresses in prose), confirmed by email-validator.
- Phone, international form (``+`` or ``00`` and a country code): found and confirmed by
  phonenumbers (``PhoneNumberMatcher``, valid numbers only).
- Phone, national form: 7 to 15 digits written the way people write phone numbers (a
  ``0`` trunk prefix, a parenthesized area code, or the North-American 3-3-4 grouping),
  confirmed as a valid number of some country by phonenumbers. Without a country code no
  region can be assumed, so the shape does most of the work here: a bare run of digits not
  starting with 0 (an order or ticket number) is not a phone number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

from core.errors import PersonalDataRefused

EMAIL = "an e-mail address"
PHONE = "a phone number"

# Characters that end a word around an address in prose: "Name <a@example.com>", "(a@...)".
_WORD_BREAK = re.compile(r"[\s<>()\[\]{},;:\"]+")
_WORD_TRIM = ".!?'`*"
_MAILTO = "mailto"

# National-form phone shapes, tried at every start position (the lookahead makes matches
# overlap, so a number right after a date or another number is still tried on its own).
_NATIONAL = re.compile(
    r"""
    (?<![\w+])(?=(
        \(\d{2,5}\)[\s./-]?\d{2,5}(?:[\s./-]?\d{2,5}){1,3}   # (030) 901820, (202) 555-0143
      | 0\d{1,4}[\s/-]\d{2,8}(?:[\s./-]\d{2,5}){0,3}         # 020 7946 0000, 030/901820
      | 0\d{8,11}                                            # 07700900123
      | \d{3}[\s.-]\d{3}[\s.-]\d{4}                          # 202-555-0143
    )(?!\w))
    """,
    re.VERBOSE,
)
# International form after an IDD "00" (phonenumbers needs a "+" to know no region).
_IDD = re.compile(r"(?<![\w+])00(?=[1-9])([\d\s()./-]{6,24}\d)")
_MIN_DIGITS = 7
_MAX_DIGITS = 15


class FreeTextRefused(PersonalDataRefused):
    """Free text holding personal data; a usage error (CLI exit 2), naming the field only."""

    def __init__(self, field: str, found: str) -> None:
        super().__init__(
            f"{field}: holds {found}; notes must not contain personal data",
            field=field,
            found=found,
        )
        self.field = field
        self.found = found


def check_free_text(field: str, text: str) -> None:
    """Raise FreeTextRefused when ``text`` holds an e-mail address or a phone number.

    ``field`` is how the caller names the text to the person who typed it (``--note``,
    ``note``, ``--reason``); the message names it and what was found, never the value.
    """
    found = personal_data_in(text)
    if found is not None:
        raise FreeTextRefused(field, found)


def personal_data_in(text: str) -> str | None:
    """What personal data ``text`` holds (``EMAIL`` or ``PHONE``), or None."""
    if not isinstance(text, str) or not text:
        return None
    if any(_is_email(word) for word in _email_candidates(text)):
        return EMAIL
    if _has_phone(text):
        return PHONE
    return None


def _email_candidates(text: str) -> Iterator[str]:
    if "@" not in text:
        return
    for part in _WORD_BREAK.split(text.replace(_MAILTO + ":", " ")):
        word = part.strip(_WORD_TRIM)
        if "@" in word:
            yield word


def _is_email(word: str) -> bool:
    from email_validator import EmailNotValidError, validate_email  # ~80 ms: only when used

    try:
        validate_email(word, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def _has_phone(text: str) -> bool:
    if sum(c.isdigit() for c in text) < _MIN_DIGITS:
        return False
    import phonenumbers  # ~130 ms: only when the text holds enough digits

    matcher = phonenumbers.PhoneNumberMatcher(text, None, leniency=phonenumbers.Leniency.VALID)
    if matcher.has_next():
        return True
    for match in _IDD.finditer(text):
        if _valid_international("+" + match.group(1)):
            return True
    return any(_valid_national(m.group(1)) for m in _NATIONAL.finditer(text))


def _digits(candidate: str) -> str:
    return "".join(c for c in candidate if c.isdigit())


def _valid_international(candidate: str) -> bool:
    import phonenumbers

    if not _MIN_DIGITS <= len(_digits(candidate)) <= _MAX_DIGITS:
        return False
    matcher = phonenumbers.PhoneNumberMatcher(candidate, None, leniency=phonenumbers.Leniency.VALID)
    return bool(matcher.has_next())


def _valid_national(candidate: str) -> bool:
    digits = _digits(candidate)
    if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS:
        return False
    # The number's own digits decide (the separators do not), so cache by them.
    return _valid_in_some_region(digits)


@lru_cache(maxsize=256)
def _valid_in_some_region(digits: str) -> bool:
    import phonenumbers

    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        try:
            number = phonenumbers.parse(digits, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True
    return False
