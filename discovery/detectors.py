"""Classify a column from its name and sampled values: a proposed kind, category, evidence.

Formats are recognised by well-kept libraries (``email-validator``, ``phonenumbers``,
``python-stdnum`` for IBANs and card numbers with their check digits, the standard
``ipaddress``); person names and subject identifiers by column name, as no format tells
a name from any other text without a model. Evidence strings state the rule and the share
of sampled values that matched, never a value.

The work per column is bounded: at most ``CHECKED_VALUES`` values are checked against
each format, a larger sample being judged on that many values spread evenly over it, and a
format's check stops as soon as its verdict on them is certain either way (the evidence
then says how many values were checked, of how many sampled). An e-mail address's domain
is validated once per distinct domain and column (``EmailCheck``).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from stdnum import iban, luhn

VALUE_SHARE = 0.8
"""A format is proposed when at least this share of the non-empty sampled values match."""

CHECKED_VALUES = 200
"""At most this many of a column's non-empty sampled values are checked against a format:
all of them when there are no more, else this many spread evenly over the sample."""

NAME_TEXT_SHARE = 0.8
"""A name-like column is proposed when this share of its values are text without digits."""

CARD_LENGTHS = range(13, 20)
"""Payment card numbers are 13 to 19 digits (ISO/IEC 7812)."""

CATEGORIES = {
    "email": "contact",
    "phone": "contact",
    "person_name": "contact",
    "iban": "financial",
    "card_number": "financial",
    "ip_address": "telemetry",
    "identifier": "identifiers",
}
"""The policy category proposed for each kind (names as in the demo's policy.yaml)."""

_DESCRIBED = {
    "email": "e-mail addresses",
    "phone": "phone numbers",
    "iban": "IBANs with valid check digits",
    "card_number": "card numbers with a valid Luhn check digit",
    "ip_address": "IP addresses",
}

_PERSON_NAME = re.compile(
    r"^(?:(?:full|first|last|given|family|middle|maiden|sur|display|contact|customer|"
    r"billing|shipping|holder|account_holder|person|user|member|employee|patient|legal)_?)?"
    r"(?:name|surname|forename)s?$"
)
_IDENTIFIER = re.compile(
    r"^(?:customer|client|user|account|member|person|subscriber|patient|employee|"
    r"contact|citizen|student|tenant_user)_?(?:id|number|no|num|code|ref|reference|uuid)$"
    r"|^(?:ssn|national_id|passport_number|tax_id|social_security_number)$"
)
_EMAIL_NAME = re.compile(r"(?:^|_)e_?mail(?:_address)?$")
_PHONE_NAME = re.compile(r"(?:^|_)(?:phone|mobile|telephone|msisdn)(?:_number|_no)?$")
_IBAN_NAME = re.compile(r"(?:^|_)iban$")
_CARD_NAME = re.compile(r"(?:^|_)(?:card|pan|cc)_?(?:number|no|num)?$")
_IP_NAME = re.compile(r"(?:^|_)ip(?:_?addr(?:ess)?)?$")
_NAME_RULES = (
    ("email", _EMAIL_NAME),
    ("phone", _PHONE_NAME),
    ("iban", _IBAN_NAME),
    ("card_number", _CARD_NAME),
    ("ip_address", _IP_NAME),
)


@dataclass(frozen=True)
class Detection:
    """What a column probably holds, and why; ``evidence`` never quotes a value."""

    category: str
    kind: str
    share: float
    """The share of the checked non-empty values that matched (0.0 when by name only)."""
    sampled: int
    """How many non-empty values were checked against the format (``CHECKED_VALUES`` at
    most), or, for a kind found by name, were sampled."""
    evidence: str


_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_PLAIN_EMAIL = re.compile(rf"([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)\Z")
"""An address of plain ASCII parts: a dot-atom local part (RFC 5322) and a domain of
ASCII letters, digits and hyphens. For one no longer than ``_PLAIN_MAX`` characters the
library's verdict is its domain's (no length limit can apply, and the local part is one
it accepts as it is), so the domain is validated once for all the addresses it ends."""

_PLAIN_MAX = 64


def _library_says_email(value: str) -> bool:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


class EmailCheck:
    """``is_email`` with the verdict on each distinct domain of plain addresses kept for
    the checker's life (one column): the library's domain validation, the larger part of
    its work, then runs once per domain. Anything else is left to the library whole."""

    def __init__(self) -> None:
        self._domains: dict[str, bool] = {}

    def __call__(self, value: object) -> bool:
        if not isinstance(value, str) or "@" not in value:
            return False
        plain = _PLAIN_EMAIL.match(value) if len(value) <= _PLAIN_MAX else None
        if plain is None or "xn--" in plain.group(2).lower():  # IDNA: left to the library
            return _library_says_email(value)
        domain = plain.group(2)
        verdict = self._domains.get(domain)
        if verdict is None:
            verdict = self._domains[domain] = _library_says_email(f"a@{domain}")
        return verdict


def is_email(value: object) -> bool:
    """An e-mail address by RFC syntax (no DNS lookup)."""
    return EmailCheck()(value)


def is_phone(value: object) -> bool:
    """A valid phone number in international form (a leading + and a country code)."""
    if not isinstance(value, str) or not value.lstrip().startswith("+"):
        return False
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(value, None)))
    except phonenumbers.NumberParseException:
        return False


def is_iban(value: object) -> bool:
    """An IBAN whose country format and check digits are valid."""
    return isinstance(value, str) and len(value) >= 15 and bool(iban.is_valid(value))


def is_card_number(value: object) -> bool:
    """13 to 19 digits (spaces and dashes allowed) passing the Luhn check."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return False
    digits = re.sub(r"[ -]", "", str(value))
    return digits.isdigit() and len(digits) in CARD_LENGTHS and bool(luhn.is_valid(digits))


def is_ip_address(value: object) -> bool:
    """An IPv4 or IPv6 address (a string, or the address object a driver returns)."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return True
    if not isinstance(value, str) or not value or len(value) > 45:
        return False
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return True


def _is_name_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and not any(ch.isdigit() for ch in value)


_VALUE_RULES: tuple[tuple[str, Callable[[], Callable[[object], bool]]], ...] = (
    ("email", EmailCheck),
    ("iban", lambda: is_iban),
    ("card_number", lambda: is_card_number),
    ("ip_address", lambda: is_ip_address),
    ("phone", lambda: is_phone),
)
"""Each format's check, made afresh for each column (``EmailCheck`` keeps its domains)."""


def _needed(count: int) -> int:
    """The fewest matches among ``count`` values reaching VALUE_SHARE."""
    need = math.ceil(count * VALUE_SHARE)
    while need > 0 and (need - 1) / count >= VALUE_SHARE:
        need -= 1
    while need < count and need / count < VALUE_SHARE:
        need += 1
    return need


def _count_matching(
    values: Sequence[object], check: Callable[[object], bool], *, stop_when_met: bool
) -> tuple[int, int]:
    """(matches, values checked), checking ``values`` in turn until VALUE_SHARE of them
    is out of reach, or (``stop_when_met``) reached whatever the rest are."""
    need = _needed(len(values))
    allowed_misses = len(values) - need
    hits = misses = 0
    for value in values:
        if check(value):
            hits += 1
            if stop_when_met and hits >= need:
                break
        else:
            misses += 1
            if misses > allowed_misses:
                break
    return hits, hits + misses


def _spread(values: Sequence[object], count: int) -> Sequence[object]:
    """``count`` of ``values`` spread evenly over them (all of them if no more)."""
    total = len(values)
    if total <= count:
        return values
    return [values[(2 * i + 1) * total // (2 * count)] for i in range(count)]


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%"


def _by_value(column: str, values: Sequence[object]) -> Detection | None:
    """The first format at least VALUE_SHARE of the checked values match. Up to
    CHECKED_VALUES values are all checked (the share is exact); of a larger sample,
    CHECKED_VALUES spread over it are, each format's check stopping once its verdict on
    them is certain either way (the share is then that of the values checked)."""
    picked = _spread(values, CHECKED_VALUES)
    bounded = len(picked) < len(values)
    for kind, make_check in _VALUE_RULES:
        hits, checked = _count_matching(picked, make_check(), stop_when_met=bounded)
        if not picked or hits < _needed(len(picked)):
            continue
        share = hits / checked
        if bounded:
            counted = f"{checked:,} checked values (of {len(values):,} sampled)"
        else:
            counted = f"{len(values):,} sampled values"
        named = any(k == kind and rule.search(column) for k, rule in _NAME_RULES)
        evidence = f"{_pct(share)} of {counted} are {_DESCRIBED[kind]}" + (
            ", and the column name" if named else ""
        )
        return Detection(CATEGORIES[kind], kind, share, checked, evidence)
    return None


def _by_name(column: str, values: Sequence[object]) -> Detection | None:
    if _PERSON_NAME.match(column):
        if not values:
            return Detection("contact", "person_name", 0.0, 0, "column name; no values sampled")
        share = sum(map(_is_name_text, values)) / len(values)
        if share < NAME_TEXT_SHARE:
            return None
        evidence = f"column name, and {_pct(share)} of {len(values):,} sampled values are text"
        return Detection("contact", "person_name", share, len(values), evidence)
    if _IDENTIFIER.match(column):
        evidence = "column name (an identifier of a person or account)"
        return Detection(CATEGORIES["identifier"], "identifier", 0.0, len(values), evidence)
    if not values:  # an empty table: a telling column name is all there is to go on
        for kind, rule in _NAME_RULES:
            if rule.search(column):
                evidence = "column name; no values sampled"
                return Detection(CATEGORIES[kind], kind, 0.0, 0, evidence)
    return None


def classify(column: str, values: Sequence[object]) -> Detection | None:
    """What ``column`` probably holds, from its sampled ``values`` (None and blanks are
    ignored) and its name; None when nothing points at personal data."""
    present = [v for v in values if v is not None and not (isinstance(v, str) and not v.strip())]
    name = column.lower()
    return _by_value(name, present) or _by_name(name, present)
