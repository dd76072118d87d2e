"""A small SQLite shop for the incident engine and flow tests, and its configuration.

``customers`` (e-mail matched without case, ``id`` derived as ``customer_id``, a ``tenant``
client column) and their ``orders`` (a ``payment`` category the policy marks high-risk,
``ordered_at`` as created timestamp). 20 customers at example.com, 2 orders each, one order
a day; the expected counts are computed from the seeded rows alone (``Shop``), never by
asking the database. The policy's risk rules make a breach of a high-risk category high
risk whether or not it was readable, so encryption at rest decides the subject notice
(Art. 34(3)(a)), not the risk level.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from config.settings import get_settings
from core.engines import make_engine
from incidents.scope import IncidentScope, ScopePart
from state.incidents import Incident, IncidentRegister

T0 = datetime(2026, 1, 1)
CUSTOMERS = 20
ORDERS_EACH = 2
TENANTS = ("acme", "globex")
WINDOW = (T0 + timedelta(days=10), T0 + timedelta(days=20))

POLICY = """\
categories:
  - {name: contact, description: "Contact details"}
  - {name: payment, description: "Card references", high_risk: true}
requests:
  deadline_days: 30
  approval: {required_for: []}
incidents:
  warn_hours: 12
  clients: {acme: 24}
  risk_rules:
    - level: medium
      when: {min_subjects: 1}
      reason: personal data of identifiable subjects was affected
    - level: high
      when: {high_risk_categories: true, min_subjects: 1}
      reason: data of a high-risk category was affected
"""

INVENTORY = """\
stores:
  - name: shop
    type: sql
    url: "sqlite:///{db}"
    region: eu-central-1
{encryption}    tables:
      - name: customers
        identity: [{{column: email, kind: email, case_insensitive: true}}]
        derives: [{{column: id, as: customer_id}}]
        fields: {{email: [contact]}}
        timestamps: {{created: created_at}}
        client_column: tenant
      - name: orders
        fields: {{card_ref: [payment]}}
        timestamps: {{created: ordered_at}}
"""
ENCRYPTED = """\
    encryption_at_rest: {encrypted: true, key_held_by: "us (LUKS, platform team)"}
"""


def email(i: int) -> str:
    """Customer ``i``'s address, stored in mixed case (unique to these tests)."""
    return f"Breach.Shopper{i:02}@Example.com"


@dataclass(frozen=True)
class Shop:
    """The seeded shop: its database, config folder and the truth of what it holds."""

    db: Path
    config_dir: Path
    orders: tuple[tuple[int, int, datetime], ...]  # (order id, customer id, ordered at)
    tenants: dict[int, str]

    @property
    def emails(self) -> list[str]:
        """Every seeded address, lower-cased (what a leak search looks for)."""
        return [email(i).lower() for i in range(1, CUSTOMERS + 1)]

    def window_orders(self) -> list[tuple[int, int, datetime]]:
        start, end = WINDOW
        return [o for o in self.orders if start <= o[2] < end]

    def window_customers(self) -> set[int]:
        return {customer for _, customer, _ in self.window_orders()}


def _seed(db: Path) -> tuple[tuple[tuple[int, int, datetime], ...], dict[int, str]]:
    md = sa.MetaData()
    customers = sa.Table(
        "customers",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(120), nullable=False),
        sa.Column("tenant", sa.String(40)),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    orders = sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("card_ref", sa.String(40)),
        sa.Column("ordered_at", sa.DateTime, nullable=False),
    )
    tenants = {i: TENANTS[i % 2] for i in range(1, CUSTOMERS + 1)}
    placed = tuple(
        (n, (n - 1) % CUSTOMERS + 1, T0 + timedelta(days=n - 1, hours=6))
        for n in range(1, CUSTOMERS * ORDERS_EACH + 1)
    )
    engine = make_engine(f"sqlite:///{db}")
    try:
        md.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                customers.insert(),
                [
                    {"id": i, "email": email(i), "tenant": tenants[i], "created_at": T0}
                    for i in range(1, CUSTOMERS + 1)
                ],
            )
            conn.execute(
                orders.insert(),
                [
                    {"id": n, "customer_id": c, "card_ref": f"card-{n:04}", "ordered_at": at}
                    for n, c, at in placed
                ],
            )
    finally:
        engine.dispose()
    return placed, tenants


@pytest.fixture
def make_shop(
    isolated_settings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Shop]:
    """Seed the shop and write its configuration (``encrypted``: the store declares
    encryption at rest with a key we hold; ``report_roles``: who may report a concern);
    the folder becomes LIFECYCLE_CONFIG_DIR."""

    def make(*, encrypted: bool = False, report_roles: tuple[str, ...] = ()) -> Shop:
        folder = tmp_path / ("config-encrypted" if encrypted else "config")
        folder.mkdir()
        db = folder / "shop.db"
        placed, tenants = _seed(db)
        inventory = INVENTORY.format(db=db, encryption=ENCRYPTED if encrypted else "")
        (folder / "inventory.yaml").write_text(inventory)
        roles = f"  report_roles: [{', '.join(report_roles)}]\n" if report_roles else ""
        (folder / "policy.yaml").write_text(POLICY + roles)
        monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(folder))
        get_settings.cache_clear()
        return Shop(db, folder, placed, tenants)

    return make


@pytest.fixture
def shop(make_shop: Callable[..., Shop]) -> Shop:
    """The shop, unencrypted at rest."""
    return make_shop()


def now() -> datetime:
    return datetime.now(UTC)


ACTOR = "ops-lead"


def register() -> IncidentRegister:
    """The incident register of the test's audit database."""
    return IncidentRegister(Ledger.open(keys=keyring_from_settings(), actor=ACTOR))


def declared(
    *parts: ScopePart, hours_ago: float = 2, key_compromised: bool | None = False
) -> Incident:
    """A reported concern, declared a confidentiality breach we became aware of
    ``hours_ago``, scoped to ``parts``."""
    reg = register()
    found = reg.report(
        "Shop database dump found on a public share", reported_by="help-desk", actor=ACTOR
    )
    reg.declare(
        found.id,
        kinds=["confidentiality"],
        actor=ACTOR,
        aware_at=now() - timedelta(hours=hours_ago),
    )
    return reg.set_scope(
        found.id, IncidentScope(parts=parts), key_compromised=key_compromised, actor=ACTOR
    )


def ledger_text(incident_id: str) -> str:
    """Every ledger event of the incident, as lower-cased JSON (a leak search reads it)."""
    events = Ledger.open().events(request_id=incident_id)
    return json.dumps([[e.kind, e.target, dict(e.counts), dict(e.detail)] for e in events]).lower()


def prefect_rows() -> list[str]:
    """Every row of the session's Prefect test database, lower-cased (logs and events
    flushed first): what a leak search reads."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL
    from sqlalchemy import Select, inspect, literal_column, select, table
    from sqlalchemy.engine import make_url

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)
    url = make_url(str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value()))
    engine = make_engine(f"sqlite:///{url.database}")
    try:
        rows: list[str] = []
        with engine.connect() as conn:
            for name in inspect(engine).get_table_names():
                everything: Select[Any] = select(literal_column("*")).select_from(table(name))
                rows += [f"{name}: {tuple(row)!r}".lower() for row in conn.execute(everything)]
        return rows
    finally:
        engine.dispose()


@pytest.fixture
def prefect(prefect_server: None) -> Iterator[None]:
    """The session's Prefect test server (``tests.conftest``)."""
    yield
