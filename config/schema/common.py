"""Shared building blocks of the schema: the strict base model and checked name types.

Every model is frozen and forbids unknown keys, so a typo in the YAML is an error rather
than a silently ignored setting. Name types check their shape here, with messages that
say what is allowed; whether a name refers to something declared is checked later, by
``config.crossref``, once both files are loaded.
"""

from __future__ import annotations

import re
from collections.abc import Sized
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict

_SizedT = TypeVar("_SizedT", bound=Sized)
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d+$")


class Strict(BaseModel):
    """Base of every schema model: immutable, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def shaped(pattern: str, rule: str, max_length: int = 128) -> AfterValidator:
    """A validator accepting strings that match ``pattern``; ``rule`` says what is allowed."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if len(value) > max_length or not compiled.match(value):
            raise ValueError(rule)
        return value

    return AfterValidator(check)


def _non_empty(value: _SizedT) -> _SizedT:
    if not len(value):
        raise ValueError("must not be empty")
    return value


NonEmpty = AfterValidator(_non_empty)
"""For lists that need an entry. Unlike ``min_length``, it runs only once the items are
valid, so one bad item is not also reported as an empty list."""


def is_region(text: str) -> bool:
    """Whether ``text`` is shaped like a cloud region name (``eu-central-1``, ``us-gov-west-1``)."""
    return bool(_REGION.match(text))


def _region(value: str) -> str:
    if not is_region(value):
        raise ValueError("must be a region name such as eu-central-1")
    return value


def _bucket(value: str) -> str:
    # S3 bucket naming rules (general purpose buckets).
    if (
        not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", value)
        or ".." in value
        or re.match(r"^\d+\.\d+\.\d+\.\d+$", value)
    ):
        raise ValueError(
            "must be an S3 bucket name: 3-63 lowercase letters, digits, '.' or '-', "
            "starting and ending with a letter or digit"
        )
    return value


Name = Annotated[
    str,
    shaped(
        r"^[a-z][a-z0-9_-]*$",
        "must start with a lowercase letter and contain only a-z, 0-9, '_' or '-'",
        max_length=63,
    ),
]
"""A store or category name."""

IdentName = Annotated[
    str,
    shaped(
        r"^[a-z][a-z0-9_]*$",
        "must start with a lowercase letter and contain only a-z, 0-9 or '_'",
        max_length=63,
    ),
]
"""An identity kind or derived identity name; usable as a ``{placeholder}`` in key templates."""

SqlIdent = Annotated[
    str,
    shaped(
        r"^[A-Za-z_][A-Za-z0-9_$]*$",
        "must be a plain SQL identifier: letters, digits, '_' or '$', not starting with a digit",
    ),
]
"""A table or column name (checked against the reflected schema when a store is used)."""

RuleId = Annotated[
    str,
    shaped(
        r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        "must start with a letter or digit and contain only letters, digits, '.', '_' or '-'",
    ),
]
"""The id of a retention rule or legal hold."""

Region = Annotated[str, AfterValidator(_region)]
BucketName = Annotated[str, AfterValidator(_bucket)]
