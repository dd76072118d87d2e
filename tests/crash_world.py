"""The crash campaign's world: seeded store templates, fresh copies, snapshots and checks.

One CRM template per backend (``demo.seed_sql`` plus old login events, so a retention sweep
runs several batches), copied for every run: a file copy on SQLite, ``CREATE DATABASE ...
TEMPLATE`` on PostgreSQL. The audit database follows the store's backend and is copied
from a migrated, keyed template too. ``Outcome`` is what a run leaves behind: the whole
store, the ledger (verified), the access package's records, the exit code; ``diverge``
compares an interrupted-and-resumed run's outcome with an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from core.engines import make_engine

PG_ADMIN_URL = os.environ.get("LIFECYCLE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MASTER_KEY = "Y3Jhc2gtY2FtcGFpZ24tbWFzdGVyLWtleS0zMi1ieXRlcyE="  # test-only, 32+ bytes
PASSPHRASE = "crash campaign passphrase"
CUSTOMERS = 60
OLD_LOGINS = 450  # login events past the 90-day rule: several sweep batches of 100
SUBJECT = "Demo.Subject@example.com"
RESUME_KINDS = frozenset({"sweep.resumed", "sweep.lease_taken_over"})
"""Events a resumed run adds by design (a resumed sweep says so, and that it took over
the dead run's lease); not divergences."""
VARYING = {"access.package": ("bytes",)}
"""Counts that differ between any two runs (the package's manifest holds timestamps)."""
COMPLETIONS = ("request.completed", "sweep.completed")

INVENTORY = """\
stores:
  - name: crm
    type: sql
    url: "${CAMPAIGN_CRM_URL}"
    region: eu-central-1
    tables:
      - name: customers
        primary_key: [id]
        identity:
          - {column: email, kind: email, case_insensitive: true}
          - {column: customer_number, kind: customer_number}
        derives:
          - {column: id, as: customer_id}
        fields:
          email: [contact]
          full_name: [contact]
          phone: [contact]
          contract_ended_at: [contract]
      - name: orders
        primary_key: [id]
        fields:
          shipping_address: [contact, order_history]
          ordered_at: [order_history]
      - name: order_items
        primary_key: [order_id, line_no]
        fields:
          sku: [order_history]
          quantity: [order_history]
      - name: invoices
        primary_key: [id]
        fields:
          billing_name: [billing]
          billing_address: [billing]
      - name: support_tickets
        primary_key: [id]
        references:
          - {columns: [customer_id], table: customers, to_columns: [id]}
        fields:
          subject: [support]
          body: [support]
      - name: login_events
        primary_key: [id]
        fields:
          ip_address: [telemetry]
          occurred_at: [telemetry]
"""

POLICY = """\
categories:
  - {name: contact}
  - {name: order_history}
  - {name: billing}
  - {name: support}
  - {name: telemetry}
  - {name: contract}
requests:
  deadline_days: 30
  approval:
    required_for: [erasure]
    auto_approve: true
    approvers: [privacy-officer]
  erasure:
    default: {action: delete}
    categories:
      billing: {action: mask, mask: redact, reason: "invoices kept 10 years (tax law)"}
retention:
  - {id: login-events-90d, store: crm, table: login_events, age: 90d,
     measured_from: {column: occurred_at}, action: delete}
  - {id: support-tickets-2y, store: crm, table: support_tickets, age: 2y,
     measured_from: {column: created_at}, action: delete}
  - {id: customers-anonymize-3y, store: crm, table: customers, age: 3y,
     measured_from: {column: contract_ended_at}, action: anonymize,
     fields: [email, full_name, phone]}
legal_holds: []
"""


def write_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inventory.yaml").write_text(INVENTORY)
    (folder / "policy.yaml").write_text(POLICY)
    (folder / "passphrase.txt").write_text(PASSPHRASE)
    return folder


@contextmanager
def _admin() -> Iterator[sa.Connection]:
    """An autocommit connection to PostgreSQL's admin database, closed afterwards."""
    engine = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _pg_url(name: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _add_old_logins(url: str) -> None:
    """Old login events of bystanders (never the subject's): what sweeps delete in batches."""
    from demo.crm_schema import crm_metadata
    from demo.seed_sql import named_subject_ids

    table = crm_metadata().tables["login_events"]
    named = set(named_subject_ids(CUSTOMERS))
    owners = [c for c in range(1, CUSTOMERS + 1) if c not in named]
    engine = make_engine(url)
    with engine.begin() as conn:
        start = int(conn.scalar(sa.select(sa.func.max(table.c.id))) or 0) + 1
        old = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=200)
        conn.execute(
            sa.insert(table),
            [
                {
                    "id": start + i,
                    "customer_id": owners[i % len(owners)],
                    "ip_address": f"10.0.{i // 250}.{i % 250}",
                    "occurred_at": old - timedelta(minutes=i),
                }
                for i in range(OLD_LOGINS)
            ],
        )
    engine.dispose()


@dataclass
class Templates:
    """Seeded stores and migrated audit databases, one pair per backend, to copy from."""

    root: Path
    pg_names: list[str] = field(default_factory=list)

    def build(self, backends: list[str]) -> None:
        from demo.seed_sql import seed_crm

        for backend in backends:
            store, audit = self.url(backend, "tpl_store"), self.url(backend, "tpl_audit")
            if backend == "postgresql":
                with _admin() as conn:
                    for name in ("tpl_store", "tpl_audit"):
                        real = conn.dialect.identifier_preparer.quote(self._pg(name))
                        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {real} WITH (FORCE)"))
                        conn.execute(sa.text(f"CREATE DATABASE {real}"))
            seed_crm(store, customers=CUSTOMERS)
            _add_old_logins(store)
            _migrate_audit(audit)

    def _pg(self, name: str) -> str:
        real = f"lc_cc_{self.root.name[-8:]}_{name}".lower().replace("-", "_")
        if real not in self.pg_names:
            self.pg_names.append(real)
        return real

    def url(self, backend: str, name: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{self.root / (name + '.db')}"
        return _pg_url(self._pg(name))

    def copy(self, backend: str, what: str, folder: Path) -> str:
        """A fresh copy of the ``store`` or ``audit`` template; its URL."""
        if backend == "sqlite":
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{what}.db"
            shutil.copyfile(self.root / f"tpl_{what}.db", target)
            return f"sqlite:///{target}"
        name = self._pg(f"r{uuid.uuid4().hex[:10]}")
        with _admin() as conn:
            quote = conn.dialect.identifier_preparer.quote
            template = quote(self._pg("tpl_" + what))
            conn.execute(sa.text(f"CREATE DATABASE {quote(name)} TEMPLATE {template}"))
        return _pg_url(name)

    def drop(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() != "postgresql" or parsed.database is None:
            return
        with _admin() as conn:
            quoted = conn.dialect.identifier_preparer.quote(parsed.database)
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        if parsed.database in self.pg_names:
            self.pg_names.remove(parsed.database)

    def close(self) -> None:
        for name in list(self.pg_names):
            self.drop(_pg_url(name))


def _migrate_audit(url: str) -> None:
    """Migrate and key the audit template (the campaign's master key, an empty ledger)."""
    from audit.database import audit_engine, dispose_engines
    from audit.keystore import load_keyring

    audit_engine(url)
    load_keyring(url)
    dispose_engines()


Snapshot = dict[str, list[tuple[str, ...]]]


def snapshot(url: str) -> Snapshot:
    """Every row of every table of the store, as sorted reprs: the whole database."""
    engine = make_engine(url)
    try:
        md = sa.MetaData()
        with warnings.catch_warnings():  # expression indexes are not needed to read rows
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            md.reflect(engine)
        with engine.connect() as conn:
            return {
                name: sorted(tuple(repr(v) for v in row) for row in conn.execute(sa.select(table)))
                for name, table in sorted(md.tables.items())
            }
    finally:
        engine.dispose()


def rows_changed(before: Snapshot, after: Snapshot) -> int:
    """Rows deleted or changed (a changed row counts once)."""
    return sum(len(Counter(before[t]) - Counter(after.get(t, []))) for t in before)


Signature = tuple[str, str, str, str, str, str]
"""An event as compared: kind, status, connector, target, detail's action, counts (JSON)."""
CHANGES = frozenset({"delete", "mask", "unlink", "rectify"})
"""Batch actions that change rows (a ``keep`` batch reports rows left alone)."""


@dataclass(frozen=True)
class Outcome:
    """What one run of a kind left behind, in the terms compared."""

    exit_code: int
    store: Snapshot
    changed: int
    events: tuple[Signature, ...]
    verified: bool
    records: tuple[str, ...] | None  # the access package's records, sorted

    def kinds(self) -> Counter[str]:
        return Counter(e[0] for e in self.events if e[0] not in RESUME_KINDS)


def _batch_total(events: tuple[Signature, ...]) -> int:
    """Rows the ledger's batch events say were changed."""
    total = 0
    for kind, _status, _conn, _target, action, counts in events:
        if kind in ("erasure.batch", "rectification.batch") and action in CHANGES:
            total += int(json.loads(counts).get("affected", 0))
        elif kind == "sweep.batch":
            total += sum(json.loads(counts).values())
    return total


def outcome(
    exit_code: int, store_url: str, audit_url: str, template: Snapshot, data_dir: Path
) -> Outcome:
    """Read a finished run's store, ledger and package."""
    from audit.keystore import load_keyring
    from audit.ledger import Ledger

    store = snapshot(store_url)
    engine = make_engine(audit_url)
    try:
        ledger = Ledger(engine, load_keyring(audit_url))
        stored = list(ledger.events())
        verified = ledger.verify().ok
    finally:
        engine.dispose()
    events = tuple(
        sorted(
            (
                e.kind,
                str(e.status),
                e.connector or "",
                e.target or "",
                str(e.detail.get("action", "")),
                json.dumps(
                    {k: v for k, v in e.counts.items() if k not in VARYING.get(e.kind, ())},
                    sort_keys=True,
                ),
            )
            for e in stored
            if e.kind not in RESUME_KINDS
        )
    )
    return Outcome(
        exit_code,
        store,
        rows_changed(template, store),
        events,
        verified,
        _package_records(data_dir),
    )


def _package_records(data_dir: Path) -> tuple[str, ...] | None:
    from core.package import read_package

    packages = sorted((data_dir / "exports").glob("*")) if (data_dir / "exports").exists() else []
    packages = [p for p in packages if p.is_file() and not p.name.startswith(".")]
    if not packages:
        return None
    records: list[str] = []
    for path in packages:
        _manifest, lines = read_package(path, PASSPHRASE.encode())
        records += [json.dumps(r, sort_keys=True, default=str) for r in lines]
    return tuple(sorted(records))


def diverge(reference: Outcome, got: Outcome) -> list[str]:
    """How ``got`` (interrupted, then resumed) differs from the uninterrupted ``reference``."""
    problems = []
    if got.exit_code != reference.exit_code:
        problems.append(f"resume exit code {got.exit_code}, uninterrupted {reference.exit_code}")
    if got.store != reference.store:
        tables = [t for t in reference.store if reference.store[t] != got.store.get(t)]
        problems.append(f"store differs in {', '.join(tables) or 'its tables'}")
    if not got.verified:
        problems.append("audit verify: the ledger is not intact")
    if got.kinds() != reference.kinds():
        delta = (got.kinds() - reference.kinds()) + (reference.kinds() - got.kinds())
        problems.append(f"events per kind differ: {dict(delta)}")
    elif got.events != reference.events:
        extra = sorted(Counter(got.events) - Counter(reference.events))[:2]
        missing = sorted(Counter(reference.events) - Counter(got.events))[:2]
        problems.append(f"event counts differ: extra {extra}, missing {missing}")
    for kind in COMPLETIONS:
        if got.kinds()[kind] > 1:
            problems.append(f"{got.kinds()[kind]} '{kind}' events")
    ledger, changed = _batch_total(got.events), got.changed
    if ledger != changed:
        problems.append(f"batches audit {ledger} rows, the store changed {changed}")
    if got.records != reference.records:
        problems.append("the access package's records differ")
    return problems
