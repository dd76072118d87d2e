"""End to end on the real SQL connector: the demo CRM on SQLite (through the CLI) and PostgreSQL.

The demo inventory and policy: invoices are masked (tax law), everything else of the
subject is deleted; the second demo subject's rows must not change. The S3 store ``files``
is served by a local S3 over HTTP (``local_s3``): empty for the SQL-focused tests, seeded
with the demo objects for the erasure that reaches both stores.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from cli.main import app
from config.settings import PROJECT_ROOT, get_settings
from core.engines import make_engine
from core.package import generate_keypair, load_private_key, read_package
from demo.crm_schema import crm_metadata
from demo.s3_server import LocalS3
from demo.seed_s3 import ARCHIVE_BUCKET, TICKETS_BUCKET, seed_s3
from demo.seed_sql import DemoData, DemoSubject, seed_crm
from engine.intake import submit
from engine.request_support import request_context
from flows.subject_request import subject_request
from state.register import RequestStatus
from tests import forked_cli
from tests.flows.support import kinds, subprocess_env

CUSTOMERS = 60
TABLE = {t.name: t for t in crm_metadata().sorted_tables}


NAMES = {"Demo.Subject@example.com": "Demonstra%", "second.subject@example.com": "Secunda%"}


def footprint(url: str, subject: DemoSubject) -> dict[str, int]:
    """The subject's rows per table, found the way the demo seeds them."""
    t = TABLE
    name = NAMES[subject.email]
    engine = make_engine(url)
    with engine.connect() as conn:
        orders = select(t["orders"].c.id).where(t["orders"].c.customer_id == subject.customer_id)
        counts = {
            "customers": conn.scalar(
                select(func.count()).where(t["customers"].c.id == subject.customer_id)
            ),
            "orders": conn.scalar(select(func.count()).select_from(orders.subquery())),
            "order_items": conn.scalar(
                select(func.count()).where(t["order_items"].c.order_id.in_(orders))
            ),
            "named_invoices": conn.scalar(
                select(func.count()).where(t["invoices"].c.billing_name.like(name))
            ),
        }
        for name in ("support_tickets", "login_events"):
            counts[name] = conn.scalar(
                select(func.count()).where(t[name].c.customer_id == subject.customer_id)
            )
        counts["all_invoices"] = conn.scalar(select(func.count()).select_from(t["invoices"]))
    engine.dispose()
    return {k: int(v or 0) for k, v in counts.items()}


@pytest.fixture
def crm(
    isolated_settings: Path, prefect_server: None, local_s3: LocalS3
) -> Iterator[tuple[str, DemoData]]:
    """The demo CRM seeded at the demo inventory's SQLite URL, with the demo policy."""
    url = f"sqlite:///{isolated_settings / 'crm.db'}"
    yield url, seed_crm(url, customers=CUSTOMERS)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["request", *args], env={"COLUMNS": "200"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


def test_cli_erasure_on_sqlite(crm: tuple[str, DemoData]) -> None:
    url, data = crm
    second_before = footprint(url, data.second)

    code, out, err = invoke(
        "submit", "--kind", "erasure", "--identity", f"email={data.subject.email.lower()}", "--json"
    )

    assert code == 0, err
    payload = json.loads(out)
    assert payload["status"] == "completed"
    stores = {s["store"]: s for s in payload["stores"]}
    assert stores["crm"]["found"] == data.subject.total and stores["crm"]["remaining"] == 0
    assert stores["files"]["found"] == 0 and stores["files"]["phase"] != "skipped"
    after = footprint(url, data.subject)
    assert after == {
        "customers": 0,
        "orders": 0,
        "order_items": 0,
        "named_invoices": 0,  # masked in place ...
        "support_tickets": 0,
        "login_events": 0,
        "all_invoices": data.counts["invoices"],  # ... and kept for the tax record
    }
    assert footprint(url, data.second) == second_before
    rid = payload["request_id"]
    assert kinds(rid).count("request.completed") == 1
    assert request_context().register.get(rid).status is RequestStatus.COMPLETED
    assert data.subject.email.lower() not in (out + err).lower()


def _versions(s3: LocalS3, bucket: str) -> set[tuple[str, str, bool]]:
    """Every (key, version id, is delete marker) in ``bucket``."""
    client = s3.client()
    out: set[tuple[str, str, bool]] = set()
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        out |= {(v["Key"], v["VersionId"], False) for v in page.get("Versions", [])}
        out |= {(m["Key"], m["VersionId"], True) for m in page.get("DeleteMarkers", [])}
    client.close()
    return out


def test_cli_erasure_reaches_s3_over_http(crm: tuple[str, DemoData], local_s3: LocalS3) -> None:
    _url, data = crm
    subject_id = data.subject.customer_id
    s3_data = seed_s3(
        local_s3.client(),
        customer_ids=list(range(1, CUSTOMERS + 1)),
        subject_customer_id=subject_id,
        region=local_s3.region,
    )
    tickets_before = _versions(local_s3, TICKETS_BUCKET)
    archive_before = _versions(local_s3, ARCHIVE_BUCKET)
    mine = f"tickets/{subject_id}/"
    subject_tickets = {v for v in tickets_before if v[0].startswith(mine)}
    assert subject_tickets and any(v[2] for v in subject_tickets)  # versions and a marker

    code, out, err = invoke(
        "submit", "--kind", "erasure", "--identity", f"email={data.subject.email}", "--json"
    )

    assert code == 4, err  # completed with deferrals: the locked contract stays
    payload = json.loads(out)
    assert payload["status"] == "completed" and payload["exit_code"] == 4
    tickets_after = _versions(local_s3, TICKETS_BUCKET)
    assert not any(v[0].startswith(mine) for v in tickets_after)  # every version and marker
    assert tickets_after == tickets_before - subject_tickets  # the others' objects untouched
    archive_after = _versions(local_s3, ARCHIVE_BUCKET)
    kept = {v[0] for v in archive_after if v[0].startswith(f"contracts/{subject_id}/")}
    assert s3_data.retained_key in kept and s3_data.held_key in kept
    others = {v for v in archive_before if not v[0].startswith(f"contracts/{subject_id}/")}
    assert others <= archive_after
    deferrals = [d for d in payload["deferrals"] if d["store"] == "files"]
    assert deferrals and {d["target"] for d in deferrals} == {ARCHIVE_BUCKET}
    assert all(d["reason"] for d in deferrals)
    files = next(s for s in payload["stores"] if s["store"] == "files")
    assert files["deferred"] >= 2 and files["remaining"] == 0
    assert data.subject.email.lower() not in (out + err).lower()


def test_cli_access_on_sqlite(crm: tuple[str, DemoData], tmp_path: Path) -> None:
    url, data = crm
    public_path, _ = generate_keypair(tmp_path / "subject.key")
    before = footprint(url, data.subject)

    code, out, err = invoke(
        "submit",
        "--kind",
        "access",
        "--identity",
        f"customer_number={data.subject.customer_number}",
        "--recipient-key",
        str(public_path),
        "--json",
    )

    assert code == 0, err
    package = json.loads(out)["package"]
    manifest, records = read_package(
        Path(package["location"]), load_private_key(tmp_path / "subject.key")
    )
    assert manifest["counts"]["crm"] == {t: n for t, n in data.subject.rows.items() if n}
    rows = list(records)
    assert len(rows) == data.subject.total == manifest["records"]
    customer = next(r for r in rows if r["target"] == "customers")
    assert customer["data"]["email"] == data.subject.email
    assert footprint(url, data.subject) == before  # access changes nothing


def test_cli_rectification_on_sqlite(crm: tuple[str, DemoData]) -> None:
    url, data = crm
    code, _, err = invoke(
        "submit",
        "--kind",
        "rectification",
        "--identity",
        f"email={data.subject.email}",
        "--set",
        "customers.full_name=Demonstra Q. Subjectworth",
    )
    assert code == 0, err
    customers = TABLE["customers"]
    engine = make_engine(url)
    with engine.connect() as conn:
        name = conn.scalar(
            select(customers.c.full_name).where(customers.c.id == data.subject.customer_id)
        )
        other = conn.scalar(
            select(customers.c.full_name).where(customers.c.id == data.second.customer_id)
        )
    engine.dispose()
    assert name == "Demonstra Q. Subjectworth" and other == "Secunda Placeholder"


@pytest.mark.slow
def test_crash_after_commit_on_sqlite_resumes_without_repeating(
    crm: tuple[str, DemoData], prefect_api_url: str
) -> None:
    url, data = crm
    submit_args = [
        "request",
        "submit",
        "--kind",
        "erasure",
        "--identity",
        f"email={data.subject.email}",
    ]
    env = subprocess_env(
        PREFECT_API_URL=prefect_api_url,
        LIFECYCLE_TEST_HOOKS="1",
        LIFECYCLE_TEST_CRASH_AT="executed:crm",
    )
    crashed = _lifecycle(*submit_args, env=env)
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    [record] = request_context().register.list()
    assert footprint(url, data.subject)["customers"] == 0  # committed before the crash
    assert "erasure.batch" not in kinds(record.id)

    resumed = _lifecycle(
        "request",
        "submit",
        "--resume",
        record.id,
        "--json",
        env=subprocess_env(PREFECT_API_URL=prefect_api_url),
    )

    assert resumed.returncode == 0, resumed.stderr[-2000:]
    events = request_context().ledger.events(request_id=record.id, kinds=["erasure.batch"])
    affected = sum(e.counts["affected"] for e in events)
    assert affected == data.subject.total  # audited once, with the first run's counts
    assert kinds(record.id).count("request.completed") == 1


def _lifecycle(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real ``lifecycle`` command (real connectors) in a process of its own, forked from
    one that imported the CLI once (``tests.forked_cli``)."""
    return forked_cli.run("cli.main", args, env=env, timeout=180)


@pytest.mark.service
def test_erasure_on_postgresql(
    pg_url: str,
    prefect_server: None,
    isolated_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
    local_s3: LocalS3,
) -> None:
    data = seed_crm(pg_url, customers=CUSTOMERS)
    config = isolated_settings.parent / "config"
    shutil.copytree(PROJECT_ROOT / "config" / "demo", config)
    inventory = config / "inventory.yaml"
    inventory.write_text(
        inventory.read_text().replace('"sqlite:///${LIFECYCLE_DATA_DIR}/crm.db"', f'"{pg_url}"')
    )
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(config))
    get_settings.cache_clear()
    second_before = footprint(pg_url, data.second)
    rid = submit(
        request_context(),
        kind="erasure",
        identity={"email": data.subject.email.upper()},
        requested_by="intake-desk",
    ).id

    outcome = subject_request(request_id=rid)

    assert outcome.status == "completed"
    after = footprint(pg_url, data.subject)
    assert after["customers"] == after["orders"] == after["named_invoices"] == 0
    assert after["all_invoices"] == data.counts["invoices"]
    assert footprint(pg_url, data.second) == second_before
    [crm_outcome] = [s for s in outcome.stores if s.store == "crm"]
    assert crm_outcome.found == crm_outcome.affected == data.subject.total
