"""Stale plans on the real SQL connector: rows change while an erasure waits for approval.

The demo CRM on SQLite (foreign keys enforced) with the demo inventory; erasure needs a
reviewer. The reproduction: a login event referencing the subject's customer row is added
after the plan was made. Replaying the old plan would delete the customer and trip the
foreign key on every retry; instead execution re-plans, sees the plan grew, and asks for
approval again, then completes. A plan that shrank runs under the approval it had.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest
from sqlalchemy import delete, func, insert, select, update

from audit.events import EventStatus
from config.settings import PROJECT_ROOT, get_settings
from connectors.sql.connector import SqlConnector
from core.engines import make_engine
from demo.crm_schema import crm_metadata
from demo.s3_server import LocalS3
from demo.seed_sql import DemoData, seed_crm
from engine.intake import submit
from engine.request_support import request_context
from flows import approval_wait
from flows import subject_request as flow_module
from flows.subject_request import ApprovalNeeded, subject_request
from state.progress import Phase
from state.progress_tables import request_progress
from state.register import RequestStatus
from tasks.erasure_tasks import plan_store
from tasks.request_tasks import locate_store
from tests.flows.support import answering_pauses, events, kinds

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

APPROVER = "privacy-officer"
APPROVE = {"decision": "approve", "reviewer": APPROVER}
LOGINS = crm_metadata().tables["login_events"]
Action = Callable[[], None] | None


@pytest.fixture
def crm(
    isolated_settings: Path,
    prefect_server: None,
    local_s3: LocalS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, DemoData]]:
    """The demo CRM and configuration, erasure waiting for a reviewer (no auto-approval)."""
    folder = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config" / "demo", folder)
    policy = folder / "policy.yaml"
    text = policy.read_text()
    assert "auto_approve: true" in text and "approvers: [privacy-officer]" in text
    text = text.replace("auto_approve: true", "auto_approve: false\n    unverified_ui: true", 1)
    policy.write_text(text.replace("[privacy-officer]", "[privacy-officer, dpo]", 1))
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(folder))
    monkeypatch.setattr(approval_wait, "APPROVAL_POLL_SECONDS", 1)
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # A reviewer here answers within a second, inside the window in which a plan runs as
    # made (LIFECYCLE_PLAN_FRESH_SECONDS); these tests are about plans that waited longer.
    monkeypatch.setenv("LIFECYCLE_PLAN_FRESH_SECONDS", "0")
    get_settings.cache_clear()
    url = f"sqlite:///{isolated_settings / 'crm.db'}"
    yield url, seed_crm(url, customers=20)


def _logins(url: str, customer_id: int) -> list[int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            query = select(LOGINS.c.id).where(LOGINS.c.customer_id == customer_id)
            return sorted(conn.scalars(query))
    finally:
        engine.dispose()


def _add_login(url: str, customer_id: int) -> Callable[[], None]:
    """A new row referencing the subject's customer row (enforced FK), added later."""

    def add() -> None:
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                next_id = conn.scalar(select(func.max(LOGINS.c.id))) + 1
                now = datetime.now(UTC)
                conn.execute(
                    insert(LOGINS).values(id=next_id, customer_id=customer_id, occurred_at=now)
                )
        finally:
            engine.dispose()

    return add


def _drop_login(url: str, login_id: int) -> Callable[[], None]:
    def drop() -> None:
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(delete(LOGINS).where(LOGINS.c.id == login_id))
        finally:
            engine.dispose()

    return drop


@contextmanager
def reviewer(rid: str, *steps: tuple[Action, dict[str, str]]) -> Iterator[list[UUID]]:
    """Answers each pause of request ``rid``'s run with the next answer, after running its
    action (a change to the store while the plan waits). Yields the runs it resumed."""
    acted: set[int] = set()
    failures: list[Exception] = []

    def answer(n: int, run: FlowRun) -> dict[str, str]:
        action, run_input = steps[n]
        if action is not None and n not in acted:  # once, though resuming may be retried
            acted.add(n)
            try:
                action()
            except Exception as e:  # end the run instead of leaving it paused
                failures.append(e)
                return {"decision": "reject", "reviewer": APPROVER}
        return run_input

    with answering_pauses(answer, len(steps), request_id=rid) as resumed:
        yield resumed
    if failures:
        raise failures[0]


def _register(data: DemoData) -> str:
    return submit(
        request_context(),
        kind="erasure",
        identity=data.subject.identity,
        requested_by="intake-desk",
    ).id


def _replanned(rid: str) -> list[Any]:
    return [e for e in events(rid) if e.kind == "erasure.replanned"]


def _approvals(rid: str) -> int:
    """Approvals recorded in the ledger (by a reviewer, or the policy)."""
    return sum(
        1
        for e in events(rid)
        if e.kind.startswith("approval.") and e.status is EventStatus.APPROVED
    )


def test_a_row_added_while_waiting_makes_the_plan_grow_and_needs_approval_again(
    crm: tuple[str, DemoData],
) -> None:
    url, data = crm
    customer = data.subject.customer_id
    rid = _register(data)

    with reviewer(rid, (_add_login(url, customer), APPROVE), (None, APPROVE)) as done:
        outcome = subject_request(request_id=rid)

    assert len(done) == 2 and outcome.status == "completed", outcome
    assert _logins(url, customer) == []  # the new row went with the rest: no FK failure
    [replanned] = _replanned(rid)
    assert replanned.connector == "crm" and replanned.detail["grew"] is True
    assert replanned.detail["approval"] == "required again"
    assert replanned.counts["new_rows"] == replanned.counts["old_rows"] + 1
    assert _approvals(rid) == 2
    assert "request.failed" not in kinds(rid)
    moves = [(h.from_status, h.to_status) for h in request_context().register.history(rid)]
    assert (RequestStatus.EXECUTING, RequestStatus.AWAITING_APPROVAL) in moves
    assert request_context().ledger.verify().ok


def test_a_plan_that_shrank_runs_under_the_approval_it_had(crm: tuple[str, DemoData]) -> None:
    url, data = crm
    customer = data.subject.customer_id
    first, *_rest = _logins(url, customer)
    rid = _register(data)

    with reviewer(rid, (_drop_login(url, first), APPROVE)) as done:
        outcome = subject_request(request_id=rid)

    assert len(done) == 1 and outcome.status == "completed", outcome
    [replanned] = _replanned(rid)
    assert replanned.detail["grew"] is False and replanned.detail["approval"] == "kept"
    assert replanned.counts["new_rows"] == replanned.counts["old_rows"] - 1
    assert _approvals(rid) == 1
    assert _logins(url, customer) == []


def _plan_only(rid: str) -> None:
    """Locate and plan every store, as a run that stopped before approval left it."""
    for store in request_context().store_names():
        locate_store.fn(rid, store)
        plan_store.fn(rid, store)


def test_a_run_that_cannot_ask_again_stops_and_a_rerun_completes(
    crm: tuple[str, DemoData], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, data = crm
    customer = data.subject.customer_id
    rid = _register(data)
    asked: list[bool] = []

    def reachable_once() -> bool:  # the first run's reviewer is gone after approving once
        asked.append(True)
        return len(asked) == 1

    monkeypatch.setattr(flow_module, "_reviewer_reachable", reachable_once)
    with reviewer(rid, (_add_login(url, customer), APPROVE)), pytest.raises(ApprovalNeeded):
        subject_request(request_id=rid)

    ctx = request_context()
    assert ctx.register.get(rid).status is RequestStatus.AWAITING_APPROVAL
    assert ctx.progress.runs.run(rid).approval is None  # withdrawn: it covered less
    crm_row = ctx.progress.store(rid, "crm")
    assert crm_row is not None and crm_row.phase is Phase.PLANNED
    assert "erasure.batch" not in kinds(rid) and "request.failed" not in kinds(rid)

    monkeypatch.setattr(flow_module, "_reviewer_reachable", lambda: True)
    with reviewer(rid, (None, APPROVE)) as done:
        outcome = subject_request(request_id=rid)

    assert len(done) == 1 and outcome.status == "completed", outcome
    assert _logins(url, customer) == []
    assert _approvals(rid) == 2


def test_a_rerun_before_approval_replans_without_asking_twice(crm: tuple[str, DemoData]) -> None:
    url, data = crm
    customer = data.subject.customer_id
    rid = _register(data)
    _plan_only(rid)  # a run stopped (crashed) while the plan waited
    _add_login(url, customer)()

    with reviewer(rid, (None, APPROVE)) as done:
        outcome = subject_request(request_id=rid)

    assert len(done) == 1 and outcome.status == "completed", outcome
    [replanned] = _replanned(rid)
    assert replanned.detail["approval"] == "pending" and replanned.detail["grew"] is True
    assert _approvals(rid) == 1
    assert _logins(url, customer) == []


def _located_ago(rid: str, seconds: int) -> Callable[[], None]:
    """As if the request's stores had been located ``seconds`` ago (a long wait)."""

    def backdate() -> None:
        with request_context().ledger.engine.begin() as conn:
            conn.execute(
                update(request_progress)
                .where(request_progress.c.request_id == rid)
                .values(located_at=datetime.now(UTC) - timedelta(seconds=seconds))
            )

    return backdate


def _both(*actions: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        for action in actions:
            action()

    return run


def _counting_locates(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = SqlConnector.locate

    def locate(self: SqlConnector, identities: Any) -> Any:
        calls.append(self.name)
        return original(self, identities)

    monkeypatch.setattr(SqlConnector, "locate", locate)
    return calls


def test_a_plan_approved_within_the_window_runs_as_made_without_locating_again(
    crm: tuple[str, DemoData], monkeypatch: pytest.MonkeyPatch
) -> None:
    _url, data = crm
    monkeypatch.setenv("LIFECYCLE_PLAN_FRESH_SECONDS", "60")
    get_settings.cache_clear()
    locates = _counting_locates(monkeypatch)
    rid = _register(data)

    with reviewer(rid, (None, APPROVE)) as done:
        outcome = subject_request(request_id=rid)

    assert len(done) == 1 and outcome.status == "completed", outcome
    assert locates.count("crm") == 2  # its locate, and the verification's; no re-locate
    assert _replanned(rid) == []
    assert request_context().ledger.verify().ok


def test_a_plan_older_than_the_window_is_located_again_and_grows(
    crm: tuple[str, DemoData], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, data = crm
    monkeypatch.setenv("LIFECYCLE_PLAN_FRESH_SECONDS", "60")
    get_settings.cache_clear()
    customer = data.subject.customer_id
    rid = _register(data)
    wait = _both(_add_login(url, customer), _located_ago(rid, 61))

    with reviewer(rid, (wait, APPROVE), (None, APPROVE)) as done:
        outcome = subject_request(request_id=rid)

    assert len(done) == 2 and outcome.status == "completed", outcome
    assert _logins(url, customer) == []  # located again: the new row went too
    [replanned] = _replanned(rid)
    assert replanned.detail["grew"] is True
