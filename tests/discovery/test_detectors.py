"""Column classifiers: each format by its library, names by column name, never a value."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email

from discovery.buckets import propose_templates
from discovery.detectors import (
    CHECKED_VALUES,
    VALUE_SHARE,
    EmailCheck,
    classify,
    is_card_number,
    is_email,
    is_iban,
    is_ip_address,
    is_phone,
)
from tests.discovery.shop import card, email, iban_of, ip, person, phone

N = 50


@pytest.mark.parametrize(
    ("column", "make", "kind", "category"),
    [
        ("contact", email, "email", "contact"),
        ("reachable_at", phone, "phone", "contact"),
        ("account", iban_of, "iban", "financial"),
        ("paid_with", card, "card_number", "financial"),
        ("seen_from", ip, "ip_address", "telemetry"),
    ],
)
def test_each_format_is_found_by_its_values_whatever_the_column_name(
    column: str, make: object, kind: str, category: str
) -> None:
    assert callable(make)
    values = [make(i) for i in range(1, N + 1)]
    found = classify(column, values)
    assert found is not None
    assert (found.kind, found.category, found.share, found.sampled) == (kind, category, 1.0, N)
    assert f"100% of {N} sampled values" in found.evidence
    assert not any(str(v) in found.evidence for v in values)


def test_a_share_below_the_threshold_is_not_proposed() -> None:
    share = VALUE_SHARE - 0.1
    hits = int(N * share)
    values = [email(i) for i in range(hits)] + ["n/a"] * (N - hits)
    assert classify("contact", values) is None


def test_nulls_and_blanks_are_not_counted() -> None:
    found = classify("contact", [email(1), None, "", "  ", email(2)])
    assert found is not None and found.sampled == 2 and found.share == 1.0


def test_check_digits_decide() -> None:
    assert is_iban(iban_of(7))
    assert not is_iban(iban_of(7)[:-1] + ("0" if iban_of(7)[-1] != "0" else "1"))
    assert is_card_number(card(3)) and is_card_number(int(card(3)))
    assert not is_card_number(card(3)[:-1] + str((int(card(3)[-1]) + 1) % 10))
    assert not is_card_number("1234")
    assert is_phone(phone(1)) and not is_phone("12345")
    assert is_email(email(1)) and not is_email("not an address")
    assert is_ip_address(ip(1)) and is_ip_address(ip(2)) and not is_ip_address("999.1.1.1")


def test_names_and_identifiers_are_found_by_column_name() -> None:
    names = [person(i) for i in range(N)]
    for column in ("name", "full_name", "first_name", "last_name", "billing_name"):
        found = classify(column, names)
        assert found is not None and found.kind == "person_name", column
        assert not any(n in found.evidence for n in names)
    assert classify("title", names) is None
    assert classify("product_name", names) is None
    assert classify("full_name", ["SKU-1", "SKU-2"]) is None  # digits: not a person's name
    ident = classify("customer_number", ["C1", "C2"])
    assert ident is not None and ident.kind == "identifier"


def test_an_empty_column_is_judged_by_its_name_alone() -> None:
    found = classify("email", [])
    assert found is not None and found.kind == "email" and found.share == 0.0
    assert "no values sampled" in found.evidence
    assert classify("notes", []) is None


def test_key_templates_come_from_a_varying_identifier_folder() -> None:
    keys = [f"tickets/{i}/scan-{n}.pdf" for i in range(1, 9) for n in range(2)]
    keys += [f"inbox/{email(i)}/mail.eml" for i in range(1, 5)] + ["readme.txt"]
    found = {t.prefix: t for t in propose_templates(keys)}
    assert set(found) == {"tickets/", "inbox/"}
    assert (found["tickets/"].kind, found["inbox/"].kind) == ("number", "email")
    assert "100% of 16 listed keys" in found["tickets/"].evidence
    evidence = " ".join(t.evidence for t in found.values())
    assert not any(email(i) in evidence for i in range(1, 5))


def test_a_prefix_that_looks_personal_is_never_proposed() -> None:
    keys = [f"{email(1)}/{n}/x.pdf" for n in range(10)]
    assert propose_templates(keys) == ()


def test_a_large_sample_is_judged_on_values_spread_over_it_and_says_so() -> None:
    """Of 1,000 values, at most CHECKED_VALUES are checked, picked over the whole sample
    (the first 150 here are not addresses), and the evidence says how many of how many."""
    values = ["n/a"] * 150 + [email(i) for i in range(850)]
    found = classify("contact", values)
    assert found is not None and found.kind == "email"
    assert 0 < found.sampled <= CHECKED_VALUES
    assert f"of {found.sampled:,} checked values (of 1,000 sampled)" in found.evidence
    assert found.share >= VALUE_SHARE
    mixed = [email(i) if i % 10 < 7 else "n/a" for i in range(1000)]  # 70%: below it
    assert classify("contact", mixed) is None


def test_is_email_gives_the_library_verdict() -> None:
    """Plain addresses are judged by their domain's verdict, kept per domain; the answer
    is the library's own, whatever the address."""
    values = [
        *(email(i) for i in range(5)),
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a@-x.com",
        "a@x..com",
        "a@localhost",
        "a@example.invalid",
        "a@x.local",
        "a@xn--bcher-kva.example",
        "A@EXAMPLE.COM",
        '"q"@example.com',
        "Name <a@example.com>",
        "a b@example.com",
        "é@example.com",
        "a@[192.0.2.1]",
        "a" * 70 + "@example.com",
        "@example.com",
        "a@",
        "a@@example.com",
        "a@x_y.com",
        "a@192.0.2.1",
    ]
    check = EmailCheck()
    for value in values:
        try:
            validate_email(value, check_deliverability=False)
            expected = True
        except EmailNotValidError:
            expected = False
        assert check(value) is expected, value
        assert is_email(value) is expected, value
