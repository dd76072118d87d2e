"""No raw personal data reaches Prefect, the ledger, the output or the logs.

Two ways a request starts, both checked against everything Prefect stores:
1. ``lifecycle request submit`` in a subprocess, with a fresh PREFECT_HOME (its temporary
   server's SQLite database, WAL included) and data folder, on the real SQL connector:
   the raw bytes of every file are searched for the identity in any letter case.
2. A deployment run, whose form takes a request id only: every table of the test
   server's database is dumped through SQL and searched; an identity typed into the
   request id field by mistake is refused and removed from the run's parameters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Select, inspect, literal_column, select, table
from sqlalchemy.engine import make_url

from config.settings import PROJECT_ROOT
from core.engines import make_engine
from demo.provider import LocalProvider, provider_store, subscriber_records
from demo.s3_server import LocalS3
from flows.subject_request import subject_request
from tests.flows.support import REQUESTER, SUBJECT_EMAIL, store_rows

Configure = Callable[..., Path]
DEMO_EMAIL = "Demo.Subject@example.com"
DEMO_NAME = "Demonstra Subjectworth"


def _files_containing(root: Path, needles: list[bytes]) -> list[str]:
    """Files under ``root`` whose raw bytes contain a needle, ignoring letter case."""
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes().lower()
        hits += [f"{path.name}: {n.decode()}" for n in needles if n.lower() in data]
    return hits


@pytest.fixture
def demo_provider() -> Iterator[LocalProvider]:
    """The demo inventory's provider (store newsletter) as a stub; the test adds its records."""
    from config.loader import load_config

    store = provider_store(load_config(PROJECT_ROOT / "config" / "demo"))
    assert store is not None
    with LocalProvider(store, []) as provider:
        yield provider


@pytest.mark.slow
def test_cli_submit_leaves_no_identity_in_prefect_ledger_or_output(
    tmp_path: Path, local_s3: LocalS3, demo_provider: LocalProvider
) -> None:
    from demo.seed_sql import seed_crm

    data_dir, prefect_home = tmp_path / "data", tmp_path / "prefect-home"
    seed_crm(f"sqlite:///{data_dir / 'crm.db'}", customers=50)
    records = subscriber_records(f"sqlite:///{data_dir / 'crm.db'}")
    demo_provider.stub.records.update({r.ref: r for r in records})
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "LIFECYCLE_TEST_")) and k != "LIFECYCLE_CONFIG_DIR"
    }
    env |= (
        local_s3.env()
        | demo_provider.env()
        | {  # the demo's S3 store and provider
            "LIFECYCLE_DATA_DIR": str(data_dir),
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
    )

    done = subprocess.run(
        [
            *(sys.executable, "-m", "cli.main", "request", "submit", "--kind", "erasure"),
            *("--identity", f"email={DEMO_EMAIL.lower()}", "--json"),
        ],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["status"] == "completed"
    assert [(r.records, r.state) for r in demo_provider.taken()] == [(2, "confirmed")]
    needles = [DEMO_EMAIL.encode(), DEMO_NAME.encode()]
    output = (done.stdout + done.stderr).lower()
    assert all(n.decode().lower() not in output for n in needles)
    prefect_db = prefect_home / "prefect.db"
    assert prefect_db.exists() and b"subject-request" in prefect_db.read_bytes()
    assert _files_containing(prefect_home, needles) == []
    audit_files = [p for p in data_dir.iterdir() if p.name.startswith("audit.db")]
    assert audit_files
    for path in audit_files:
        assert DEMO_EMAIL.lower().encode() not in path.read_bytes().lower(), path.name
    assert "Traceback" not in done.stderr and "database is locked" not in done.stderr


def _prefect_rows(tables: tuple[str, ...] = ()) -> list[str]:
    """Every row of every table (or of ``tables``) of the test server's database, as
    lowercase text."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = make_url(str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value()))
    engine = make_engine(f"sqlite:///{url.database}")
    try:
        rows: list[str] = []
        with engine.connect() as conn:
            for name in tables or inspect(engine).get_table_names():
                everything: Select[Any] = select(literal_column("*")).select_from(table(name))
                rows += [
                    f"{name}: {tuple(row)!r}".lower() for row in conn.execute(everything).all()
                ]
        return rows
    finally:
        engine.dispose()


def _flush_prefect(flow_run_id: UUID, state: str = "completed") -> None:
    """Wait until logs and events of the run are in the server's database (batched writes)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)
    deadline = time.monotonic() + 300  # a bound for a busy machine, not a tolerance
    while time.monotonic() < deadline:
        rows = _prefect_rows(("events",))  # the session's whole database only at the end
        if any(str(flow_run_id) in r and state in r for r in rows):
            return
        time.sleep(0.5)
    found = [r[:300] for r in _prefect_rows() if str(flow_run_id) in r and r.startswith("event")]
    raise AssertionError(f"the run's events never reached the database: {found}")


def _assert_nowhere_in_prefect(*needles: str) -> None:
    rows = _prefect_rows()
    assert rows
    leaks = [r[:200] for r in rows if any(n.lower() in r for n in needles)]
    assert leaks == []


def test_a_deployment_run_takes_the_request_id_alone_and_is_named_after_it(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.utilities.callables import parameter_schema

    from engine.intake import submit
    from engine.request_support import request_context

    configure(auto_approve=True)
    # The form offers one field: nothing in it can hold an identity but a typing mistake.
    assert set(parameter_schema(subject_request.fn).properties) == {"request_id"}
    rid = submit(
        request_context(), kind="erasure", identity={"email": SUBJECT_EMAIL}, requested_by=REQUESTER
    ).id
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(subject_request, parameters={"request_id": rid})

    outcome = run_flow(subject_request, flow_run=flow_run)

    assert outcome.status == "completed"  # type: ignore[union-attr]
    assert [c["id"] for c in store_rows(isolated_settings, "crm")["customers"]] == [2]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run.id).name == rid  # the Runs search finds it
    _flush_prefect(flow_run.id)
    _assert_nowhere_in_prefect(SUBJECT_EMAIL, "robin quill", "quill lane")
    ledger = json.dumps([vars(e) for e in _events(rid)], default=str).lower()
    assert SUBJECT_EMAIL.lower() not in ledger and "quill" not in ledger


def _events(request_id: str) -> list[object]:
    from tests.flows.support import events

    return list(events(request_id))


def test_an_identity_typed_as_the_request_id_is_refused_and_removed_from_prefect(
    prefect_server: None, configure: Configure
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    from core.errors import TerminalError

    configure(auto_approve=True)
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(subject_request, parameters={"request_id": SUBJECT_EMAIL})

    with pytest.raises(TerminalError, match="give the id of a registered request") as refused:
        run_flow(subject_request, flow_run=flow_run)

    assert SUBJECT_EMAIL.lower() not in refused.value.message.lower()
    with get_client(sync_client=True) as client:
        refused_run = client.read_flow_run(flow_run.id)
    assert refused_run.parameters == {"request_id": "(removed)"}
    assert refused_run.name == "invalid-request-id"
    _flush_prefect(flow_run.id, "failed")
    _assert_nowhere_in_prefect(SUBJECT_EMAIL)
