"""One retention sweep at a time (issue "Trust under faults", item 5).

Two ``lifecycle sweep`` started moments apart used to run the same sweep and append two
``sweep.completed`` events claiming the same deletions. Now a sweep holds a lease in the
audit database; others exit (or wait, bounded) naming the holder; a crashed holder's
lease expires and the next sweep resumes its work; and a sweep is closed, and its
completion audited, once even when two processes race to close it.

Synchronisation is by barriers and events, time by an injected clock: no test sleeps.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from audit.database import audit_engine
from audit.ledger import Ledger
from config.settings import PROJECT_ROOT, get_settings
from core.engines import make_engine
from demo.crm_schema import crm_metadata
from demo.s3_server import LocalS3
from demo.seed_sql import seed_crm
from state.leases import Lease, LeaseBusy, current_holder
from state.sweeps import SWEEP_LEASE, BatchRange, SweepConflict, SweepProgress
from tests.flows.support import subprocess_env
from tests.flows.test_retention_sweep import AS_OF, CUSTOMERS, SQL_RULES, expired_keys, write_config

SWEPT = ("login_events", "support_tickets")  # the delete rules' tables
STARTS = 4


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture
def crm(
    isolated_settings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_s3: LocalS3
) -> str:
    """The demo CRM (SQLite file), seeded, with the settings pointing at its config."""
    url = f"sqlite:///{isolated_settings / 'crm.db'}"
    folder = write_config(tmp_path / "config", url, None)
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(folder))
    get_settings.cache_clear()
    seed_crm(url, customers=CUSTOMERS, today=AS_OF.date())
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_db(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The audit database: the default SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield get_settings().resolved_audit_url()
        return
    request.applymarker(pytest.mark.service)
    url: str = request.getfixturevalue("pg_url")
    monkeypatch.setenv("LIFECYCLE_AUDIT_URL", url)
    get_settings.cache_clear()
    yield url
    from audit.database import dispose_engines

    dispose_engines()  # before pg_url drops the database


def _row_counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    tables = crm_metadata().tables
    with engine.connect() as conn:
        counts = {
            t: int(conn.execute(sa.select(sa.func.count()).select_from(tables[t])).scalar_one())
            for t in SWEPT
        }
    engine.dispose()
    return counts


def _sweep_events(kind: str | None = None) -> list[Any]:
    return [
        e
        for e in Ledger.open().events(kinds=[kind] if kind else None)
        if e.kind.startswith("sweep.")
    ]


def _params(**extra: Any) -> Any:
    from flows.retention_sweep import SweepParameters

    return SweepParameters(rules=SQL_RULES, batch_size=100, as_of=AS_OF, **extra)


def _assert_each_batch_once_and_counts_match(deleted_rows: int) -> None:
    batches = _sweep_events("sweep.batch")
    ids = [(e.request_id, e.target, e.detail["batch"]) for e in batches]
    assert len(ids) == len(set(ids)), "a batch was audited twice"
    (completed,) = _sweep_events("sweep.completed")
    assert completed.counts["deleted"] == deleted_rows
    assert sum(e.counts.get("deleted", 0) for e in batches) == deleted_rows
    assert Ledger.open().verify().ok


def test_four_concurrent_starts_run_one_sweep(
    crm: str, audit_db: str, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four starts at once, each as ``lifecycle sweep`` runs it (the flow, in process, not
    waiting): one sweeps, three fail at once naming it; one ``sweep.completed``, whose
    deletions are the rows that left the tables."""
    import engine.sweep_runner
    import tasks.sweep_tasks

    before = _row_counts(crm)
    expected = expired_keys(crm, AS_OF)
    losers_done = threading.Event()
    plan = engine.sweep_runner.plan_sweep

    def plan_after_the_others_tried(*args: Any, **kwargs: Any) -> Any:
        # Whoever holds the lease plans only once the three others have been turned away,
        # so all four starts overlap however the threads are scheduled.
        assert losers_done.wait(timeout=600)
        return plan(*args, **kwargs)

    monkeypatch.setattr(tasks.sweep_tasks, "plan_sweep", plan_after_the_others_tried)
    barrier = threading.Barrier(STARTS)
    outcomes: list[Any] = []
    lock = threading.Lock()

    def start() -> None:
        from flows.retention_sweep import retention_sweep

        barrier.wait()
        try:
            outcome: Any = retention_sweep(params=_params(wait_minutes=0))
        except LeaseBusy as e:
            outcome = e
        with lock:
            outcomes.append(outcome)
            if sum(isinstance(o, LeaseBusy) for o in outcomes) == STARTS - 1:
                losers_done.set()

    threads = [threading.Thread(target=start) for _ in range(STARTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    summaries = [o for o in outcomes if isinstance(o, dict)]
    busy = [o for o in outcomes if isinstance(o, LeaseBusy)]
    assert len(summaries) == 1 and len(busy) == STARTS - 1, outcomes
    for error in busy:
        assert error.message.startswith(
            "another retention sweep is running: lease 'retention-sweep' is held by flow run "
        )
        assert f"(pid {busy[0].holder.pid} on {socket.gethostname()}) since " in error.message
    (summary,) = summaries
    after = _row_counts(crm)
    deleted_rows = sum(before[t] - after[t] for t in SWEPT)
    assert deleted_rows == sum(len(expected[t]) for t in SWEPT) > 0
    assert summary["deleted"] == deleted_rows
    assert [e.kind for e in _sweep_events("sweep.planned")] == ["sweep.planned"]
    _assert_each_batch_once_and_counts_match(deleted_rows)
    assert current_holder(audit_engine(), SWEEP_LEASE) is None  # released at the end


def test_a_crashed_holders_lease_expires_and_the_next_sweep_resumes_its_sweep(
    crm: str, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.sweep_lease import acquire_lease, sweep_lease
    from engine.sweep_runner import plan_sweep, run_range, sweep_context
    from flows.retention_sweep import retention_sweep

    before = _row_counts(crm)
    expected = expired_keys(crm, AS_OF)
    # A sweep that ran an hour ago by its own clock (an injected one): it planned, swept
    # two batches of login events and died holding the lease, which it never renewed.
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with sweep_context() as ctx:
        crashed = sweep_lease(ctx, clock=lambda: an_hour_ago)
        monkeypatch.setattr(crashed, "release", lambda: None)  # it died: nothing released
        acquire_lease(ctx, wait=timedelta(0), lease=crashed)
        run = plan_sweep(ctx, as_of=AS_OF, rules=tuple(SQL_RULES), dry_run=False)
        logins = next(t for t in ctx.targets(run) if t.id == "crm.login_events:delete")
        assert not run_range(ctx, run, logins, batch_size=20, max_batches=2).finished
    left = current_holder(audit_engine(), SWEEP_LEASE)
    assert left is not None and left.expires_at < datetime.now(UTC)

    summary = retention_sweep(params=_params(wait_minutes=0))

    assert summary["sweep_id"] == run.id and summary["status"] == "completed"
    kinds = [e.kind for e in _sweep_events()]
    assert kinds.count("sweep.lease_taken_over") == 1 and kinds.count("sweep.resumed") == 1
    (taken,) = _sweep_events("sweep.lease_taken_over")
    assert taken.detail["reason"] == "expired"
    after = _row_counts(crm)
    deleted_rows = sum(before[t] - after[t] for t in SWEPT)
    assert deleted_rows == sum(len(expected[t]) for t in SWEPT)
    _assert_each_batch_once_and_counts_match(deleted_rows)


def _hold_elsewhere(owner: str) -> Lease:
    """The sweep lease held by another machine's sweep (its process cannot be checked)."""
    lease = Lease(audit_engine(), SWEEP_LEASE, ttl=timedelta(minutes=15), owner=owner)
    lease.host = "sweeper-2.internal"
    lease.acquire()
    return lease


def test_a_flow_run_waits_no_longer_than_asked_then_fails_naming_the_holder(
    crm: str, prefect_server: None
) -> None:
    from flows.retention_sweep import retention_sweep

    _hold_elsewhere("flow run nightly (pid 4242 on sweeper-2.internal)")
    with pytest.raises(LeaseBusy, match=r"held by flow run nightly \(pid 4242 on sweeper-2"):
        retention_sweep(params=_params(wait_minutes=0))
    assert _sweep_events() == []  # nothing planned, nothing touched


def test_a_second_cli_invocation_exits_5_naming_the_holder_and_since_when(crm: str) -> None:
    holder = _hold_elsewhere("cli (pid 4242 on sweeper-2.internal)")
    since = holder.current()
    assert since is not None
    args = [sys.executable, "-m", "cli.main", "sweep", "--rule", "login-events-90d"]

    second = subprocess.run(
        args,
        check=False,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
    )

    assert second.returncode == 5, second.stderr
    message = " ".join(second.stderr.split())
    assert (
        "error: another retention sweep is running: lease 'retention-sweep' is held by cli "
        "(pid 4242 on sweeper-2.internal) since "
        f"{since.acquired_at.strftime('%Y-%m-%d %H:%M:%S')} UTC"
    ) in message
    assert "run `lifecycle sweep` again once it has finished, or with --wait" in message
    assert _sweep_events() == []

    as_json = subprocess.run(
        [*args, "--json"],
        check=False,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
    )
    assert as_json.returncode == 5
    assert yaml.safe_load(as_json.stdout)["lease"]["owner"].startswith("cli (pid 4242")


def test_two_processes_closing_the_same_sweep_audit_its_completion_once(crm: str) -> None:
    """No lease here (as if it had been lost): the close is compare-and-set in the
    completion event's transaction, so racing closers append one ``sweep.completed``."""
    from engine.sweep_runner import (
        finish_target,
        plan_sweep,
        run_range,
        summarise,
        sweep_context,
        verify_and_rewind,
    )

    with sweep_context() as ctx:
        run = plan_sweep(ctx, as_of=AS_OF, rules=tuple(SQL_RULES), dry_run=False)
        for target in ctx.targets(run):
            while not run_range(ctx, run, target, batch_size=100).finished:
                pass
            assert verify_and_rewind(ctx, run, target) == 0
            finish_target(ctx, run, target)
    closers = 2
    barrier = threading.Barrier(closers)
    summaries: list[dict[str, Any]] = []

    def close() -> None:
        with sweep_context() as ctx:
            barrier.wait()
            summaries.append(summarise(ctx, run))

    threads = [threading.Thread(target=close) for _ in range(closers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(summaries) == closers and summaries[0] == summaries[1]
    assert len(_sweep_events("sweep.completed")) == 1


def test_a_batch_is_audited_once_even_when_two_processes_try(isolated_settings: Path) -> None:
    ledger = Ledger.open()
    progress = SweepProgress(ledger.engine)
    progress.start(
        "swp_0000000000000001",
        as_of=AS_OF,
        dry_run=False,
        rules=[],
        plan=[{"target": "t", "store": "crm", "action": "delete", "expired": 3, "held": 0}],
        flow_run_id=None,
    )
    batch = BatchRange(None, (3,), 3, "d" * 64)
    seq = progress.record_intent("swp_0000000000000001", "t", batch)
    event = _batch_event()
    ledger.append_many([event], also=progress.audited("swp_0000000000000001", "t", seq, batch, 3))
    with pytest.raises(SweepConflict, match="already audited"):
        ledger.append_many(
            [event], also=progress.audited("swp_0000000000000001", "t", seq, batch, 3)
        )
    assert len(list(ledger.events(request_id="swp_0000000000000001"))) == 1
    assert progress.target("swp_0000000000000001", "t").done == 3


def _batch_event() -> Any:
    from audit.events import EventStatus, NewEvent

    return NewEvent(
        kind="sweep.batch",
        status=EventStatus.SUCCEEDED,
        request_id="swp_0000000000000001",
        target="t",
        counts={"deleted": 3},
        detail={"batch": 1},
    )


def test_the_deployment_runs_one_at_a_time() -> None:
    """prefect.yaml: ``concurrency_limit`` 1 on retention-sweep, in the shape Prefect's
    ``prefect deploy`` reads (limit and a strategy of the installed version)."""
    from prefect.cli.deploy._models import ConcurrencyLimitSpec
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    config = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    (sweep,) = [d for d in config["deployments"] if d["name"] == "retention-sweep"]
    spec = ConcurrencyLimitSpec.model_validate(sweep["concurrency_limit"])
    assert spec.limit == 1
    assert ConcurrencyLimitStrategy(spec.collision_strategy) == ConcurrencyLimitStrategy.ENQUEUE
