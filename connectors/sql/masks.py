"""Mask kinds for SQL erasure: what each writes, which columns it fits, how to recognise it.

A mask overwrites a personal field in a row that must stay (an invoice kept for the tax
office). Four kinds, as in the policy:

- ``null``: the column becomes NULL; the column must be nullable.
- ``redact``: a fixed marker (``[redacted]``, 10 characters); string columns with room.
- ``hash``: keyed HMAC-SHA256 (hex, 64 characters) of the original under the pseudonym
  key: equal originals stay equal (joins and counts keep working) but cannot be read back
  without the key. String columns with room.
- ``pseudonym``: the product's ``psn_`` pseudonym of the original (36 characters), with the
  column name as the identity kind, so a column named ``email`` gets the pseudonym the
  audit ledger uses for that address. String columns with room.

``mask_problem`` refuses a mask that would violate the column's type, length or NOT NULL
before anything runs; ``masked_clause`` recognises masked values in SQL (execution skips
rows already masked, which makes re-running a plan a no-op; verification counts them).
NULL counts as masked for every kind: it holds nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from core.keys import KeyRing
from core.pseudonym import Pseudonymizer

REDACTED = "[redacted]"
MASK_KINDS = ("null", "redact", "hash", "pseudonym")
PER_ROW = frozenset({"hash", "pseudonym"})
"""Kinds whose value depends on the original, so they are computed per row."""

HASH_LENGTH = 64
PSEUDONYM_LENGTH = 36
_WIDTH = {"redact": len(REDACTED), "hash": HASH_LENGTH, "pseudonym": PSEUDONYM_LENGTH}
_PATTERN = {"hash": "^[0-9a-f]{64}$", "pseudonym": "^psn_[0-9a-f]{32}$"}
# Domain separation from pseudonyms made under the same key: "-" cannot occur in a
# configured column name, so no pseudonym kind can produce this message prefix.
_HASH_DOMAIN = b"mask-hash\x1f"


def type_name(column: sa.Column[Any]) -> str:
    """The column's SQL type name for messages (``VARCHAR``, ``INTEGER``), never a value."""
    return type(column.type).__name__.upper()


def _is_text(column: sa.Column[Any]) -> bool:
    typ = column.type
    # ENUM and MySQL SET are strings to SQLAlchemy but accept only their listed values.
    return (
        isinstance(typ, sa.String)
        and not isinstance(typ, sa.Enum)
        and type(typ).__name__.upper() != "SET"
    )


def mask_problem(mask: str, column: sa.Column[Any]) -> str | None:
    """Why ``mask`` cannot be written into ``column`` (type, length, NOT NULL), or None."""
    if mask not in MASK_KINDS:
        return f"unknown mask '{mask}' (expected one of {', '.join(MASK_KINDS)})"
    if mask == "null":
        if column.nullable:
            return None
        return "mask 'null' needs a nullable column, column is NOT NULL"
    if not _is_text(column):
        return f"mask '{mask}' needs a string column, column is {type_name(column)}"
    width = _WIDTH[mask]
    length = getattr(column.type, "length", None)
    if length is not None and length < width:
        return f"mask '{mask}' needs {width} characters, column allows {length}"
    return None


def masked_clause(mask: str, column: sa.ColumnElement[Any]) -> ColumnElement[bool]:
    """SQL that is true where ``column`` already holds a value of kind ``mask`` (or NULL)."""
    is_null: ColumnElement[bool] = column.is_(None)
    if mask == "null":
        return is_null
    if mask == "redact":
        return sa.or_(is_null, column == REDACTED)
    if mask in _PATTERN:
        return sa.or_(is_null, column.regexp_match(_PATTERN[mask]))
    raise ValueError(f"unknown mask '{mask}'")


def is_masked_value(mask: str, value: Any) -> bool:
    """Python twin of ``masked_clause``, for values already read."""
    if value is None:
        return True
    if mask == "redact":
        return bool(value == REDACTED)
    if mask in _PATTERN:
        return isinstance(value, str) and re.match(_PATTERN[mask], value) is not None
    return False


class Masker:
    """Computes mask values under the product's pseudonym key."""

    def __init__(self, keys: KeyRing) -> None:
        self._key = keys.pseudonym_hmac
        self._pseudonyms = Pseudonymizer(keys.pseudonym_hmac)

    def __repr__(self) -> str:
        return "Masker(<key>)"

    def value(self, mask: str, column: sa.Column[Any], original: Any) -> Any:
        """The value ``mask`` writes into ``column`` for a row holding ``original``."""
        if mask == "null":
            return None
        if mask == "redact":
            return REDACTED
        if mask not in PER_ROW:
            raise ValueError(f"unknown mask '{mask}'")
        if original is None:
            return None
        text = original if isinstance(original, str) else str(original)
        if mask == "hash":
            return hmac.new(self._key, _HASH_DOMAIN + text.encode(), hashlib.sha256).hexdigest()
        return str(self._pseudonyms.of_value(column.name, text))

    def masked_clause(self, mask: str, column: sa.ColumnElement[Any]) -> ColumnElement[bool]:
        """SQL recognising values this masker writes (see the module function)."""
        return masked_clause(mask, column)
