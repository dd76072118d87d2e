"""Within one subject request, stores that do not depend on each other run concurrently.

The flow runs each per-store step (``flows.store_steps``) for many stores at once; locate
runs in levels so that a store searched by a derived identity waits for the store that
derives it. Overlap is shown by events, not by timing: each processor's stub provider
holds its answer to the erasure until every provider has received its own request (a
barrier), which a run that notified one provider after another could never pass. A store
that fails is audited while the others' work is recorded, and the ledger's chain verifies
after concurrent writes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from config.loader import load_config
from core.errors import LifecycleError
from demo.processor_server import StubProvider, StubRecord
from engine.intake import submit
from engine.request_support import current_config, request_context
from flows.store_steps import locate_levels, run_stores
from flows.subject_request import subject_request
from state.register import RequestStatus
from tests.flows.support import REQUESTER, SUBJECT_EMAIL, events, store_rows

Configure = Callable[..., Path]

SECRET = "concurrency-test-secret-0123456789abcdef"
SECRET_ENV = "TEST_CONCURRENT_PROVIDER_SECRET"
SUBJECT = SUBJECT_EMAIL.lower()
MEETING_TIMEOUT = 20.0  # seconds a provider waits for the others (a sequential run: all)


class MeetingProvider(StubProvider):
    """A stub provider that answers its first erasure request only once every provider
    sharing ``meeting`` has received its own (``threading.Barrier``; broken on timeout)."""

    def __init__(self, records: list[StubRecord], meeting: threading.Barrier) -> None:
        super().__init__(SECRET.encode(), records)
        self.meeting = meeting
        self.met = False

    def answer(self, operation: str, body: dict[str, Any], key: str | None) -> dict[str, Any]:
        if operation == "erasures" and not self.met:
            self.met = True
            self.meeting.wait()
        return super().answer(operation, body, key)


def _processor(name: str, endpoint: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "processor",
        "provider": f"Example {name}",
        "purpose": "newsletter delivery",
        "region": "eu-west-1",
        "categories": ["contact"],
        "identities": ["email"],
        "fields": [{"name": "email", "category": "contact", "identity": "email"}],
        "endpoint": endpoint,
        "secret_env": SECRET_ENV,
        "timeout": 60,
        "retries": 0,
        "backoff": 0,
        "confirm_within": "30s",
        "poll_interval": 0.05,
    }


def _add_processors(folder: Path, providers: Mapping[str, StubProvider]) -> None:
    """The test inventory (crm, shop, files) with a processor store per provider."""
    path = folder / "inventory.yaml"
    inventory = yaml.safe_load(path.read_text())
    inventory["stores"] += [_processor(name, p.url) for name, p in providers.items()]
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))


def _providers(
    names: list[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, MeetingProvider], threading.Barrier]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    meeting = threading.Barrier(len(names), timeout=MEETING_TIMEOUT)
    providers = {
        name: MeetingProvider(
            [StubRecord(f"{name}-1", {"email": SUBJECT}, {"email": SUBJECT})], meeting
        )
        for name in names
    }
    for provider in providers.values():
        provider.start()
    return providers, meeting


def _stop_all(providers: dict[str, MeetingProvider]) -> None:
    for provider in providers.values():
        provider.stop()


def _erasure() -> str:
    ctx = request_context()
    return submit(ctx, kind="erasure", identity={"email": SUBJECT}, requested_by=REQUESTER).id


def _task_runs(flow_run_id: UUID, name: str, expected: int) -> list[str]:
    """The states of the flow run's task runs of task ``name`` (waits for ``expected`` of
    them to be final: Prefect records task-run states through its events)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        states = [r.state.type.value for r in runs if r.name.startswith(name) and r.state]
        final = [s for s in states if s in ("COMPLETED", "FAILED", "CRASHED")]
        if len(final) >= expected or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


# -- which stores may run together ---------------------------------------------------------


def test_locate_levels_follow_derived_identities(
    configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = configure()
    monkeypatch.setenv(SECRET_ENV, SECRET)
    path = folder / "inventory.yaml"
    inventory = yaml.safe_load(path.read_text())
    by_customer = _processor("loyalty", "http://127.0.0.1:9")
    by_customer["identities"] = ["customer_id"]
    by_customer["fields"] = []
    inventory["stores"] += [_processor("mailer", "http://127.0.0.1:9"), by_customer]
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    config = load_config()
    stores = [s.name for s in config.inventory.stores]

    levels = locate_levels(config.inventory, stores)

    # crm derives customer_id. shop (SQL: may match any derived name), files (S3 keys by
    # {customer_id}) and loyalty (asked by customer_id) wait for it; mailer, asked by
    # e-mail only, runs with crm.
    assert levels == [["crm", "mailer"], ["shop", "files", "loyalty"]]


def test_demo_inventory_locates_the_newsletter_with_the_crm(isolated_settings: Path) -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "config" / "demo")
    stores = [s.name for s in config.inventory.stores]
    assert locate_levels(config.inventory, stores) == [["crm", "newsletter"], ["files"]]


def test_run_stores_overlaps_and_keeps_order() -> None:
    meeting = threading.Barrier(3, timeout=MEETING_TIMEOUT)

    def step(store: str) -> int:
        meeting.wait()  # passes only once all three are running at the same time
        return len(store)

    outcomes = run_stores(["a", "bb", "ccc"], step, limit=3)

    assert [(o.store, o.result, o.error) for o in outcomes] == [
        ("a", 1, None),
        ("bb", 2, None),
        ("ccc", 3, None),
    ]


def test_run_stores_starts_nothing_after_a_failure() -> None:
    started: list[str] = []

    def step(store: str) -> int:
        started.append(store)
        if store == "a":
            raise LifecycleError("store a failed")
        return 1

    sequential = run_stores(["a", "b", "c"], step, limit=1)
    assert started == ["a"] and [o.ran for o in sequential] == [True, False, False]
    assert isinstance(sequential[0].error, LifecycleError)

    started.clear()
    b_running, a_failed = threading.Event(), threading.Event()

    def slow_second(store: str) -> int:
        if store == "b":
            b_running.set()
            assert a_failed.wait(MEETING_TIMEOUT)
            time.sleep(0.2)  # a's worker has recorded the failure by now (a few bytecodes)
            return 2
        assert b_running.wait(MEETING_TIMEOUT)  # "a" fails while "b" runs
        try:
            return step(store)
        finally:
            a_failed.set()

    outcomes = run_stores(["a", "b", "c"], slow_second, limit=2)
    # "b" finished; "c", waiting for a worker until "a" had failed, never started.
    assert [o.ran for o in outcomes] == [True, True, False]
    assert outcomes[1].result == 2 and started == ["a"]


# -- shared state under threads ------------------------------------------------------------


def test_concurrent_ledger_writers_keep_the_chain(isolated_settings: Path) -> None:
    from audit.events import EventStatus, NewEvent

    ledger = request_context().ledger

    def write(n: int) -> None:
        for i in range(5):
            event = NewEvent(
                kind="test.concurrent",
                status=EventStatus.SUCCEEDED,
                request_id=None,
                connector=f"store-{n}",
                target=None,
                subject=None,
                counts={"i": i},
                detail={},
                flow_run_id=None,
                task_run_id=None,
                actor=None,
            )
            ledger.append_many([event])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    written = [e for e in ledger.events(kinds=["test.concurrent"])]
    assert len(written) == 60
    assert Counter(e.connector for e in written) == {f"store-{n}": 5 for n in range(12)}
    assert ledger.verify().ok


def test_configuration_is_reused_until_its_file_changes(configure: Configure) -> None:
    folder = configure()
    first = current_config()
    assert current_config() is first  # shared by every task's context: frozen models
    policy = folder / "policy.yaml"
    policy.write_text(policy.read_text().replace("deadline_days: 30", "deadline_days: 20"))
    changed = current_config()
    assert changed is not first and changed.policy.requests.deadline_days == 20


# -- through the flow ----------------------------------------------------------------------


def test_processors_are_notified_concurrently(
    prefect_server: None,
    configure: Configure,
    isolated_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = configure(auto_approve=True)
    providers, meeting = _providers(["mailer", "sms"], monkeypatch)
    try:
        _add_processors(folder, providers)
        rid = _erasure()

        state = subject_request(request_id=rid, return_state=True)
        outcome = state.result()
    finally:
        _stop_all(providers)

    assert not meeting.broken, "a provider answered before the other had its request"
    assert outcome.status == "completed"
    for name, provider in providers.items():
        assert provider.erased == [f"{name}-1"]
    shop = store_rows(isolated_settings, "shop")  # located after crm (customer_id)
    assert [c["id"] for c in shop["carts"]] == [31] and shop["wishlists"] == []
    executed = Counter(e.connector for e in events(rid) if e.kind == "erasure.executed")
    assert executed == {"crm": 1, "shop": 1, "mailer": 1, "sms": 1}
    assert request_context().ledger.verify().ok
    # Prefect recorded every concurrent task run's final state.
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    states = _task_runs(flow_run_id, "execute-store", expected=5)
    assert states == ["COMPLETED"] * 5


def test_failed_stores_are_audited_and_the_others_work_recorded(
    prefect_server: None,
    configure: Configure,
    isolated_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = configure(auto_approve=True)
    providers, meeting = _providers(["mailer", "sms", "push"], monkeypatch)
    providers["mailer"].knobs.fail = True  # the provider reports the erasure failed
    providers["push"].knobs.fail = True
    try:
        _add_processors(folder, providers)
        rid = _erasure()

        with pytest.raises(LifecycleError, match="store 'mailer'"):  # first in inventory
            subject_request(request_id=rid)
    finally:
        _stop_all(providers)

    assert not meeting.broken  # all three were notified before any answered
    seen = events(rid)
    failed = Counter(e.connector for e in seen if e.kind == "request.failed")
    assert failed == {"mailer": 1, "push": 1}  # each failing store, once
    executed = Counter(e.connector for e in seen if e.kind == "erasure.executed")
    assert executed == {"crm": 1, "shop": 1, "sms": 1}  # the others finished and are audited
    assert providers["sms"].erased == ["sms-1"]
    [batch] = [e for e in seen if e.kind == "erasure.batch" and e.connector == "sms"]
    assert batch.counts == {"affected": 1} and batch.detail.get("reference")
    assert request_context().register.get(rid).status is RequestStatus.FAILED
    assert request_context().ledger.verify().ok


# -- a crash while stores run concurrently -------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    [
        "executing:shop",  # inside shop's transaction, crm executing beside it
        "executed:crm",  # crm committed, its batches not audited; shop anywhere
    ],
)
def test_a_crash_among_concurrent_stores_resumes_as_an_uninterrupted_run(
    point: str,
    configure: Configure,
    isolated_settings: Path,
    prefect_api_url: str,
    tmp_path: Path,
) -> None:
    from tests.flows.support import APPROVER, key_file, kinds, run_cli, subprocess_env
    from tests.flows.test_resume import _assert_end_state

    configure(auto_approve=False)  # pre-approved on the command line
    env = subprocess_env(
        PREFECT_API_URL=prefect_api_url,
        LIFECYCLE_TEST_HOOKS="1",
        LIFECYCLE_TEST_CRASH_AT=point,
        LIFECYCLE_STORE_CONCURRENCY="8",
    )
    crashed = run_cli(
        *("request", "submit", "--kind", "erasure", "--identity", f"email={SUBJECT_EMAIL}"),
        *("--approve", "--reviewer", APPROVER),
        *("--signing-key", str(key_file(tmp_path / "keys", APPROVER))),
        env=env,
    )
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    [record] = request_context().register.list()
    assert "request.completed" not in kinds(record.id)

    resumed = run_cli(
        "request",
        "submit",
        "--resume",
        record.id,
        env=subprocess_env(PREFECT_API_URL=prefect_api_url, LIFECYCLE_STORE_CONCURRENCY="8"),
    )

    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_end_state(isolated_settings, record.id)
