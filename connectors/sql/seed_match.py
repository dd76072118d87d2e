"""Which subjects of a batch an identity match belongs to (``connectors.sql.locate_many``).

A batch searches an identity column once for every subject's values; each row found is
then given to the subjects whose own search (``locate.identity_condition``) would have
found it, by comparing in Python what that condition compares in the database.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from config.schema import IdentityColumn
from connectors.sql.casefold import case_variants, searchable
from connectors.sql.schema import StoreSchema, coerce, type_family


@dataclass(frozen=True)
class SeedMatch:
    """How one identity column's matches are attributed to subjects (see ``seed_match``)."""

    selected: sa.ColumnElement[Any]
    row_form: Callable[[Any], Hashable]
    subject_forms: Callable[[Sequence[str]], set[Hashable]]


def seed_match(schema: StoreSchema, table: sa.Table, ident: IdentityColumn) -> SeedMatch:
    """What ``identity_condition`` compares, as a value per row and a set per subject.

    Follows its branches: a case-insensitive string identity is matched on
    ``lower(column)`` against the values' case variants (on MySQL/MariaDB also on
    ``column IN values``, which a matching variant implies); any other on the column
    against the values converted to its type.
    """
    col = table.c[ident.column]
    pads = schema.is_mysql or isinstance(col.type, sa.CHAR)

    def text(value: Any) -> Hashable:
        if isinstance(value, str) and pads:
            return value.rstrip(" ")  # PAD SPACE: trailing blanks do not count
        hashable: Hashable = value
        return hashable

    if ident.case_insensitive and type_family(col) == "string":

        def variants(values: Sequence[str]) -> set[Hashable]:
            return {
                text(v) for value in searchable(values) for v in case_variants(ident.kind, value)
            }

        return SeedMatch(sa.func.lower(col), text, variants)

    def converted(values: Sequence[str]) -> set[Hashable]:
        forms: set[Hashable] = set()
        for value in searchable(values):
            try:
                forms.add(text(coerce(col, value)))
            except ValueError:
                continue  # cannot match the column (identity_condition leaves it out too)
        return forms

    return SeedMatch(col, text, converted)
