"""Seed the demo CRM: the SQL store ``crm`` of ``config/demo/inventory.yaml``.

``seed_crm`` drops and recreates the six CRM tables and fills them with deterministic,
obviously fictional data (``demo.fake``), in bulk. Two named subjects have a known
footprint for the demo's requests: ``Demo.Subject@example.com`` (stored in mixed case, to
show case-insensitive matching) and ``second.subject@example.com``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, MetaData, insert

from core.engines import make_engine, normalize_url
from demo import fake
from demo.crm_schema import TABLES, add_indexes, crm_metadata, sync_id_sequences

CHUNK_ROWS = 1000
"""Rows per executemany call: bounded memory per statement, few round trips."""

Row = dict[str, Any]


@dataclass(frozen=True)
class DemoSubject:
    """A named demo subject: how to identify them and how many rows they have per table."""

    email: str  # as stored (the demo subject's is mixed case)
    customer_number: str
    customer_id: int
    rows: Mapping[str, int]

    @property
    def identity(self) -> dict[str, str]:
        """The identity a request for this subject is submitted with."""
        return {"email": self.email}

    @property
    def total(self) -> int:
        return sum(self.rows.values())


@dataclass(frozen=True)
class DemoData:
    """What ``seed_crm`` created: the named subjects and row counts per table."""

    subject: DemoSubject
    second: DemoSubject
    counts: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class _Profile:
    """The fixed footprint of a named subject."""

    email: str
    name: str
    items_per_order: tuple[int, ...]
    tickets: int
    recent_logins: int
    old_logins: int  # older than the 90-day telemetry retention


DEMO_PROFILE = _Profile(
    email="Demo.Subject@example.com",
    name="Demonstra Subjectworth",
    items_per_order=(2, 3, 2),
    tickets=2,
    recent_logins=4,
    old_logins=2,
)
SECOND_PROFILE = _Profile(
    email="second.subject@example.com",
    name="Secunda Placeholder",
    items_per_order=(1,),
    tickets=1,
    recent_logins=2,
    old_logins=0,
)


@dataclass
class _Builder:
    """Generates the CRM rows in memory, parents before children, with explicit ids."""

    rng: random.Random
    today: date
    rows: dict[str, list[Row]] = field(default_factory=lambda: {t: [] for t in TABLES})
    owned: dict[int, Counter[str]] = field(default_factory=dict)

    def _add(self, table: str, customer_id: int | None, row: Row) -> int:
        rows = self.rows[table]
        if "id" not in row:
            row = {"id": len(rows) + 1, **row}
        rows.append(row)
        if customer_id in self.owned:
            self.owned[customer_id][table] += 1
        return int(row.get("id", 0))

    def customer(self, cid: int, profile: _Profile | None) -> None:
        rng = self.rng
        if profile is not None:
            self.owned[cid] = Counter()
        name = profile.name if profile else fake.full_name(rng)
        ended = rng.random() < 0.1 and profile is None
        self._add(
            "customers",
            cid,
            {
                "id": cid,
                "customer_number": f"C{cid:07d}",
                "email": profile.email if profile else fake.email_for(name, cid),
                "full_name": name,
                "phone": fake.phone(rng),
                "created_at": fake.moment(rng, self.today, 400, 2400),
                "contract_ended_at": fake.moment(rng, self.today, 30, 2000) if ended else None,
            },
        )
        if profile is None:
            items = [rng.randint(1, 2) for _ in range(rng.choice((0, 0, 1, 1, 1, 2)))]
            self.orders(cid, name, items, invoice_share=0.7)
            self.tickets(cid, name, 1 if rng.random() < 0.2 else 0)
            self.logins(cid, rng.choice((0, 1, 2)), rng.choice((0, 0, 1)))
        else:
            self.orders(cid, name, list(profile.items_per_order), invoice_share=1.0)
            self.tickets(cid, name, profile.tickets)
            self.logins(cid, profile.recent_logins, profile.old_logins)

    def orders(self, cid: int, name: str, items: Sequence[int], invoice_share: float) -> None:
        rng = self.rng
        for count in items:
            ordered_at = fake.moment(rng, self.today, 1, 380)
            address = fake.address(rng)
            order_id = self._add(
                "orders",
                cid,
                {"customer_id": cid, "shipping_address": address, "ordered_at": ordered_at},
            )
            for line in range(1, count + 1):
                item = {"order_id": order_id, "line_no": line, "quantity": rng.randint(1, 5)}
                self._add("order_items", cid, item | {"sku": f"SKU-{rng.randrange(10**5):05d}"})
            if rng.random() < invoice_share:
                invoice = {"customer_id": cid, "billing_name": name, "billing_address": address}
                amount = {"amount_cents": rng.randint(500, 250_000), "issued_at": ordered_at}
                self._add("invoices", cid, invoice | amount)

    def tickets(self, cid: int, name: str, count: int) -> None:
        for _ in range(count):
            subject, body = fake.ticket(self.rng, name)
            created = fake.moment(self.rng, self.today, 1, 1000)
            row = {"customer_id": cid, "subject": subject, "body": body, "created_at": created}
            self._add("support_tickets", cid, row)

    def logins(self, cid: int, recent: int, old: int) -> None:
        spans = [(0, 89)] * recent + [(91, 365)] * old
        for low, high in spans:
            occurred = fake.moment(self.rng, self.today, low, high)
            row = {"customer_id": cid, "ip_address": fake.ip_address(self.rng)}
            self._add("login_events", cid, row | {"occurred_at": occurred})


def _chunks(rows: Sequence[Row]) -> Iterator[Sequence[Row]]:
    for start in range(0, len(rows), CHUNK_ROWS):
        yield rows[start : start + CHUNK_ROWS]


def _load(conn: Connection, md: MetaData, rows: Mapping[str, Sequence[Row]]) -> None:
    for name in TABLES:  # parents first: foreign keys hold at every insert
        for chunk in _chunks(rows[name]):
            conn.execute(insert(md.tables[name]), list(chunk))


def named_subject_ids(customers: int) -> tuple[int, int]:
    """The customer ids of the demo subject and the second subject (mid-table, not first)."""
    return customers // 2, customers // 2 + 1


def seed_crm(
    url: str, *, customers: int = 2000, seed: int = 7, today: date | None = None
) -> DemoData:
    """(Re)create the demo CRM at ``url`` with ``customers`` customers and their rows.

    Deterministic for a given ``seed`` and ``today`` (dates are relative to it so the
    retention rules always find something due); idempotent: tables are dropped first.
    """
    if customers < 2:
        raise ValueError("the demo CRM needs at least 2 customers (the named subjects)")
    builder = _Builder(random.Random(seed), today or datetime.now(UTC).date())
    demo_id, second_id = named_subject_ids(customers)
    named = {demo_id: DEMO_PROFILE, second_id: SECOND_PROFILE}
    for cid in range(1, customers + 1):
        builder.customer(cid, named.get(cid))

    md = crm_metadata()
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            md.drop_all(conn)
            md.create_all(conn)
            _load(conn, md, builder.rows)
            # Indexes after the load: one sort per index instead of per-row maintenance.
            for index in add_indexes(md, conn.dialect.name):
                index.create(conn)
            sync_id_sequences(conn, md)
    finally:
        engine.dispose()

    def subject(cid: int) -> DemoSubject:
        return DemoSubject(
            email=named[cid].email,
            customer_number=f"C{cid:07d}",
            customer_id=cid,
            rows={t: builder.owned[cid][t] for t in TABLES},
        )

    counts = {t: len(builder.rows[t]) for t in TABLES}
    return DemoData(subject=subject(demo_id), second=subject(second_id), counts=counts)


def remove_sqlite_files(url: str) -> list[Path]:
    """Delete a SQLite database file and its WAL/journal side files; the paths removed.

    The demo starts from a fresh CRM file each run. Other backends are left alone
    (``seed_crm`` drops and recreates their tables).
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return []
    base = Path(parsed.database or "")
    removed = []
    for path in (base, *(base.with_name(base.name + s) for s in ("-wal", "-shm", "-journal"))):
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed
