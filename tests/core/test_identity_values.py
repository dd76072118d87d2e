"""Identity values: each format accepts good values, normalizes them, and refuses bad ones
without ever repeating the value; mask tokens are never identities."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from config.schema.inventory import IdentityColumn
from connectors.sql.masks import REDACTED, Masker
from core.identity_values import (
    FORMATS,
    TEXT_MAX_LENGTH,
    IdentityFormat,
    IdentityValueError,
    infer_format,
    normalize_identity,
)
from core.keys import KeyRing
from core.mask_tokens import is_mask_token

HASH_TOKEN = "0123456789abcdef" * 4
PSEUDONYM_TOKEN = "psn_" + "0123456789abcdef" * 2


@pytest.mark.parametrize(
    ("fmt", "value", "normalized"),
    [
        ("email", "jürgen@example.com", "jürgen@example.com"),
        ("email", "  Jürgen@EXAMPLE.com ", "Jürgen@example.com"),  # local part kept as given
        ("email", "Robin.Quill+news@" + "example.com".upper(), "Robin.Quill+news@example.com"),
        ("email", "zoë.ärger@exämple.com", "zoë.ärger@exämple.com"),
        ("phone", "+44 20 7946 0000", "+442079460000"),
        ("phone", "+44 (0)20 7946-0000", "+442079460000"),
        ("phone", "+49 30 123456", "+4930123456"),
        ("text", "  C-0001 ", "C-0001"),
        ("text", "Zoë Ärger", "Zoë Ärger"),
        ("text", "x" * TEXT_MAX_LENGTH, "x" * TEXT_MAX_LENGTH),
        ("integer", "42", "42"),
        ("integer", "-0042", "-42"),
        ("integer", "9223372036854775807", "9223372036854775807"),
        ("integer", "-9223372036854775808", "-9223372036854775808"),
    ],
)
def test_good_values_are_normalized(fmt: IdentityFormat, value: str, normalized: str) -> None:
    assert normalize_identity("k", value, fmt) == normalized


@pytest.mark.parametrize(
    ("fmt", "value", "problem"),
    [
        ("email", "not-an-email", "not a valid e-mail address (the domain part is missing)"),
        ("email", "casey.wren@", "not a valid e-mail address (the domain part is missing)"),
        ("email", "@example.com", "not a valid e-mail address (the local part is missing)"),
        ("email", "casey.wren@example", "not a valid e-mail address (the domain part is not"),
        ("email", "casey wren@example.com", "not a valid e-mail address (the local part is not"),
        ("email", "casey..wren@example.com", "not a valid e-mail address (two periods in a row)"),
        ("email", "<casey.wren@example.com", "not a valid e-mail address (bad syntax)"),
        ("phone", "020 7946 0000", "not a valid phone number (give it in international form"),
        ("phone", "call casey", "not a valid phone number"),
        ("phone", "+44 20 7946 0000 ext. 12", "extensions are not supported"),
        ("phone", "+44 12", "not a valid phone number"),
        ("text", "casey\x00wren", "contains control characters"),
        ("text", "casey\nwren", "contains control characters"),
        ("text", "c" * (TEXT_MAX_LENGTH + 1), f"longer than {TEXT_MAX_LENGTH} characters"),
        ("text", "   ", "empty"),
        ("integer", "12a", "not an integer"),
        ("integer", "+12", "not an integer"),
        ("integer", "١٢", "not an integer"),  # Arabic-Indic digits: not ASCII
        ("integer", "1.0", "not an integer"),
        ("integer", "9223372036854775808", "out of range"),
        ("integer", "-9223372036854775809", "out of range"),
        ("integer", "9" * 5000, "out of range"),
    ],
)
def test_bad_values_are_refused_without_the_value(
    fmt: IdentityFormat, value: str, problem: str
) -> None:
    with pytest.raises(IdentityValueError) as caught:
        normalize_identity("customer_email", value, fmt)

    message = str(caught.value)
    assert message.startswith("identity 'customer_email': ")
    assert problem in message
    assert caught.value.kind == "customer_email" and caught.value.correction is None
    for part in {value.strip(), *value.replace("@", " ").split()} - {""}:
        if len(part) > 3:
            assert part not in message, part


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "token",
    [
        REDACTED,
        "[REDACTED]",
        HASH_TOKEN,
        HASH_TOKEN.upper(),
        PSEUDONYM_TOKEN,
        " PSN_" + "0123456789ABCDEF" * 2,
    ],
)
def test_mask_tokens_are_refused_by_every_format(fmt: IdentityFormat, token: str) -> None:
    with pytest.raises(IdentityValueError) as caught:
        normalize_identity("email", token, fmt)

    assert str(caught.value) == "identity 'email': a masked value (erasure token), not an identity"


def test_every_mask_the_erasure_writes_is_a_token() -> None:
    # connectors.sql.masks keeps its own constants: core must recognise all it writes.
    masker = Masker(KeyRing.from_master(b"k" * 32))
    column = sa.Column("email", sa.String(120))
    for mask in ("redact", "hash", "pseudonym"):
        value = masker.value(mask, column, "jürgen@example.com")
        assert is_mask_token(value), mask
    assert not is_mask_token(HASH_TOKEN.upper())
    assert is_mask_token(HASH_TOKEN.upper(), ignore_case=True)
    assert not is_mask_token(HASH_TOKEN[:-1]) and not is_mask_token("psn_" + "g" * 32)


@pytest.mark.parametrize(
    ("kind", "fmt"),
    [
        ("email", "email"),
        ("work_email", "email"),
        ("emails", "text"),
        ("phone", "phone"),
        ("mobile_phone", "phone"),
        ("phone_number", "text"),
        ("customer_number", "text"),
    ],
)
def test_format_is_inferred_from_the_kind(kind: str, fmt: IdentityFormat) -> None:
    assert infer_format(kind) == fmt
    assert IdentityColumn(column="c", kind=kind).value_format() == fmt
    assert IdentityColumn(column="c", kind=kind, format="integer").value_format() == "integer"
