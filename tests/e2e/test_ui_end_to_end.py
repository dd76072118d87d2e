"""The operator's path through the Prefect UI, in headless Chromium, against ``lifecycle server``.

The repository's own command starts a Prefect server (basic auth, 127.0.0.1), the process
work pool, the deployments of ``prefect.yaml``, a worker and the local S3 server, in a
throwaway state folder on free ports. Then, in the browser: log in, open the
subject-request deployment, fill its form with the demo identity, start the run, approve
it when it pauses (as the policy's approver, not the requester), and read its artifacts.
Afterwards the demo subject's data must be gone from the demo stores, and the identity
must appear nowhere in Prefect's tables, the ledger, the logs or the artifacts. A second
test runs the retention-sweep deployment through the worker, as its schedule would, and
checks its progress artifact reached 100%.

Screenshots of the form, the approval and the artifact go to ``test-output/e2e/``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from config.settings import PROJECT_ROOT
from demo.s3_server import LocalS3
from demo.seed_s3 import TICKETS_BUCKET, seed_s3
from demo.seed_sql import DemoData, seed_crm
from tests.conftest import TEST_MASTER_KEY

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SHOTS = PROJECT_ROOT / "test-output" / "e2e"
CUSTOMERS = 200
APPROVER = "privacy-officer"
REQUESTER = "service-desk"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """A running ``lifecycle server`` instance and the demo data behind it."""

    env: dict[str, str]
    serve_dir: Path
    data_dir: Path
    base_url: str
    auth: str
    s3_endpoint: str
    demo: DemoData

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}/api{path}", data=data, method=method)
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(self.auth.encode()).decode()
        )
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else None


def _lifecycle(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"lifecycle {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _local_s3_server: LocalS3) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("e2e")
    config = root / "config"
    shutil.copytree(PROJECT_ROOT / "config" / "demo", config)
    policy = yaml.safe_load((config / "policy.yaml").read_text())
    policy["requests"]["approval"]["auto_approve"] = False  # the run must wait for a person
    # The demo's approvers have no keys: the form's typed reviewer, recorded as unverified.
    policy["requests"]["approval"]["unverified_ui"] = True
    (config / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    data_dir = root / "data"
    data_dir.mkdir()
    port = _free_port()
    s3_server = _local_s3_server
    s3_server.reset()  # the flows reach it over HTTP, as they would a real endpoint
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LIFECYCLE_"))} | {
        "LIFECYCLE_CONFIG_DIR": str(config),
        "LIFECYCLE_DATA_DIR": str(data_dir),
        "LIFECYCLE_MASTER_KEY": TEST_MASTER_KEY,
        "LIFECYCLE_SERVE_DIR": str(root / "serve"),
        "LIFECYCLE_SERVE_PORT": str(port),
        **s3_server.env(),
    }
    demo = seed_crm(f"sqlite:///{data_dir / 'crm.db'}", customers=CUSTOMERS)
    try:
        s3 = s3_server.client()
        ids = list(range(demo.subject.customer_id - 5, demo.subject.customer_id + 5))
        seed_s3(s3, customer_ids=ids, subject_customer_id=demo.subject.customer_id)
        s3.close()
        endpoint = s3_server.endpoint_url
        _lifecycle(env, "server", "start")
        auth = (root / "serve" / "credentials").read_text().strip()
        yield Served(
            env, root / "serve", data_dir, f"http://127.0.0.1:{port}", auth, endpoint, demo
        )
    finally:
        subprocess.run(
            [sys.executable, "-m", "cli.main", "server", "stop"],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            timeout=120,
            check=False,
        )


def _subject_rows(served: Served) -> dict[str, int]:
    cid = served.demo.subject.customer_id
    with sqlite3.connect(served.data_dir / "crm.db") as conn:
        counts = {
            table: conn.execute(
                f"SELECT count(*) FROM {table} WHERE customer_id = ?",
                (cid,),
            ).fetchone()[0]
            for table in ("orders", "support_tickets", "login_events")
        }
        counts["customers"] = conn.execute(
            "SELECT count(*) FROM customers WHERE id = ?", (cid,)
        ).fetchone()[0]
    return counts


def _subject_objects(served: Served) -> int:
    s3 = boto3.client(
        "s3",
        endpoint_url=served.s3_endpoint,
        region_name="eu-central-1",
        aws_access_key_id=served.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=served.env["AWS_SECRET_ACCESS_KEY"],
    )
    prefix = f"tickets/{served.demo.subject.customer_id}/"
    listed = s3.list_object_versions(Bucket=TICKETS_BUCKET, Prefix=prefix)
    s3.close()
    return len(listed.get("Versions", [])) + len(listed.get("DeleteMarkers", []))


def _wait_for(
    served: Served, run_id: str, states: set[str], timeout: float = 240
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = served.api("GET", f"/flow_runs/{run_id}")
        state = run["state"]["type"]
        if state in states:
            return run
        assert state not in {"FAILED", "CRASHED", "CANCELLED"}, run["state"]
        assert time.monotonic() < deadline, f"run {run_id} still {state}"
        time.sleep(1)


def test_operator_runs_and_approves_an_erasure_in_the_browser(served: Served) -> None:
    from playwright.sync_api import sync_playwright

    from tests.e2e import ui

    identity = served.demo.subject.email.lower()
    before = _subject_rows(served)
    assert before["customers"] == 1 and _subject_objects(served) > 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = ui.launch(p)
        page = ui.new_page(browser)
        try:
            ui.login(page, served.base_url, served.auth)
            ui.open_deployment(page, served.base_url, "subject-request")
            run_id = ui.start_custom_run(
                page,
                {"kind": "erasure", "email": identity, "requested_by": REQUESTER},
                screenshot_path=SHOTS / "1-form.png",
            )
            ui.wait_for_state(page, served.base_url, run_id, "PAUSED", timeout_s=240)
            ui.approve_paused_run(
                page,
                served.base_url,
                run_id,
                reviewer=APPROVER,
                note="plan checked against the ticket",
                screenshot_path=SHOTS / "2-approval.png",
            )
            ui.wait_for_state(page, served.base_url, run_id, "COMPLETED", timeout_s=240)
            keys = ui.open_artifacts(page, served.base_url, run_id)
            text = ui.open_artifact(
                page, re.compile(r"-summary$"), screenshot_path=SHOTS / "3-artifact.png"
            )
        except Exception:
            ui.screenshot(page, SHOTS / "failure.png")
            raise
        finally:
            browser.close()
    assert any(k.endswith("-summary") for k in keys)
    assert "Status: completed" in text and identity not in text.lower()
    assert _subject_rows(served) == dict.fromkeys(before, 0)
    assert _subject_objects(served) == 0
    for shot in ("1-form.png", "2-approval.png", "3-artifact.png"):
        assert (SHOTS / shot).stat().st_size > 10_000

    _assert_identity_nowhere(served, identity)


def _assert_identity_nowhere(served: Served, identity: str) -> None:
    """Every Prefect table dumped through SQL, the ledger's files, the logs: no identity."""
    needles = {identity, identity.split("@", maxsplit=1)[0]}
    prefect_db = served.serve_dir / "home" / "prefect.db"
    with sqlite3.connect(prefect_db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert "flow_run" in tables and "artifact" in tables
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                text = " ".join(str(v) for v in row).lower()
                hits = [n for n in needles if n in text]
                assert not hits, f"identity found in Prefect table {table}"
    for path in [*served.data_dir.glob("audit.db*"), *served.serve_dir.glob("*.log")]:
        raw = path.read_bytes().lower()
        assert not any(n.encode() in raw for n in needles), f"identity found in {path.name}"


def test_the_scheduled_sweep_runs_through_the_worker_to_100_percent(served: Served) -> None:
    deployment = served.api("GET", "/deployments/name/retention-sweep/retention-sweep")
    assert deployment["schedules"], "the sweep deployment must carry its schedule"
    run = served.api("POST", f"/deployments/{deployment['id']}/create_flow_run", {})

    finished = _wait_for(served, run["id"], {"COMPLETED"})

    artifacts = served.api(
        "POST",
        "/artifacts/filter",
        {"artifacts": {"flow_run_id": {"any_": [finished["id"]]}}, "sort": "CREATED_DESC"},
    )
    progress = [a for a in artifacts if a["type"] == "progress"]
    assert progress and float(progress[0]["data"]) == 100.0
    tables = {a["key"] for a in artifacts if a["type"] == "table"}
    assert {"retention-sweep-plan", "retention-sweep-result"} <= tables
