"""Mask kinds: which columns they fit, the values they write, and how SQL recognises them."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.sql.masks import (
    REDACTED,
    Masker,
    is_masked_value,
    mask_problem,
    masked_clause,
)
from core.keys import KeyRing
from core.pseudonym import Pseudonymizer

KEYS = KeyRing.from_master(b"m" * 32)
EMAIL = "alice.example@example.com"


def column(type_: Any, nullable: bool = True, name: str = "c") -> sa.Column[Any]:
    return sa.Column(name, type_, nullable=nullable)


@pytest.mark.parametrize(
    ("mask", "col", "problem"),
    [
        ("null", column(sa.String(5)), None),
        (
            "null",
            column(sa.Integer, nullable=False),
            "mask 'null' needs a nullable column, column is NOT NULL",
        ),
        ("redact", column(sa.String(10), nullable=False), None),
        ("redact", column(sa.Text), None),
        ("redact", column(sa.String()), None),
        ("redact", column(sa.String(5)), "mask 'redact' needs 10 characters, column allows 5"),
        ("redact", column(sa.Integer), "mask 'redact' needs a string column, column is INTEGER"),
        ("redact", column(sa.Date), "mask 'redact' needs a string column, column is DATE"),
        (
            "redact",
            column(sa.Enum("a", "b")),
            "mask 'redact' needs a string column, column is ENUM",
        ),
        ("hash", column(sa.String(64)), None),
        ("hash", column(sa.String(63)), "mask 'hash' needs 64 characters, column allows 63"),
        ("pseudonym", column(sa.String(36)), None),
        (
            "pseudonym",
            column(sa.String(35)),
            "mask 'pseudonym' needs 36 characters, column allows 35",
        ),
        (
            "pseudonym",
            column(sa.LargeBinary),
            "mask 'pseudonym' needs a string column, column is LARGEBINARY",
        ),
        (
            "shred",
            column(sa.Text),
            "unknown mask 'shred' (expected one of null, redact, hash, pseudonym)",
        ),
    ],
)
def test_mask_problem(mask: str, col: sa.Column[Any], problem: str | None) -> None:
    assert mask_problem(mask, col) == problem


def test_constant_masks() -> None:
    masker = Masker(KEYS)
    col = column(sa.String(40))
    assert masker.value("null", col, EMAIL) is None
    assert masker.value("redact", col, EMAIL) == REDACTED == "[redacted]"


def test_hash_is_keyed_hmac_hex_equal_for_equal_originals() -> None:
    masker = Masker(KEYS)
    col = column(sa.String(64))
    value = masker.value("hash", col, EMAIL)
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    assert value == masker.value("hash", column(sa.String(80), name="other"), EMAIL)
    assert value != masker.value("hash", col, "bob.other@example.com")
    assert value != Masker(KeyRing.from_master(b"n" * 32)).value("hash", col, EMAIL)
    assert EMAIL not in value
    assert masker.value("hash", col, None) is None


def test_pseudonym_matches_the_ledger_pseudonym_for_a_column_named_like_the_kind() -> None:
    masker = Masker(KEYS)
    value = masker.value("pseudonym", column(sa.String(36), name="email"), EMAIL.upper())
    assert len(value) == 36 and value.startswith("psn_")
    assert value == Pseudonymizer(KEYS.pseudonym_hmac).of_value("email", EMAIL)
    assert value != masker.value("hash", column(sa.String(64)), EMAIL)[:36]
    assert "key" in repr(masker) and KEYS.pseudonym_hmac.hex() not in repr(masker)


def test_unknown_mask_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mask"):
        Masker(KEYS).value("shred", column(sa.Text), EMAIL)
    with pytest.raises(ValueError, match="unknown mask"):
        masked_clause("shred", column(sa.Text))


def test_masked_clause_and_its_python_twin_agree() -> None:
    """The SQL recognises exactly the values each mask writes (NULL counts as masked)."""
    masker = Masker(KEYS)
    md = sa.MetaData()
    table = sa.Table(
        "t", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.Text)
    )
    values = [
        None,
        REDACTED,
        masker.value("hash", table.c.v, EMAIL),
        masker.value("pseudonym", table.c.v, EMAIL),
        EMAIL,
        "psn_short",
        "A" * 64,
    ]
    engine = sa.create_engine("sqlite://")
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "v": v} for i, v in enumerate(values)])
        for mask in ("null", "redact", "hash", "pseudonym"):
            rows = conn.execute(sa.select(table.c.id).where(masked_clause(mask, table.c.v)))
            in_sql = {values[r[0]] for r in rows}
            in_python = {v for v in values if is_masked_value(mask, v)}
            assert in_sql == in_python, mask
    assert {v for v in values if is_masked_value("hash", v)} == {None, values[2]}
    assert {v for v in values if is_masked_value("pseudonym", v)} == {None, values[3]}
    assert {v for v in values if is_masked_value("redact", v)} == {None, REDACTED}
    engine.dispose()
