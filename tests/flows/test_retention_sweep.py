"""The retention sweep flow end to end on the demo CRM (SQLite, PostgreSQL, MariaDB).

What an operator relies on: a dry run changes nothing; a sweep removes exactly the
expired rows, anonymizes exactly the expired customers and leaves every other row
byte-for-byte as it was; legal holds (by table, by subject) keep what they cover, and
expired holds do not; every batch reaches the ledger exactly once, even when the process
is killed mid-sweep and the sweep is run again.
"""

from __future__ import annotations

import random
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from config.settings import PROJECT_ROOT, get_settings
from core.engines import make_engine
from core.pseudonym import Pseudonymizer
from demo.crm_schema import crm_metadata
from demo.s3_server import LocalS3
from demo.seed_sql import DemoData, seed_crm
from flows.retention_sweep import SweepParameters, retention_sweep
from tests import forked_cli
from tests.flows.support import subprocess_env

CUSTOMERS = 300
SQL_RULES = ["login-events-90d", "support-tickets-2y", "customers-anonymize-3y"]
AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ANONYMIZED = {"email", "full_name", "phone"}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")


def write_config(folder: Path, url: str, edit: Callable[[dict[str, Any]], None] | None) -> Path:
    """The demo configuration with the CRM at ``url`` and the policy edited by ``edit``."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(PROJECT_ROOT / "config" / "demo", folder)
    inventory = (folder / "inventory.yaml").read_text()
    inventory = inventory.replace("sqlite:///${LIFECYCLE_DATA_DIR}/crm.db", url)
    (folder / "inventory.yaml").write_text(inventory)
    if edit is not None:
        policy = yaml.safe_load((folder / "policy.yaml").read_text())
        edit(policy)
        (folder / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


Snapshot = dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]


def snapshot(url: str) -> Snapshot:
    """Every row of every table, keyed by primary key."""
    engine = make_engine(url)
    md = crm_metadata()
    out: Snapshot = {}
    with engine.connect() as conn:
        for table in md.sorted_tables:
            key = [c.name for c in table.primary_key.columns]
            rows = conn.execute(sa.select(table)).mappings().all()
            out[table.name] = {tuple(r[k] for k in key): tuple((c, r[c]) for c in r) for r in rows}
    engine.dispose()
    return out


def expired_keys(url: str, as_of: datetime) -> dict[str, set[tuple[Any, ...]]]:
    """What the demo rules say is expired at ``as_of``, computed independently of the code."""
    naive = as_of.astimezone(UTC).replace(tzinfo=None)
    engine = make_engine(url)
    t = crm_metadata().tables
    with engine.connect() as conn:
        logins = conn.execute(
            sa.select(t["login_events"].c.id).where(
                t["login_events"].c.occurred_at < naive - timedelta(days=90)
            )
        )
        tickets = conn.execute(
            sa.select(t["support_tickets"].c.id).where(
                t["support_tickets"].c.created_at < naive.replace(year=naive.year - 2)
            )
        )
        customers = conn.execute(
            sa.select(t["customers"].c.id).where(
                t["customers"].c.contract_ended_at < naive.replace(year=naive.year - 3)
            )
        )
        out = {
            "login_events": {tuple(r) for r in logins},
            "support_tickets": {tuple(r) for r in tickets},
            "customers": {tuple(r) for r in customers},
        }
    engine.dispose()
    return out


def sweep_events(kind: str | None = None) -> list[Any]:
    kinds = [kind] if kind else None
    return [e for e in Ledger.open().events(kinds=kinds) if e.kind.startswith("sweep.")]


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def crm_url(request: pytest.FixtureRequest, isolated_settings: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{isolated_settings / 'crm.db'}"
        return
    request.applymarker(pytest.mark.service)
    fixture = "pg_url" if request.param == "postgresql" else "mariadb_url"
    yield request.getfixturevalue(fixture)


@pytest.fixture
def demo(
    crm_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_server: None,
    local_s3: LocalS3,
) -> Callable[..., tuple[str, DemoData]]:
    """Seed the demo CRM at the backend's URL and point the settings at a config for it."""

    def make(edit: Callable[[dict[str, Any]], None] | None = None) -> tuple[str, DemoData]:
        folder = write_config(tmp_path / "config", crm_url, edit)
        monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(folder))
        get_settings.cache_clear()
        data = seed_crm(crm_url, customers=CUSTOMERS, today=AS_OF.date())
        return crm_url, data

    return make


def _changed_columns(before: Snapshot, after: Snapshot, table: str) -> dict[Any, set[str]]:
    changed: dict[Any, set[str]] = {}
    for key, row in after[table].items():
        old = dict(before[table][key])
        diff = {c for c, v in row if old[c] != v}
        if diff:
            changed[key] = diff
    return changed


def test_dry_run_changes_nothing_and_records_the_plan(demo: Callable[..., Any]) -> None:
    url, _ = demo()
    before = snapshot(url)
    expected = expired_keys(url, AS_OF)

    summary = retention_sweep(params=SweepParameters(dry_run=True, rules=SQL_RULES, as_of=AS_OF))

    assert summary["dry_run"] is True
    planned = {t["target"]: t["planned"] for t in summary["targets"]}
    assert planned["crm.login_events:delete"] == len(expected["login_events"]) > 0
    assert planned["crm.support_tickets:delete"] == len(expected["support_tickets"]) > 0
    assert planned["crm.customers:anonymize:email,full_name,phone"] == len(expected["customers"])
    assert snapshot(url) == before
    kinds = [e.kind for e in sweep_events()]
    assert kinds == ["sweep.planned", "sweep.dry_run"]


def test_sweep_removes_exactly_the_expired_rows_and_nothing_else(
    demo: Callable[..., Any],
) -> None:
    url, _ = demo()
    before = snapshot(url)
    expected = expired_keys(url, AS_OF)

    summary = retention_sweep(params=SweepParameters(rules=SQL_RULES, batch_size=100, as_of=AS_OF))

    after = snapshot(url)
    assert summary["status"] == "completed"
    for table in ("login_events", "support_tickets"):
        assert set(before[table]) - set(after[table]) == expected[table]
    for table in set(before) - {"login_events", "support_tickets", "customers"}:
        assert after[table] == before[table], table
    for table in ("login_events", "support_tickets"):
        survivors = {k: v for k, v in before[table].items() if k not in expected[table]}
        assert after[table] == survivors
    # Customers: only the expired ones changed, and only in the anonymized columns.
    changed = _changed_columns(before, after, "customers")
    assert set(changed) <= expected["customers"]
    assert all(cols <= ANONYMIZED for cols in changed.values())
    for key in expected["customers"]:
        row = dict(after["customers"][key])
        for column in ANONYMIZED:  # NULL where the column allows it, else a keyed hash
            assert row[column] is None or re.fullmatch(r"[0-9a-f]{64}", row[column])
        assert row["email"] != dict(before["customers"][key])["email"]

    batches = sweep_events("sweep.batch")
    assert (
        sum(sum(e.counts.values()) for e in batches) == summary["deleted"] + summary["anonymized"]
    )
    assert summary["deleted"] == len(expected["login_events"]) + len(expected["support_tickets"])
    assert len({(e.target, e.detail["batch"]) for e in batches}) == len(batches)
    assert Ledger.open().verify().ok

    again = retention_sweep(params=SweepParameters(rules=SQL_RULES, as_of=AS_OF))
    assert again["deleted"] == again["anonymized"] == 0
    assert snapshot(url) == after


def _hold_on_subject_and_table(keys_email: str) -> Callable[[dict[str, Any]], None]:
    def edit(policy: dict[str, Any]) -> None:
        subject = str(
            Pseudonymizer(keyring_from_settings().pseudonym_hmac).of_value("email", keys_email)
        )
        policy["legal_holds"] += [
            {
                "id": "HOLD-SUBJECT",
                "reason": "Subject's dispute",
                "scope": {"subject": subject},
                "starts": "2026-01-01",
            },
            {
                "id": "HOLD-TICKETS",
                "reason": "Regulator inquiry into support",
                "scope": {"store": "crm", "table": "support_tickets"},
                "starts": "2026-01-01",
            },
            {
                "id": "HOLD-OLD",
                "reason": "Closed inquiry",
                "scope": {"store": "crm", "table": "login_events"},
                "starts": "2024-01-01",
                "ends": "2025-01-01",
            },
        ]

    return edit


def test_legal_holds_keep_their_scope_and_expired_holds_do_not(
    demo: Callable[..., Any],
) -> None:
    url, data = demo()
    url, data = demo(_hold_on_subject_and_table(data.subject.email))
    before = snapshot(url)
    expected = expired_keys(url, AS_OF)
    subject_logins = {
        k
        for k, row in before["login_events"].items()
        if dict(row)["customer_id"] == data.subject.customer_id
    }
    held_logins = subject_logins & expected["login_events"]
    assert held_logins, "the demo subject should have expired login events"

    summary = retention_sweep(params=SweepParameters(rules=SQL_RULES, batch_size=100, as_of=AS_OF))

    after = snapshot(url)
    targets = {t["target"]: t for t in summary["targets"]}
    assert after["support_tickets"] == before["support_tickets"]  # whole table held
    assert targets["crm.support_tickets:delete"]["state"] == "held"
    assert targets["crm.support_tickets:delete"]["held"] == len(expected["support_tickets"])
    # The subject's expired logins survive; everyone else's expired logins are gone
    # (HOLD-OLD ended in 2025 and no longer protects the table).
    assert set(before["login_events"]) - set(after["login_events"]) == (
        expected["login_events"] - held_logins
    )
    assert targets["crm.login_events:delete"]["held"] == len(held_logins)


@pytest.mark.parametrize(
    ("crm_url", "point"),
    [
        ("sqlite", "sweep-intent"),
        ("sqlite", "sweep-applied"),
        ("postgresql", "sweep-intent"),  # PostgreSQL: read + delete, one transaction
        ("postgresql", "sweep-applied"),
        ("mariadb", "sweep-intent"),
        ("sqlite", "sweep-target-closing"),  # killed inside the target's closing transaction
    ],
    indirect=["crm_url"],
)
def test_killed_sweep_rerun_ends_as_the_uninterrupted_one(
    *,
    demo: Callable[..., Any],
    point: str,
    prefect_api_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    crm_url: str,
) -> None:
    url, _ = demo()
    expected = expired_keys(url, AS_OF)
    batches = -(-len(expected["login_events"]) // 100)
    seq = random.Random(point).randint(1, batches)  # a random batch, reproducibly
    crash = f"{point}:crm.login_events:delete#{seq}"
    if point == "sweep-target-closing":
        crash = f"{point}:crm.login_events:delete"
    args = [
        "sweep",
        "--batch-size",
        "100",
        "--as-of",
        AS_OF.replace(tzinfo=None).isoformat(),
        "--json",
        *(x for r in SQL_RULES for x in ("--rule", r)),
    ]
    env = subprocess_env(
        PREFECT_API_URL=prefect_api_url,
        LIFECYCLE_TEST_HOOKS="1",
        LIFECYCLE_TEST_CRASH_AT=crash,
    )
    # Each run in a process of its own, forked from one that imported the CLI once.
    killed = forked_cli.run("cli.main", args, env=env, timeout=300)
    assert killed.returncode == 137, killed.stderr[-2000:]
    rerun = forked_cli.run(
        "cli.main", args, env=subprocess_env(PREFECT_API_URL=prefect_api_url), timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    crashed_end = snapshot(url)
    crashed_events = sweep_events()

    # The same sweep, uninterrupted, on an identical copy.
    seed_crm(url, customers=CUSTOMERS, today=AS_OF.date())
    monkeypatch.setenv("LIFECYCLE_DATA_DIR", str(tmp_path / "reference"))
    get_settings.cache_clear()
    retention_sweep(params=SweepParameters(rules=SQL_RULES, batch_size=100, as_of=AS_OF))
    assert snapshot(url) == crashed_end

    kinds = [e.kind for e in crashed_events]
    assert kinds.count("sweep.completed") == 1 and "sweep.resumed" in kinds
    batch_ids = [(e.target, e.detail["batch"]) for e in crashed_events if e.kind == "sweep.batch"]
    assert len(batch_ids) == len(set(batch_ids))  # no batch audited twice
    closed = [e.target for e in crashed_events if e.kind == "sweep.target"]
    assert sorted(closed) == sorted(set(closed)), "a target was closed twice"
    assert "crm.login_events:delete" in closed  # and none was closed without its event
    deleted = sum(
        e.counts.get("deleted", 0)
        for e in crashed_events
        if e.kind == "sweep.batch" and e.target == "crm.login_events:delete"
    )
    assert deleted == len(expected["login_events"])  # none lost from the ledger either


def _versions(s3: LocalS3, bucket: str) -> set[tuple[str, str]]:
    client = s3.client()
    out: set[tuple[str, str]] = set()
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        out |= {(v["Key"], v["VersionId"]) for v in page.get("Versions", [])}
        out |= {(m["Key"], m["VersionId"]) for m in page.get("DeleteMarkers", [])}
    client.close()
    return out


@pytest.mark.parametrize("crm_url", ["sqlite"], indirect=True)
def test_sweep_reaches_s3_every_version_and_keeps_held_subjects_and_locked_archive(
    demo: Callable[..., Any], local_s3: LocalS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    import connectors.s3.sweep
    from demo.seed_s3 import ARCHIVE_BUCKET, TICKETS_BUCKET, seed_s3

    # Small batches: many resumed listings. moto drops the first key after a deleted marker
    # key (AWS does not); the re-scan after the batches must catch what a listing skipped.
    monkeypatch.setattr(connectors.s3.sweep, "BATCH_SIZE", 20)

    _, data = demo()
    demo(_hold_on_subject_and_table(data.subject.email))
    customer_ids = list(range(data.subject.customer_id - 10, data.subject.customer_id + 10))
    seed_s3(
        local_s3.client(), customer_ids=customer_ids, subject_customer_id=data.subject.customer_id
    )
    tickets_before = _versions(local_s3, TICKETS_BUCKET)
    archive_before = _versions(local_s3, ARCHIVE_BUCKET)
    held_prefix = f"tickets/{data.subject.customer_id}/"
    held = {v for v in tickets_before if v[0].startswith(held_prefix)}
    assert held and len(held) < len(tickets_before)
    # moto cannot backdate objects: sweep as of a moment past the rule's two years.
    later = datetime.now(UTC) + timedelta(days=2 * 366 + 2)

    summary = retention_sweep(params=SweepParameters(rules=["ticket-attachments-2y"], as_of=later))

    assert summary["status"] == "completed"
    assert _versions(local_s3, TICKETS_BUCKET) == held  # every version and marker of the rest
    assert _versions(local_s3, ARCHIVE_BUCKET) == archive_before
    (target,) = summary["targets"]
    assert target["done"] == len(tickets_before) - len(held)
    assert target["held"] == len(held)
    verified = sweep_events("sweep.verified")
    assert verified[-1].counts["remaining"] == 0


@pytest.mark.parametrize("crm_url", ["sqlite", "postgresql"], indirect=True)
def test_a_row_that_expires_behind_the_cursor_is_swept_by_a_second_pass(
    demo: Callable[..., Any], crm_url: str
) -> None:
    """The first pass stops at the plan's count; the re-count finds the row that turned old
    behind the cursor, and the second pass (``rescan``) runs to the end and takes it."""
    from engine.sweep_runner import plan_sweep, run_range, sweep_context, verify_and_rewind

    url, _ = demo()
    t = crm_metadata().tables["login_events"]
    cutoff = AS_OF.replace(tzinfo=None) - timedelta(days=90)
    engine = make_engine(url)
    with sweep_context() as ctx:
        run = plan_sweep(ctx, as_of=AS_OF, rules=("login-events-90d",), dry_run=False)
        (target,) = ctx.targets(run)
        run_range(ctx, run, target, batch_size=100, max_batches=1)
        cursor = ctx.progress.target(run.id, target.id).cursor
        assert cursor is not None
        with engine.begin() as conn:
            behind = conn.execute(
                sa.select(sa.func.max(t.c.id)).where(t.c.id <= cursor[0], t.c.occurred_at >= cutoff)
            ).scalar_one()
            assert behind is not None, "the first batch should pass a recent login"
            conn.execute(
                sa.update(t).where(t.c.id == behind).values(occurred_at=cutoff.replace(year=2020))
            )
        expired = expired_keys(url, AS_OF)["login_events"]
        before = snapshot(url)["login_events"]

        while not run_range(ctx, run, target, batch_size=100).finished:
            pass
        assert verify_and_rewind(ctx, run, target) == 1
        assert ctx.progress.target(run.id, target.id).state == "rescan"
        while not run_range(ctx, run, target, batch_size=100).finished:
            pass
        assert verify_and_rewind(ctx, run, target) == 0

    assert (behind,) in expired
    # Every expired row is gone, the turned one too; every other row is as it was.
    assert snapshot(url)["login_events"] == {k: v for k, v in before.items() if k not in expired}
    engine.dispose()
