"""Obviously fictional personal data for the demo: names, e-mails, phones, addresses, IPs.

Every value is made up and comes from a reserved or documentation range, so the demo
can show personal data being found and erased without ever holding anyone's real data:
e-mails at ``example.com`` (RFC 2606), phone numbers in Ofcom's drama range
(+44 20 7946 0xxx), IP addresses from the documentation blocks (RFC 5737, RFC 3849).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

EMAIL_DOMAIN = "example.com"

FIRST_NAMES = (
    "Zephyra", "Quillon", "Mirabel", "Thaddeus", "Orlaith", "Bexley", "Calloway", "Perpetua",
    "Ignatius", "Wrenna", "Osric", "Lunetta", "Fennimore", "Isolde", "Barnaby", "Clementine",
)  # fmt: skip
LAST_NAMES = (
    "Placeholder", "Sampleton", "Fakeworth", "Examplar", "Mockridge", "Dummington",
    "Testwell", "Fictor", "Notreal", "Madeupson", "Pretendly", "Imaginary",
)  # fmt: skip
STREETS = ("Nowhere Lane", "Sample Street", "Imaginary Road", "Fiction Row", "Demo Avenue")
TOWNS = ("Exampleton", "Mocksford", "Testbury", "Fakeham")
TICKET_SUBJECTS = (
    "Delivery is late",
    "Question about my invoice",
    "Please update my address",
    "Item arrived damaged",
    "Cannot log in",
    "Cancel my order",
)
_IPV4_BLOCKS = ("192.0.2", "198.51.100", "203.0.113")


def full_name(rng: random.Random) -> str:
    """A made-up full name."""
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def email_for(name: str, customer_id: int) -> str:
    """A unique e-mail address at example.com derived from a made-up name."""
    local = name.lower().replace(" ", ".")
    return f"{local}.{customer_id}@{EMAIL_DOMAIN}"


def phone(rng: random.Random) -> str:
    """A number in Ofcom's range reserved for drama: +44 20 7946 0000 to 0999."""
    return f"+44 20 7946 0{rng.randrange(1000):03d}"


def address(rng: random.Random) -> str:
    """A made-up postal address."""
    return f"{rng.randint(1, 199)} {rng.choice(STREETS)}, {rng.choice(TOWNS)} EX{rng.randint(1, 9)}"


def ip_address(rng: random.Random) -> str:
    """An address from the documentation ranges (mostly IPv4, sometimes IPv6)."""
    if rng.random() < 0.2:
        return f"2001:db8::{rng.randrange(1, 0xFFFF):x}"
    return f"{rng.choice(_IPV4_BLOCKS)}.{rng.randint(1, 254)}"


def ticket(rng: random.Random, name: str) -> tuple[str, str]:
    """A support ticket's subject and body (the body signs with the customer's name)."""
    subject = rng.choice(TICKET_SUBJECTS)
    return subject, f"Hello, {subject.lower()}. Order details are in my account. Regards, {name}"


def moment(rng: random.Random, today: date, min_days: int, max_days: int) -> datetime:
    """A UTC instant between ``max_days`` and ``min_days`` days before ``today``."""
    day = today - timedelta(days=rng.randint(min_days, max_days))
    clock = time(rng.randrange(24), rng.randrange(60), rng.randrange(60))
    return datetime.combine(day, clock, tzinfo=UTC)
