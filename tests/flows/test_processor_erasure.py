"""Erasure through the subject-request flow reaching a processor that confirms late.

One request spans the demo CRM (SQLite, the real SQL connector), the demo S3 store (a
local S3 over HTTP) and a processor store ``mailer`` served by ``StubProvider``. The
request completes only once the provider confirmed the erasure; the provider's reference
is in the processor's ``erasure.batch`` event; the subject's e-mail address is in no
ledger event, log record or Prefect run. When the provider has not confirmed by the
store's ``confirm_within`` (``ConfirmationPending`` on every task retry, then the run
fails), a rerun of the same request finishes once it does: the provider took one erasure
for the idempotency key, and the reference is recorded once. So does ``--resume`` after
``lifecycle request submit`` was killed while it polled (crash point
``awaiting-confirmation:mailer``): the resumed run polls, it does not send again.

The configuration is the demo's with any processor store of the demo replaced by
``mailer`` (so these tests do not depend on the demo's own provider or its secret).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from audit.events import StoredEvent
from config.settings import PROJECT_ROOT, get_settings
from connectors.processor.protocol import ConfirmationPending
from core.engines import make_engine
from demo.crm_schema import crm_metadata
from demo.processor_server import StubProvider, StubRecord, StubRequest
from demo.s3_server import LocalS3
from demo.seed_s3 import TICKETS_BUCKET, seed_s3
from demo.seed_sql import DEMO_PROFILE, SECOND_PROFILE, DemoData, seed_crm
from engine.intake import submit
from engine.request_support import request_context
from flows.subject_request import subject_request
from state.register import RequestStatus
from tasks.erasure_tasks import execute_store
from tests import forked_cli
from tests.flows.support import REQUESTER, events, subprocess_env

pytestmark = pytest.mark.slow  # whole flows against a temporary Prefect server

CUSTOMERS = 30
STORE = "mailer"
SECRET = "mailer-test-secret-0123456789abcdef"
SECRET_ENV = "TEST_MAILER_SECRET"
SUBJECT_REFS = ("mail-1", "mail-2")
BYSTANDER_REF = "mail-3"


class LateProvider(StubProvider):
    """The stub provider, noting when it confirmed each request (by idempotency key)."""

    def __init__(self, secret: bytes, records: list[StubRecord]) -> None:
        super().__init__(secret, records)
        self.confirmed_at: dict[str, datetime] = {}
        self.catch_up_on_locate = False  # confirm what is pending just before a locate

    def _finish(self, request: StubRequest) -> None:
        super()._finish(request)
        if request.state == "confirmed":
            key = next(k for k, r in self.requests.items() if r is request)
            self.confirmed_at[key] = datetime.now(UTC)

    def answer(self, operation: str, body: dict[str, Any], key: str | None) -> dict[str, Any]:
        if operation == "locate" and self.catch_up_on_locate:
            for request in self.requests.values():  # ``self.lock`` is held
                if request.state == "pending":
                    self._finish(request)
        return super().answer(operation, body, key)


def _mailer(endpoint: str, confirm_within: str) -> dict[str, Any]:
    """The processor store of the test inventory, asked at ``endpoint``."""
    return {
        "name": STORE,
        "type": "processor",
        "description": "Newsletter provider (the test's stub)",
        "provider": "Example Mail",
        "purpose": "newsletter delivery",
        "region": "eu-west-1",
        "categories": ["contact"],
        "agreement": {"reference": "DPA-TEST-1", "expires": "2030-12-31"},
        "identities": ["email"],
        "fields": [{"name": "email", "category": "contact", "identity": "email"}],
        "endpoint": endpoint,
        "secret_env": SECRET_ENV,
        "timeout": 5,
        "retries": 2,
        "backoff": 0,
        "confirm_within": confirm_within,
        "poll_interval": 0.05,
    }


def _configure(folder: Path, endpoint: str, confirm_within: str) -> None:
    """The demo configuration with the test's processor store in place of the demo's."""
    shutil.copytree(PROJECT_ROOT / "config" / "demo", folder)
    inventory = yaml.safe_load((folder / "inventory.yaml").read_text())
    stores = [s for s in inventory["stores"] if s["type"] != "processor"]
    inventory["stores"] = [*stores, _mailer(endpoint, confirm_within)]
    (folder / "inventory.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[LateProvider]:
    """The provider holding the demo subject's two records and the second subject's one."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    subject, second = DEMO_PROFILE.email.lower(), SECOND_PROFILE.email.lower()
    stub = LateProvider(
        SECRET.encode(),
        [
            *(StubRecord(ref, {"email": subject}, {"email": subject}) for ref in SUBJECT_REFS),
            StubRecord(BYSTANDER_REF, {"email": second}, {"email": second}),
        ],
    )
    with stub.running():
        yield stub


World = tuple[DemoData, LocalS3, LateProvider]
MakeWorld = Callable[[str], World]


@pytest.fixture
def make_world(
    prefect_server: None,
    isolated_settings: Path,
    local_s3: LocalS3,
    provider: LateProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> MakeWorld:
    """``make_world(confirm_within)``: the demo CRM and S3 objects seeded, the test
    configuration in use (the processor waiting ``confirm_within`` for confirmations)."""

    def make(confirm_within: str) -> World:
        data = seed_crm(f"sqlite:///{isolated_settings / 'crm.db'}", customers=CUSTOMERS)
        seed_s3(
            local_s3.client(),
            customer_ids=range(1, CUSTOMERS + 1),
            subject_customer_id=data.subject.customer_id,
            region=local_s3.region,
        )
        folder = isolated_settings.parent / "config"
        _configure(folder, provider.url, confirm_within)
        monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(folder))
        get_settings.cache_clear()
        return data, local_s3, provider

    return make


def _erasure(data: DemoData) -> str:
    """Register the demo subject's erasure (only the id goes to the flow)."""
    identity = {"email": data.subject.email.lower()}
    return submit(request_context(), kind="erasure", identity=identity, requested_by=REQUESTER).id


def _watch_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="prefect")


def _customers(data: DemoData) -> dict[str, int]:
    """The CRM rows of each demo subject's customer record (1: still there)."""
    customers = crm_metadata().tables["customers"]
    engine = make_engine(f"sqlite:///{Path(get_settings().data_dir) / 'crm.db'}")
    try:
        with engine.connect() as conn:
            return {
                who.email: int(
                    conn.scalar(select(func.count()).where(customers.c.id == who.customer_id)) or 0
                )
                for who in (data.subject, data.second)
            }
    finally:
        engine.dispose()


def _tickets_of(s3: LocalS3, customer_id: int) -> int:
    client = s3.client()
    try:
        found = client.list_object_versions(Bucket=TICKETS_BUCKET, Prefix=f"tickets/{customer_id}/")
    finally:
        client.close()
    return len(found.get("Versions", [])) + len(found.get("DeleteMarkers", []))


def _erasure_key(provider: StubProvider) -> str:
    """The idempotency key of the one erasure the provider took."""
    [key] = [k for k, r in provider.requests.items() if r.kind == "erasures"]
    return key


def _assert_erased_everywhere(world: World, rid: str) -> StoredEvent:
    """The subject is gone from all three stores, the bystanders untouched, the request
    completed once; returns the processor's one batch event."""
    data, s3, provider = world
    assert _customers(data) == {data.subject.email: 0, data.second.email: 1}
    assert _tickets_of(s3, data.subject.customer_id) == 0
    assert _tickets_of(s3, data.second.customer_id) > 0
    assert sorted(provider.erased) == sorted(SUBJECT_REFS)  # each erased once
    assert set(provider.records) == {BYSTANDER_REF}
    key = _erasure_key(provider)
    assert {k for op, k in provider.calls if op == "erasures"} == {key}  # one request
    record = request_context().register.get(rid)
    assert record.status is RequestStatus.COMPLETED and record.identity_destroyed

    ledger = events(rid)
    seen = Counter(e.kind for e in ledger)
    assert seen["request.completed"] == 1 and ledger[-1].kind == "request.completed"
    assert seen["erasure.executed"] == 3  # crm, files, mailer: each audited once
    [batch] = [e for e in ledger if e.kind == "erasure.batch" and e.connector == STORE]
    reference = provider.requests[key].reference
    assert batch.detail == {
        "action": "delete",
        "keys_digest": batch.detail["keys_digest"],
        "reference": reference,
    }
    assert batch.counts == {"affected": len(SUBJECT_REFS)}
    others = [e for e in ledger if e.kind == "erasure.batch" and e.connector != STORE]
    assert {e.connector for e in others} == {"crm", "files"}
    assert all("reference" not in e.detail for e in others)  # they give none
    [executed] = [e for e in ledger if e.kind == "erasure.executed" and e.connector == STORE]
    assert executed.detail["batches"] == 1 and executed.detail["dropped_keys"] == 0
    mailer = [e.kind for e in ledger if e.connector == STORE]
    assert mailer.index("erasure.planned") < mailer.index("erasure.batch")
    assert mailer.index("erasure.batch") < mailer.index("erasure.verified")
    [recorded] = request_context().progress.batches(rid, STORE)
    assert recorded.reference == reference  # on record once
    assert request_context().ledger.verify().ok
    return batch


def _assert_no_identity(data: DemoData, rid: str, caplog: pytest.LogCaptureFixture) -> None:
    """The subject's address (any letter case, or any example.com address) is nowhere in
    the ledger, the captured logs, or the request's Prefect flow and task runs."""
    needles = (data.subject.email.lower(), "@example.com")
    ledger = json.dumps([vars(e) for e in events(rid)], default=str).lower()
    assert not [n for n in needles if n in ledger]
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records
    ).lower()
    assert caplog.records and not [n for n in needles if n in logged]
    runs = _prefect_runs(rid)
    flow_runs = [run for run in runs if "parameters" in run]
    assert flow_runs and all(run["parameters"] == {"request_id": rid} for run in flow_runs)
    assert len(runs) > len(flow_runs)  # their task runs too
    text = json.dumps(runs, default=str).lower()
    assert not [n for n in needles if n in text]


def _prefect_runs(rid: str) -> list[dict[str, Any]]:
    """The request's flow runs (named after it) and their task runs, as Prefect keeps them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName

    with get_client(sync_client=True) as client:
        flows = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[rid]))
        )
        ids = [run.id for run in flows]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    return [run.model_dump(mode="json") for run in flows] + [
        task.model_dump(mode="json") for task in tasks
    ]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def test_erasure_completes_only_after_the_provider_confirms(
    make_world: MakeWorld, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world("30s")
    data, _, provider = world
    provider.knobs.confirm_after_polls = 3  # pending on the first two status polls
    _watch_logs(caplog)
    rid = _erasure(data)

    outcome = subject_request(request_id=rid)

    assert outcome.status == "completed"
    assert outcome.exit_code == 4  # the demo's locked contract in S3 is deferred
    assert {d.store for d in outcome.deferrals} == {"files"}
    batch = _assert_erased_everywhere(world, rid)
    key = _erasure_key(provider)
    assert provider.calls.count(("status", None)) >= 3  # pending, pending, confirmed
    confirmed = provider.confirmed_at[key]
    assert _aware(batch.occurred_at) >= confirmed  # recorded once the provider confirmed
    [mailer] = [s for s in outcome.stores if s.store == STORE]
    assert (mailer.found, mailer.affected, mailer.remaining) == (2, 2, 0)
    _assert_no_identity(data, rid, caplog)


@pytest.mark.parametrize("confirmed_before_rerun", [False, True], ids=["late", "meanwhile"])
def test_a_rerun_after_the_confirmation_wait_ran_out_sends_nothing_twice(
    make_world: MakeWorld,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    confirmed_before_rerun: bool,
) -> None:
    """The provider does not confirm within ``confirm_within``: every task retry polls the
    request it took again (nothing sent twice) and gives up again, the run fails; the
    rerun finishes once the provider confirms (late: while the rerun polls; meanwhile:
    before it starts)."""
    world = make_world("1s")
    data, _, provider = world
    monkeypatch.setattr(execute_store, "retry_delay_seconds", [0.1])  # not 2 s, then 10 s
    provider.knobs.never_confirm = True
    _watch_logs(caplog)
    rid = _erasure(data)

    with pytest.raises(ConfirmationPending, match="did not confirm the erasure"):
        subject_request(request_id=rid)

    key = _erasure_key(provider)
    sent = [k for op, k in provider.calls if op == "erasures"]
    assert sent == [key]  # the first attempt sent it; two retries polled it again
    assert provider.erased == [] and provider.requests[key].state == "pending"
    assert request_context().register.get(rid).status is RequestStatus.FAILED
    ledger = events(rid)
    assert not [e for e in ledger if e.kind == "erasure.batch" and e.connector == STORE]
    assert "request.completed" not in {e.kind for e in ledger}
    [failed] = [e for e in ledger if e.kind == "request.failed"]
    assert failed.connector == STORE
    assert _customers(data)[data.subject.email] == 0  # crm and files went before

    provider.knobs.never_confirm = False
    if confirmed_before_rerun:
        provider.confirm_all()
    else:
        provider.requests[key].polls_left = 3  # the rerun sees it pending, then confirmed
    polls_before = provider.calls.count(("status", None))

    outcome = subject_request(request_id=rid)

    assert outcome.status == "completed"
    _assert_erased_everywhere(world, rid)
    resent = [k for op, k in provider.calls if op == "erasures"]
    assert resent == [key]  # the rerun polled it too
    if not confirmed_before_rerun:
        assert provider.calls.count(("status", None)) - polls_before >= 3
    _assert_no_identity(data, rid, caplog)


CRASH_AT = f"awaiting-confirmation:{STORE}"
"""Where the first run dies: the erasure sent, a status poll answered "pending"."""


@pytest.mark.parametrize("confirmed", ["on-resume", "while-down", "before-relocate"])
def test_a_kill_while_awaiting_the_confirmation_then_resume_sends_nothing_twice(
    make_world: MakeWorld, prefect_api_url: str, confirmed: str
) -> None:
    """``lifecycle request submit`` is killed (exit 137) while it polls the provider, which
    took the erasure but has not confirmed it; ``--resume`` completes the request only once
    the provider confirms: while the resumed run polls (on-resume), while no process ran
    (while-down), or between the resumed run's status poll and its fresh locate
    (before-relocate). The provider (in this process) outlives the killed one; it took
    one erasure for the idempotency key, and the reference is on record once."""
    world = make_world("30s")
    data, _, provider = world
    provider.knobs.confirm_after_polls = 3  # the killed run sees "pending" on its first poll
    email = data.subject.email.lower()
    submit_args = ("request", "submit", "--kind", "erasure", "--identity", f"email={email}")
    env = subprocess_env(
        PREFECT_API_URL=prefect_api_url, LIFECYCLE_TEST_HOOKS="1", LIFECYCLE_TEST_CRASH_AT=CRASH_AT
    )

    crashed = forked_cli.run("cli.main", [*submit_args, "--json"], env=env)

    assert crashed.returncode == 137, crashed.stderr[-2000:]
    [record] = request_context().register.list()
    rid = record.id
    key = _erasure_key(provider)
    assert [k for op, k in provider.calls if op == "erasures"] == [key]
    assert provider.requests[key].state == "pending" and provider.erased == []
    assert len(request_context().progress.intents(rid, STORE)) == 1  # written before sending
    ledger = events(rid)
    assert not [e for e in ledger if e.kind == "erasure.batch" and e.connector == STORE]
    assert "request.completed" not in {e.kind for e in ledger}

    if confirmed == "while-down":
        provider.confirm_all()
    provider.catch_up_on_locate = confirmed == "before-relocate"
    resumed = forked_cli.run(
        "cli.main",
        ["request", "submit", "--resume", rid, "--json"],
        env=subprocess_env(PREFECT_API_URL=prefect_api_url),
    )

    assert resumed.returncode == 4, resumed.stderr[-2000:]  # the locked S3 contract deferred
    assert json.loads(resumed.stdout)["status"] == "completed"
    batch = _assert_erased_everywhere(world, rid)
    assert [k for op, k in provider.calls if op == "erasures"] == [key]  # never sent again
    assert _aware(batch.occurred_at) >= provider.confirmed_at[key]
    audited = Counter(
        (e.connector, e.target, e.detail["keys_digest"])
        for e in events(rid)
        if e.kind == "erasure.batch"
    )
    assert max(audited.values()) == 1, "a batch was audited twice"
    needles = (email, "@example.com")
    written = json.dumps([vars(e) for e in events(rid)], default=str).lower()
    written += json.dumps(_prefect_runs(rid), default=str).lower()
    written += (crashed.stdout + resumed.stdout).lower()
    assert not [n for n in needles if n in written]


def test_the_providers_crash_point_needs_the_test_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.crash_points import crash_point

    monkeypatch.setenv("LIFECYCLE_TEST_CRASH_AT", CRASH_AT)
    monkeypatch.delenv("LIFECYCLE_TEST_HOOKS", raising=False)
    crash_point("awaiting-confirmation", STORE)  # still alive: inert without the switch
    monkeypatch.setenv("LIFECYCLE_TEST_HOOKS", "1")
    crash_point("awaiting-confirmation", "crm")  # another point
