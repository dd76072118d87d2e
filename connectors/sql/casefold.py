"""Case-insensitive identity matching that behaves alike on every backend, non-ASCII too.

``lower()`` is not the same function everywhere: SQLite's folds ASCII letters only;
PostgreSQL's follows the collation's LC_CTYPE (``C``/``POSIX`` fold ASCII only,
``C.UTF-8`` and ``en_US.UTF-8`` fold Unicode). Folding the value in Python does not help
either: the database must fold the column the same way. So a value is searched as its
*case variants* (``case_variants``): ASCII letters lower-cased, and every non-ASCII letter
that has a one-character upper or lower case partner in either case; the condition is
``lower(column) IN (v1, v2, ...)``, which finds ``jürgen@example.com`` from
``JÜRGEN@EXAMPLE.COM`` whatever the database folds, and keeps an expression index on
``lower(column)`` usable. A value has 2**k variants for k such letters; more than
``MAX_CASED_LETTERS`` is refused rather than sent as a huge IN list.

MySQL/MariaDB ``_ci`` collations compare without case already, but many are also
accent-insensitive (``utf8mb4_general_ci``, ``utf8mb4_unicode_ci``, MariaDB 11's
``uca1400_ai_ci``): there ``jurgen@example.com`` would find ``jürgen@example.com``, a
different person. ``mysql_ci_condition`` keeps ``column IN (values)`` for the index and
adds an exact-modulo-case test in the binary collation.

Mask tokens (``core.mask_tokens``) are never searched for, nor any case variant that is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import product
from typing import Any

import sqlalchemy as sa

from core.errors import TerminalError
from core.identity_values import MAX_CASED_LETTERS
from core.mask_tokens import is_mask_token


def searchable(values: Iterable[str]) -> list[str]:
    """``values`` without mask tokens (in any case): a masked row must never be found."""
    return [v for v in values if not is_mask_token(v, ignore_case=True)]


def _spellings(char: str) -> tuple[str, ...]:
    """The spellings a character may have in a stored value that matches it without case."""
    if char.isascii():
        return (char.lower(),)  # every lower() folds ASCII
    spellings = [char]
    for partner in (char.lower(), char.upper()):
        if len(partner) == 1 and partner not in spellings:
            spellings.append(partner)
    return tuple(spellings)


def case_variants(kind: str, value: str) -> list[str]:
    """The case variants of ``value`` (see the module doc), mask tokens left out.

    TerminalError, naming the identity kind only, when the value has more than
    ``MAX_CASED_LETTERS`` non-ASCII letters with a case partner.
    """
    choices = [_spellings(c) for c in value]
    cased = sum(1 for c in choices if len(c) > 1)
    if cased > MAX_CASED_LETTERS:
        raise TerminalError(
            f"identity '{kind}': too many non-ASCII letters to match without case "
            f"({cased}, at most {MAX_CASED_LETTERS})",
            kind=kind,
        )
    variants = dict.fromkeys("".join(p) for p in product(*choices))
    return [v for v in variants if not is_mask_token(v, ignore_case=True)]


def lower_condition(
    kind: str, column: sa.ColumnElement[Any], values: Sequence[str]
) -> sa.ColumnElement[bool] | None:
    """``lower(column) IN (variant, ...)`` over every value's case variants.

    The variants are not passed through lower() again: on PostgreSQL a parameter's lower()
    follows the database's LC_CTYPE while ``lower(column)`` follows the column's collation
    (``COLLATE "C"`` folds ASCII only), so the two could fold differently. The variants
    already hold every spelling either lower() can leave.
    """
    variants = dict.fromkeys(v for value in values for v in case_variants(kind, value))
    if not variants:
        return None
    return sa.func.lower(column).in_(list(variants))


def mysql_ci_condition(
    kind: str, column: sa.ColumnElement[Any], values: Sequence[str], binary_collation: str
) -> sa.ColumnElement[bool] | None:
    """``column IN values`` (index, case-insensitive) AND equal modulo case, accents kept.

    ``LOWER(column) COLLATE <charset>_bin IN (variant, ...)``: the binary collation tells
    ``ü`` from ``u``, and the case variants match whatever LOWER() leaves of the column.
    """
    variants = dict.fromkeys(v for value in values for v in case_variants(kind, value))
    if not variants:
        return None
    exact = sa.func.lower(column).collate(binary_collation)
    return sa.and_(column.in_(list(values)), exact.in_(list(variants)))
