"""Several workers: the served stack on PostgreSQL runs 50 erasures with 3 process workers.

``lifecycle server start`` with ``LIFECYCLE_SERVE_WORKERS=3`` and
``LIFECYCLE_SERVE_DATABASE`` (the Prefect server's database on the local PostgreSQL), the
ledger and register on PostgreSQL too (``LIFECYCLE_AUDIT_URL``) and a CRM on PostgreSQL
(the demo's schema and rows; a configuration of its own whose policy approves erasures
automatically, so no run waits for a reviewer). Fifty erasures of distinct customers are
registered (``engine.intake.submit``: identities go to the register, never to Prefect),
then fifty runs of the ``subject-request`` deployment are created through the API with
the request id as their only parameter. Afterwards: every run completed, each once (one
Running and one Completed state), on one of the three workers and not all on one; every
request completed once in the register; one ``request.completed`` per request in the
ledger; ``lifecycle audit verify`` says intact. The pool's run limit
(``LIFECYCLE_SERVE_RUN_LIMIT``) is checked on the pool. The scratch databases are dropped
afterwards.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text

from config.settings import PROJECT_ROOT, get_settings
from core.engines import make_engine
from ops import procs
from ops import serve_env as se
from ops.prefect_api import request
from tests import forked_cli
from tests.conftest import _fresh_database
from tests.ops.test_server import _free_ports

pytestmark = [pytest.mark.slow, pytest.mark.service, pytest.mark.timeout(1500)]

REQUESTS = 50
WORKERS = 3
RUN_LIMIT = 6
STORE_LIMIT = 2  # task runs at once per store, over every worker
CUSTOMERS = 120
REQUESTER = "service-desk"
FINISHED = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
WAIT_S = 1200.0
"""For all fifty runs: minutes on a busy machine; only a stuck run waits this long."""


@contextmanager
def _pg_database() -> Iterator[str]:
    yield from _fresh_database("postgresql")


def _config(folder: Path, crm_url: str) -> Path:
    """The demo's CRM store only, at ``crm_url``; the demo policy for it, auto-approving."""
    demo = PROJECT_ROOT / "config" / "demo"
    inventory = yaml.safe_load((demo / "inventory.yaml").read_text())
    (crm,) = [s for s in inventory["stores"] if s["name"] == "crm"]
    crm["url"] = crm_url
    policy = yaml.safe_load((demo / "policy.yaml").read_text())
    policy["requests"]["approval"]["auto_approve"] = True
    policy["retention"] = [r for r in policy["retention"] if r["store"] == "crm"]
    policy["legal_holds"] = [h for h in policy["legal_holds"] if h["scope"]["store"] == "crm"]
    folder.mkdir()
    (folder / "inventory.yaml").write_text(yaml.safe_dump({"stores": [crm]}, sort_keys=False))
    (folder / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


def _cli(env: dict[str, str], *args: str) -> str:
    done = forked_cli.run("cli.main", list(args), env=env, cwd=PROJECT_ROOT, timeout=300)
    assert done.returncode == 0, f"lifecycle {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _register(subjects: list[int]) -> list[str]:
    """Register an erasure per customer (by customer number); the request ids."""
    from engine.intake import submit
    from engine.request_support import request_context

    ctx = request_context()
    return [
        str(
            submit(
                ctx,
                kind="erasure",
                identity={"customer_number": f"C{cid:07d}"},  # as demo.seed_sql numbers
                requested_by=REQUESTER,
            ).id
        )
        for cid in subjects
    ]


def _runs(api: str, auth: str, deployment_id: str) -> list[dict[str, Any]]:
    body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}, "limit": 200}
    status, runs = request(f"{api}/flow_runs/filter", auth, body, timeout=30)
    assert status == 200, status
    return list(runs)


def _wait_for_all(api: str, auth: str, deployment_id: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT_S
    while True:
        runs = _runs(api, auth, deployment_id)
        if len(runs) == REQUESTS and all(r["state_type"] in FINISHED for r in runs):
            return runs
        if time.monotonic() > deadline:
            states = Counter(r["state_type"] for r in runs)
            pytest.fail(f"runs not finished in {WAIT_S:.0f} s: {dict(states)}")
        time.sleep(1.0)


def _state_types(api: str, auth: str, run_id: str) -> Counter[str]:
    status, states = request(f"{api}/flow_run_states/?flow_run_id={run_id}", auth, timeout=30)
    assert status == 200, status
    return Counter(s["type"] for s in states)


def _check_the_ledger(request_ids: list[str]) -> None:
    from engine.request_support import request_context
    from state.register import RequestStatus

    ctx = request_context()
    for request_id in request_ids:
        assert ctx.register.get(request_id).status is RequestStatus.COMPLETED, request_id
    completed = Counter(e.request_id for e in ctx.ledger.events(kinds=["request.completed"]))
    assert completed == Counter({request_id: 1 for request_id in request_ids})


def _check_prefect_on_postgresql(prefect_url: str, serve_dir: Path, run_ids: set[str]) -> None:
    """The server's runs are in the PostgreSQL database; no SQLite file was made."""
    engine = make_engine(prefect_url)
    try:
        with engine.connect() as conn:
            stored = {str(r) for r in conn.execute(text("SELECT id FROM flow_run")).scalars()}
    finally:
        engine.dispose()
    assert run_ids <= stored
    assert not (serve_dir / "home" / "prefect.db").exists()


def _check_stop(env: dict[str, str], pids: list[int | None], serve_dir: Path) -> None:
    """``server stop`` ends every worker and forgets them."""
    stopped = _cli(env, "server", "stop")
    for n, pid in zip((1, 2, 3), pids, strict=True):
        assert f"{se.worker_proc(n)}: stopped" in stopped, stopped
        assert pid is not None and not procs.process_alive(pid, ())
    assert se.recorded_workers(se.ServePaths(serve_dir)) == []


def _check_store_limit(api: str, auth: str, flow_run_id: str) -> None:
    """The crm store has its tag limit, and a run's store steps carry the tag it counts."""
    status, limits = request(f"{api}/concurrency_limits/filter", auth, {})
    assert status == 200
    assert {(c["tag"], c["concurrency_limit"]) for c in limits} >= {("store:crm", STORE_LIMIT)}
    tagged = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    status, task_runs = request(f"{api}/task_runs/filter", auth, tagged)
    assert status == 200 and any("store:crm" in t["tags"] for t in task_runs)


def test_fifty_erasures_through_three_workers_on_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audit.database import dispose_engines
    from demo.seed_sql import named_subject_ids, seed_crm

    serve_dir = tmp_path / "serve"
    port, intake_port = _free_ports(2)
    with ExitStack() as stack:
        prefect_url = stack.enter_context(_pg_database())
        audit_url = stack.enter_context(_pg_database())
        crm_url = stack.enter_context(_pg_database())
        stack.callback(dispose_engines)
        seed_crm(crm_url, customers=CUSTOMERS)
        config_dir = _config(tmp_path / "config", crm_url)
        for name, value in (
            ("LIFECYCLE_AUDIT_URL", audit_url),
            ("LIFECYCLE_CONFIG_DIR", config_dir),
        ):
            monkeypatch.setenv(name, str(value))
        get_settings.cache_clear()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            LIFECYCLE_SERVE_DIR=str(serve_dir),
            LIFECYCLE_SERVE_PORT=str(port),
            LIFECYCLE_INTAKE_PORT=str(intake_port),
            LIFECYCLE_SERVE_WORKERS=str(WORKERS),
            LIFECYCLE_SERVE_RUN_LIMIT=str(RUN_LIMIT),
            LIFECYCLE_SERVE_STORE_LIMIT=str(STORE_LIMIT),
            LIFECYCLE_SERVE_DATABASE=prefect_url,
            # Workers look for runs every second (Prefect's default: 10 s).
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_WORKER_PREFETCH_SECONDS="5",
        )
        stack.callback(
            forked_cli.run, "cli.main", ["server", "stop"], env=env, cwd=PROJECT_ROOT, timeout=240
        )
        started = _cli(env, "server", "start")
        names = [se.worker_name(n) for n in range(1, WORKERS + 1)]
        pids = [procs.read_pid(serve_dir / f"{se.worker_proc(n)}.pid") for n in (1, 2, 3)]
        assert all(pids) and len(set(pids)) == WORKERS, started
        auth = (serve_dir / "credentials").read_text().strip()
        api = se.api_url(port)

        status, pool = request(f"{api}/work_pools/{se.POOL}", auth)
        assert (status, pool["concurrency_limit"]) == (200, RUN_LIMIT)
        ours = {"deployments": {"name": {"any_": ["subject-request"]}}}
        status, found = request(f"{api}/deployments/filter", auth, ours)
        assert status == 200 and len(found) == 1, status
        deployment = found[0]

        taken = set(named_subject_ids(CUSTOMERS))
        subjects = [cid for cid in range(2, CUSTOMERS) if cid not in taken][:REQUESTS]
        request_ids = _register(subjects)
        for request_id in request_ids:  # the request id only: no identity enters Prefect
            body = {"parameters": {"request_id": request_id}}
            url = f"{api}/deployments/{deployment['id']}/create_flow_run"
            assert request(url, auth, body, timeout=30)[0] == 201

        runs = _wait_for_all(api, auth, deployment["id"])
        assert Counter(r["state_type"] for r in runs) == {"COMPLETED": REQUESTS}
        assert sorted(r["parameters"]["request_id"] for r in runs) == sorted(request_ids)
        for run in runs:  # each ran once: one Running and one Completed state
            states = _state_types(api, auth, run["id"])
            assert (states["RUNNING"], states["COMPLETED"]) == (1, 1), (run["id"], states)
        by_worker = Counter(r["labels"].get("prefect.worker.name") for r in runs)
        assert set(by_worker) <= set(names), by_worker
        assert len(by_worker) > 1, by_worker

        _check_store_limit(api, auth, runs[0]["id"])
        _check_the_ledger(request_ids)
        _check_prefect_on_postgresql(prefect_url, serve_dir, {r["id"] for r in runs})
        verified = _cli(env, "audit", "verify")
        assert "intact" in verified, verified

        _check_stop(env, pids, serve_dir)
