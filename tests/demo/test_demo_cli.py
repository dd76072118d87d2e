"""`lifecycle demo` end to end: seeds the CRM, runs an access and an erasure request, and
leaves a verifiable ledger; run again, it starts from a fresh CRM and extends the ledger."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from audit.ledger import Ledger
from cli.main import app
from core.engines import make_engine
from demo.crm_schema import crm_metadata
from demo.customers import DEMO_CUSTOMERS
from demo.seed_sql import DEMO_PROFILE, named_subject_ids, seed_crm
from demo.walkthrough import package_recipient

PERSONAL = (DEMO_PROFILE.email.lower(), DEMO_PROFILE.name.lower())


def _run_demo(data_dir: Path, prefect_home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)  # the test's data folder and master key (conftest)
    env.pop("PREFECT_API_URL", None)
    env.update(PREFECT_HOME=str(prefect_home), COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _subject_rows(crm: Path, customer_id: int) -> dict[str, int]:
    """Rows still pointing at the subject, and the invoices kept with masked billing fields."""
    md = crm_metadata()
    engine = make_engine(f"sqlite:///{crm}")
    try:
        with engine.connect() as conn:
            counts = {
                name: int(
                    conn.execute(
                        select(func.count())
                        .select_from(md.tables[name])
                        .where(md.tables[name].c.customer_id == customer_id)
                    ).scalar_one()
                )
                for name in ("orders", "invoices", "support_tickets", "login_events")
            }
            customers = md.tables["customers"]
            counts["customers"] = int(
                conn.execute(
                    select(func.count())
                    .select_from(customers)
                    .where(func.lower(customers.c.email) == PERSONAL[0])
                ).scalar_one()
            )
            invoices = md.tables["invoices"]
            counts["masked_invoices"] = int(
                conn.execute(
                    select(func.count())
                    .select_from(invoices)
                    .where(invoices.c.billing_name == "[redacted]")
                ).scalar_one()
            )
            counts["all_customers"] = int(
                conn.execute(select(func.count()).select_from(customers)).scalar_one()
            )
            return counts
    finally:
        engine.dispose()


def _earlier_run(data_dir: Path) -> tuple[int, bytes]:
    """State an earlier run leaves: ledger events, an old CRM, the subject's package key."""
    from cli.request_cmd import open_register
    from state.register import RequestKind

    register = open_register()
    register.register(RequestKind.ACCESS, {"email": "someone@example.com"}, requested_by="ops")
    seed_crm(f"sqlite:///{data_dir / 'crm.db'}", customers=50, seed=1)
    _recipient, private_key = package_recipient(data_dir / "keys")
    public = private_key.with_name(private_key.name + ".pub").read_bytes()
    return register.ledger.count(), public


@pytest.mark.slow
def test_demo_end_to_end(isolated_settings: Path, tmp_path: Path) -> None:
    events_before, public_key = _earlier_run(isolated_settings)

    result = _run_demo(isolated_settings, tmp_path / "prefect")

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and "database is locked" not in output
    assert not any(p in output.lower() for p in PERSONAL)  # pseudonyms and counts only
    for expected in ("Seeding demo CRM", "Exported records", "Erasure per table"):
        assert expected in result.stdout
    assert "verification: clean" in result.stdout and "intact" in result.stdout
    # The provider (a stub in the demo's process): the subject's two subscriptions located,
    # exported, then erased by one signed request it confirmed after two status polls.
    assert "Seeding demo provider (store 'newsletter'" in result.stdout
    assert "provider Example Mail: 2 records located by signed request" in result.stdout
    assert (
        "provider Example Mail: 2 records erased by signed request "
        "(REQ-0001 confirmed after 2 status polls, every 0.5 s)" in result.stdout
    )

    ledger = Ledger.open()
    assert ledger.verify().ok
    assert ledger.count() > events_before  # the ledger keeps growing across runs
    kinds = {e.kind for e in ledger.events()}
    assert {"access.package", "erasure.planned", "erasure.verified"} <= kinds

    crm = isolated_settings / "crm.db"
    subject_id, _second = named_subject_ids(DEMO_CUSTOMERS)
    assert _subject_rows(crm, subject_id) == {
        "orders": 0,
        "invoices": 0,  # kept for the tax office, unlinked from the customer
        "support_tickets": 0,
        "login_events": 0,
        "customers": 0,
        "masked_invoices": 3,
        "all_customers": DEMO_CUSTOMERS - 1,  # re-seeded fresh, then one erased
    }
    # secure_delete and a WAL checkpoint: the erased values are not in the files at all.
    for path in crm.parent.glob("crm.db*"):
        content = path.read_bytes().lower()
        assert not any(p.encode() in content for p in PERSONAL), path.name
    [package] = (isolated_settings / "exports").glob("*.lcpkg")
    assert PERSONAL[0].encode() not in package.read_bytes().lower()  # encrypted
    assert (isolated_settings / "keys" / "demo-subject-x25519.pem.pub").read_bytes() == public_key
    assert (isolated_settings / "anchors" / "demo-checkpoint.json").exists()


def test_invalid_config_fails_with_clear_lines(
    isolated_settings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(tmp_path / "missing"))
    # The demo quiets Prefect through the environment; keep that inside this test.
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from config.settings import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 2
    assert "does not exist" in result.output
    assert "Traceback" not in result.output
    assert not (isolated_settings / "crm.db").exists()  # nothing seeded
