"""Recognising the values an erasure writes into masked columns (mask tokens).

A masked identity column holds one of three tokens: the fixed marker ``[redacted]``, a
keyed hash (64 lowercase hex digits) or a pseudonym (``psn_`` and 32 lowercase hex
digits); ``connectors.sql.masks`` writes them. None of them may ever be taken for an
identity: intake refuses them and locate never searches for them, so an erased person
cannot be found again by looking up the token that replaced their address.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"
HASH_PATTERN = "^[0-9a-f]{64}$"
PSEUDONYM_PATTERN = "^psn_[0-9a-f]{32}$"

_TOKEN = re.compile(r"[0-9a-f]{64}|psn_[0-9a-f]{32}")


def is_mask_token(value: str, *, ignore_case: bool = False) -> bool:
    """Whether ``value`` is a mask token (surrounding whitespace ignored).

    With ``ignore_case`` the test is made on the case-folded value: a case-insensitive
    lookup of ``PSN_...`` or ``[REDACTED]`` would find a masked row just the same.
    """
    text = value.strip()
    if ignore_case:
        text = text.casefold()
    return text == REDACTED or _TOKEN.fullmatch(text) is not None
