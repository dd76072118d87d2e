"""Free text (notes, reasons): e-mail addresses and phone numbers are refused, named by the
field and what was found, never the value; ordinary operator notes pass."""

from __future__ import annotations

import pytest

from core.errors import PersonalDataRefused, TerminalError
from core.free_text import EMAIL, PHONE, FreeTextRefused, check_free_text, personal_data_in


@pytest.mark.parametrize(
    "text",
    [
        "subject wrote from casey.wren@example.com",
        "Contact <casey.wren@example.com>.",
        "(casey.wren@example.com)",
        "mailto:casey.wren@example.com",
        "see Robin.Quill+news@example.com, then close",
        "ZOË.ÄRGER@EXÄMPLE.COM",
    ],
)
def test_email_addresses_are_found(text: str) -> None:
    assert personal_data_in(text) == EMAIL


@pytest.mark.parametrize(
    "text",
    [
        "called back on +44 20 7946 0000 today",
        "+4930901820",
        "+49 (0)30 901820",
        "+1 202-555-0143",
        "ring 0044 20 7946 0000",
        "phone 020 7946 0000",
        "mobile 07700 900123",
        "mobile 07700900123",
        "(202) 555-0143",
        "US office 202-555-0143.",
        "on 2024-05-01 020 7946 0000",  # right after a date
    ],
)
def test_phone_numbers_are_found(text: str) -> None:
    assert personal_data_in(text) == PHONE


@pytest.mark.parametrize(
    "text",
    [
        "",
        "complex request, many stores",
        "ask @legal first",
        "user@localhost",  # not an address email-validator accepts
        "a@b",
        "ticket 2024-123456",
        "INC-20240501",
        "order 1234567890",
        "due 2024-05-01 12:00 UTC",
        "3 stores, 1200 rows, 2 buckets",
        "counts 12 34 56 78",
        "host 10.0.0.1 and 192.168.100.200",
        "sha 0123456789abcdef",
        "req_0123456789abcdef",
        "psn_0123456789abcdef0123456789abcdef",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "version 1.2.3, 12:30 - 13:45",
        "+12",
    ],
)
def test_ordinary_notes_pass(text: str) -> None:
    assert personal_data_in(text) is None
    check_free_text("--note", text)


def test_refusal_names_the_field_and_what_was_found_never_the_value() -> None:
    with pytest.raises(FreeTextRefused) as caught:
        check_free_text("--note", "approved; subject is casey.wren@example.com")
    error = caught.value
    assert str(error) == "--note: holds an e-mail address; notes must not contain personal data"
    assert (error.field, error.found) == ("--note", EMAIL)
    assert isinstance(error, PersonalDataRefused) and isinstance(error, TerminalError)

    with pytest.raises(FreeTextRefused) as caught:
        check_free_text("--reason", "subject asked by phone, +44 20 7946 0000")
    assert str(caught.value) == (
        "--reason: holds a phone number; notes must not contain personal data"
    )
    for error_text in (str(caught.value), repr(caught.value.fields)):
        assert "7946" not in error_text and "casey" not in error_text
