"""The operator's path, from a signed help-desk webhook to an approval in the Prefect UI.

``lifecycle server`` starts a Prefect server (basic auth, 127.0.0.1), the process work
pool, the deployments of ``prefect.yaml``, a worker and the intake service, in a throwaway
state folder on free ports, with the shipped demo configuration: the served demo's policy
(``config/demo/policy.served.yaml``, merged by ``ops.demo_setup``) makes erasures wait for
an approver and accepts unverified decisions typed into the UI. The demo's S3 is a local
HTTPS S3 with its own CA run by this test (``LocalS3(tls_dir=...)``), so its objects
survive the stop and start of the served stack (the stack's own local S3 would start
empty again).

The first test: an erasure of the demo subject arrives through the signed webhook; the
worker runs it until it suspends for approval; the request register lists it as open;
``lifecycle server stop`` and ``start`` leave the suspended run in place; in the browser
the operator logs in, finds the run by its name (the request id), resumes it and approves
as the policy's approver; the worker completes it; the ledger has one completion and one
decision; the subject's rows and objects are gone; the register no longer lists the
request. A forged signature is refused and registers nothing. After a cancelled run and
a run scheduled far ahead, the identity is in no Prefect table, no file of the served
Prefect home (the SQLite WAL included) and no log. A second test runs the retention-sweep
deployment through the worker, as its schedule would, and checks its progress artifact
reached 100%.

Screenshots go to ``test-output/e2e/``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import PROJECT_ROOT
from demo.s3_server import LocalS3
from demo.seed_s3 import TICKETS_BUCKET, seed_s3
from demo.seed_sql import DemoData, seed_crm
from engine.request_summary import artifact_key
from ops.demo_setup import DEMO_CONFIG_DIR
from ops.intake.signing import read_secret_file, secret_file, signed_headers
from tests import forked_cli
from tests.conftest import TEST_MASTER_KEY

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SHOTS = PROJECT_ROOT / "test-output" / "e2e"
CUSTOMERS = 200
REQUESTER = "service-desk"
REGISTER_KEY = "request-register"
API_ATTEMPTS = 6
POLL_S = 0.5
"""Between two looks at a flow run's state (one local API call each): a run's next state
is never awaited by more than this."""


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
    intake_url: str
    auth: str
    s3: LocalS3
    demo: DemoData

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the Prefect API; a 503 is retried, as Prefect's own client does (the SQLite
        server answers 503 while its database is locked by another writer)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}/api{path}", data=data, method=method)
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(self.auth.encode()).decode()
        )
        request.add_header("Content-Type", "application/json")
        for attempt in range(1, API_ATTEMPTS + 1):
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    raw = answer.read()
                break
            except urllib.error.HTTPError as e:
                e.close()
                if e.code != 503 or attempt == API_ATTEMPTS:
                    raise
                time.sleep(attempt)
        return json.loads(raw) if raw else None

    @property
    def config_dir(self) -> Path:
        """The served demo's configuration, written by ``lifecycle server start``."""
        return self.serve_dir / "config"

    @property
    def cli_env(self) -> dict[str, str]:
        """The environment of a ``lifecycle`` command against this instance's data."""
        return self.env | {"LIFECYCLE_CONFIG_DIR": str(self.config_dir)}


def _lifecycle(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """``python -m cli.main ARGS``, run in a child forked from a process that imported the
    CLI once (``tests.forked_cli``): the same run, without seconds of imports each time."""
    done = forked_cli.run("cli.main", args, env=env, cwd=PROJECT_ROOT, timeout=timeout)
    assert done.returncode == 0, f"lifecycle {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("e2e")
    data_dir = root / "data"
    data_dir.mkdir()
    port, intake_port = _free_port(), _free_port()
    # HTTPS with its own CA, as the served stack's local S3; the flows trust it through
    # AWS_CA_BUNDLE. Set as LIFECYCLE_S3_ENDPOINT, the stack starts no S3 of its own.
    with LocalS3(tls_dir=root / "s3-tls") as s3_server:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LIFECYCLE_"))
        } | {
            # The shipped demo configuration: `lifecycle server start` serves it with the
            # served policy merged in (erasures wait for an approver), in serve/config.
            "LIFECYCLE_CONFIG_DIR": str(DEMO_CONFIG_DIR),
            "LIFECYCLE_DATA_DIR": str(data_dir),
            "LIFECYCLE_MASTER_KEY": TEST_MASTER_KEY,
            "LIFECYCLE_SERVE_DIR": str(root / "serve"),
            "LIFECYCLE_SERVE_PORT": str(port),
            "LIFECYCLE_INTAKE_PORT": str(intake_port),
            # The stack's own stub provider (store newsletter), reading the CRM seeded below.
            "LIFECYCLE_SERVE_PROVIDER_PORT": str(_free_port()),
            **s3_server.env(),
        }
        demo = seed_crm(f"sqlite:///{data_dir / 'crm.db'}", customers=CUSTOMERS)
        s3 = s3_server.client()
        ids = list(range(demo.subject.customer_id - 5, demo.subject.customer_id + 5))
        seed_s3(s3, customer_ids=ids, subject_customer_id=demo.subject.customer_id)
        s3.close()
        try:
            _lifecycle(env, "server", "start")
            auth = (root / "serve" / "credentials").read_text().strip()
            yield Served(
                env,
                root / "serve",
                data_dir,
                f"http://127.0.0.1:{port}",
                f"http://127.0.0.1:{intake_port}",
                auth,
                s3_server,
                demo,
            )
        finally:
            forked_cli.run("cli.main", ["server", "stop"], env=env, cwd=PROJECT_ROOT, timeout=120)


# -- helpers ----------------------------------------------------------------------------


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
    s3 = served.s3.client()
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
        time.sleep(POLL_S)


def _post_webhook(served: Served, payload: dict[str, Any], secret: bytes) -> tuple[int, Any]:
    """POST ``payload`` to the intake webhook signed with ``secret``; status and JSON."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **signed_headers(secret, body)}
    request = urllib.request.Request(
        f"{served.intake_url}/webhook/requests", data=body, headers=headers, method="POST"
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read() or b"null")


def _events(served: Served, request_id: str | None = None) -> list[dict[str, Any]]:
    """The ledger's events (of one request), read with ``lifecycle audit show --json``."""
    args = ["audit", "show", "--json", "--limit", "10000"]
    if request_id is not None:
        args += ["--request", request_id]
    rows: list[dict[str, Any]] = json.loads(_lifecycle(served.cli_env, *args))
    return rows


def _kinds(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind]


def _register_rows(served: Served) -> list[dict[str, Any]]:
    """Run the request-register deployment through the worker; its table's rows."""
    deployment = served.api("GET", "/deployments/name/request-register/request-register")
    run = served.api("POST", f"/deployments/{deployment['id']}/create_flow_run", {})
    _wait_for(served, run["id"], {"COMPLETED"})
    artifacts = served.api(
        "POST",
        "/artifacts/filter",
        {"artifacts": {"flow_run_id": {"any_": [run["id"]]}, "key": {"any_": [REGISTER_KEY]}}},
    )
    assert len(artifacts) == 1, [a["key"] for a in artifacts]
    data = artifacts[0]["data"]
    rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else data
    return rows


def _triggered_register_rows(served: Served, request_id: str) -> list[dict[str, Any]]:
    """The rows of the register that the deployment's trigger published on its own after the
    request's run suspended (nobody starts that run here): the first that lists it."""
    deployment = served.api("GET", "/deployments/name/request-register/request-register")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = served.api(
            "POST",
            "/flow_runs/filter",
            {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}},
        )
        done = [r["id"] for r in runs if r["state"]["type"] == "COMPLETED"]
        artifacts = (
            served.api(
                "POST",
                "/artifacts/filter",
                {"artifacts": {"flow_run_id": {"any_": done}, "key": {"any_": [REGISTER_KEY]}}},
            )
            if done
            else []
        )
        for artifact in artifacts:
            data = artifact["data"]
            rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else data
            if any(r["request"] == request_id for r in rows):
                return rows
        time.sleep(POLL_S)
    raise AssertionError("no triggered request-register run listed the waiting request")


def _subject_request_run(served: Served, request_id: str, scheduled: datetime) -> dict[str, Any]:
    """A flow run of subject-request for ``request_id`` created through the API, scheduled."""
    deployment = served.api("GET", "/deployments/name/subject-request/subject-request")
    run: dict[str, Any] = served.api(
        "POST",
        f"/deployments/{deployment['id']}/create_flow_run",
        {
            "name": request_id,
            "parameters": {"request_id": request_id},
            "idempotency_key": f"e2e-{request_id}",  # a retried create makes no second run
            "state": {
                "type": "SCHEDULED",
                "name": "Scheduled",
                "state_details": {"scheduled_time": scheduled.isoformat()},
            },
        },
    )
    return run


def _approver(served: Served) -> str:
    """The served policy's (first) approver: whom the Resume form must name."""
    policy = yaml.safe_load((served.config_dir / "policy.yaml").read_text())
    approval = policy["requests"]["approval"]
    assert approval["auto_approve"] is False and "erasure" in approval["required_for"]
    assert approval["unverified_ui"] is True
    approvers: list[str] = approval["approvers"]
    return approvers[0]


# -- tests ------------------------------------------------------------------------------


def test_operator_approves_a_webhook_erasure_in_the_browser(served: Served) -> None:
    identity = served.demo.subject.email.lower()
    assert identity.endswith("@example.com")
    approver = _approver(served)
    assert approver != REQUESTER
    before = _subject_rows(served)
    assert before["customers"] == 1 and _subject_objects(served) > 0
    secret = read_secret_file(secret_file(served.data_dir))
    assert secret, "lifecycle server start generates the webhook secret in the data folder"

    request_id, run_id = _webhook_request_suspends(served, identity, secret)
    assert _subject_rows(served) == before  # nothing done before the approval
    # The trigger on Suspended republished the register without anyone asking.
    waiting = [
        r for r in _triggered_register_rows(served, request_id) if r["request"] == request_id
    ]
    assert [r["status"] for r in waiting] == ["awaiting_approval"], waiting

    _restart_keeps_it_suspended(served, run_id)
    _forged_signature_is_refused(served, identity, secret)
    _approve_in_the_browser(served, request_id, run_id, approver, identity)

    # The worker carried it out: one completion, one decision, the subject's data gone.
    events = _events(served, request_id)
    assert len(_kinds(events, "request.completed")) == 1, [e["kind"] for e in events]
    assert len(_kinds(events, "approval.decided")) == 1, [e["kind"] for e in events]
    assert _subject_rows(served) == dict.fromkeys(before, 0)
    assert _subject_objects(served) == 0
    assert all(r["request"] != request_id for r in _register_rows(served))

    _leave_a_cancelled_and_a_never_started_run(served)
    _assert_identity_nowhere(served, identity)


def _erasure(identity: str) -> dict[str, Any]:
    return {"kind": "erasure", "identity": {"email": identity}, "requested_by": REQUESTER}


def _webhook_request_suspends(served: Served, identity: str, secret: bytes) -> tuple[str, str]:
    """A help desk's signed delivery registers the request and starts its run, which the
    worker runs until it suspends for a decision; the request id and the run id."""
    status, answer = _post_webhook(served, _erasure(identity), secret)
    assert status == 201, answer
    request_id, run_id = answer["request_id"], answer["flow_run_id"]
    assert re.fullmatch(r"req_[0-9a-f]{16}", request_id) and run_id
    assert identity not in json.dumps(answer).lower()
    run = served.api("GET", f"/flow_runs/{run_id}")
    assert run["name"] == request_id and run["parameters"] == {"request_id": request_id}
    suspended = _wait_for(served, run_id, {"PAUSED"})
    assert suspended["state"]["name"] == "Suspended", suspended["state"]
    return request_id, run_id


def _restart_keeps_it_suspended(served: Served, run_id: str) -> None:
    """The stack goes down and comes back: the suspended run is still there, waiting."""
    _lifecycle(served.env, "server", "stop")
    _lifecycle(served.env, "server", "start")
    survived = served.api("GET", f"/flow_runs/{run_id}")
    assert survived["state"]["type"] == "PAUSED", survived["state"]
    assert survived["state"]["name"] == "Suspended"


def _forged_signature_is_refused(served: Served, identity: str, secret: bytes) -> None:
    """A delivery signed with another secret: 401, and nothing registered."""
    received = len(_kinds(_events(served), "request.received"))
    status, refusal = _post_webhook(served, _erasure(identity), secret + b"-forged")
    assert status == 401, refusal
    assert identity not in json.dumps(refusal).lower()
    assert len(_kinds(_events(served), "request.received")) == received


def _approve_in_the_browser(
    served: Served, request_id: str, run_id: str, approver: str, identity: str
) -> None:
    """Log in, find the run by its name, resume it approving; the worker completes it."""
    from playwright.sync_api import sync_playwright

    from tests.e2e import ui

    summary_key = artifact_key(request_id, "summary")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = ui.launch(p)
        page = ui.new_page(browser)
        try:
            ui.login(page, served.base_url, served.auth)
            found = ui.find_flow_run(
                page, served.base_url, request_id, screenshot_path=SHOTS / "1-runs-search.png"
            )
            assert found == run_id
            ui.approve_paused_run(
                page,
                served.base_url,
                run_id,
                reviewer=approver,
                note="plan checked against the ticket",
                screenshot_path=SHOTS / "2-approval.png",
            )
            ui.wait_for_state(page, served.base_url, run_id, "COMPLETED", timeout_s=300)
            keys = ui.open_artifacts(page, served.base_url, run_id)
            summary = ui.open_artifact(
                page, re.compile(rf"^{summary_key}$"), screenshot_path=SHOTS / "3-artifact.png"
            )
            ui.open_artifacts(page, served.base_url, run_id)
            register = ui.open_artifact(
                page, re.compile(rf"^{REGISTER_KEY}$"), screenshot_path=SHOTS / "4-register.png"
            )
        except Exception:
            ui.screenshot(page, SHOTS / "failure.png")
            raise
        finally:
            browser.close()
    assert {summary_key, REGISTER_KEY} <= set(keys), keys
    assert "Status: completed" in summary and identity not in summary.lower()
    # The register the run published on completing: no longer open (the page names the run,
    # so the table's rows are read through the API), and no identity anywhere on it.
    assert "0 open requests" in register and identity not in register.lower()
    published = served.api(
        "POST",
        "/artifacts/filter",
        {"artifacts": {"flow_run_id": {"any_": [run_id]}, "key": {"any_": [REGISTER_KEY]}}},
    )
    assert len(published) == 1
    assert request_id not in json.dumps(published[0]["data"])
    for shot in ("1-runs-search.png", "2-approval.png", "3-artifact.png", "4-register.png"):
        assert (SHOTS / shot).stat().st_size > 10_000


def _leave_a_cancelled_and_a_never_started_run(served: Served) -> None:
    """A subject-request run cancelled before it started, and one scheduled far ahead."""
    now = datetime.now(UTC)
    tomorrow, years = now + timedelta(days=1), now + timedelta(days=3650)
    cancelled = _subject_request_run(served, f"req_{secrets.token_hex(8)}", tomorrow)
    served.api(
        "POST",
        f"/flow_runs/{cancelled['id']}/set_state",
        {"state": {"type": "CANCELLED", "name": "Cancelled"}, "force": True},
    )
    assert served.api("GET", f"/flow_runs/{cancelled['id']}")["state"]["type"] == "CANCELLED"
    later = _subject_request_run(served, f"req_{secrets.token_hex(8)}", years)
    assert served.api("GET", f"/flow_runs/{later['id']}")["state"]["type"] == "SCHEDULED"


def _assert_identity_nowhere(served: Served, identity: str) -> None:
    """Every Prefect table dumped through SQL, every file of the served Prefect home (the
    SQLite WAL included), the ledger's files and the logs: no identity."""
    needles = {identity, identity.split("@", maxsplit=1)[0]}
    home = served.serve_dir / "home"
    with sqlite3.connect(home / "prefect.db") as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert "flow_run" in tables and "artifact" in tables
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                text = " ".join(str(v) for v in row).lower()
                hits = [n for n in needles if n in text]
                assert not hits, f"identity found in Prefect table {table}"
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "prefect.db" for p in files)
    files += [*served.data_dir.glob("audit.db*"), *served.serve_dir.glob("*.log*")]
    assert any(p.suffix == ".log" for p in files)
    for path in files:
        raw = path.read_bytes().lower()
        assert not any(n.encode() in raw for n in needles), f"identity found in {path}"


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
