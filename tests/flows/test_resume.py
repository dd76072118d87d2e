"""Crash anywhere, rerun, same end state: the process is killed (exit 137) at a point, then
``lifecycle request submit --resume ID`` finishes the request.

The end state must equal an uninterrupted run's: the subject's rows gone or masked, the
bystander's untouched, each store's batches audited exactly once, exactly one
"request.completed", the identity destroyed. Subprocesses use the session's Prefect
server, so no extra server starts.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.request_support import request_context
from state.register import RequestStatus
from tests.flows.support import (
    APPROVER,
    SUBJECT_EMAIL,
    events,
    key_file,
    kinds,
    run_cli,
    store_rows,
    subprocess_env,
)

Configure = Callable[..., Path]

CRASH_CHAIN = [
    "located:shop",  # after locating the second store
    "planned:crm",  # a plan recorded, nothing approved
    "approved:request",  # approval recorded, nothing executed
    "executed:crm",  # crm committed, its batches not yet audited
    "executing:shop",  # inside shop's transaction: nothing committed there
    "audited:shop",  # shop executed again from its plan (re-validated) and audited
    "verified:crm",  # one store verified
    "closed:request",  # closed, "request.completed" not yet written
]
"""Each rerun dies at the next point: one request crashes eight times, then finishes.

The runs work on one store at a time (``LIFECYCLE_STORE_CONCURRENCY=1``), so each rerun is
sure to reach the next point: with stores running concurrently, shop could finish while
the run dies at ``executed:crm``, and no rerun would pass ``executing:shop`` again.
Crashes while stores run concurrently: ``tests.flows.test_store_concurrency`` and the
crash campaign (``tests.crash_campaign``, at the default concurrency).
"""


def _assert_end_state(data_dir: Path, request_id: str) -> None:
    crm = store_rows(data_dir, "crm")
    assert [c["id"] for c in crm["customers"]] == [2]
    assert [o["id"] for o in crm["orders"]] == [13]
    assert [i["billing_name"] for i in crm["invoices"]] == ["[redacted]", "Sam Birch"]
    shop = store_rows(data_dir, "shop")
    assert [c["id"] for c in shop["carts"]] == [31] and shop["wishlists"] == []

    record = request_context().register.get(request_id)
    assert record.status is RequestStatus.COMPLETED and record.identity_destroyed
    seen = Counter(kinds(request_id))
    assert seen["request.completed"] == 1
    assert seen["erasure.executed"] == 2  # one audit group per store
    batches = Counter(
        (e.connector, e.target, e.detail["keys_digest"])
        for e in events(request_id)
        if e.kind == "erasure.batch"
    )
    assert max(batches.values()) == 1, "a batch was audited twice"
    affected = sum(e.counts["affected"] for e in events(request_id) if e.kind == "erasure.batch")
    assert affected == 7  # 5 rows in crm, 2 in shop: nothing lost, nothing counted twice
    assert request_context().ledger.verify().ok


@pytest.mark.slow
def test_crash_at_each_step_then_resume_ends_as_an_uninterrupted_run(
    configure: Configure, isolated_settings: Path, prefect_api_url: str, tmp_path: Path
) -> None:
    configure(auto_approve=False)  # pre-approved on the command line

    def crash_at(point: str, *args: str) -> None:
        env = subprocess_env(
            PREFECT_API_URL=prefect_api_url,
            LIFECYCLE_TEST_HOOKS="1",
            LIFECYCLE_TEST_CRASH_AT=point,
            LIFECYCLE_STORE_CONCURRENCY="1",  # the chain's order (see CRASH_CHAIN)
        )
        crashed = run_cli("request", "submit", *args, env=env)
        assert crashed.returncode == 137, f"{point}: {crashed.stderr[-2000:]}"

    first, *rest = CRASH_CHAIN
    crash_at(
        first,
        *("--kind", "erasure", "--identity", f"email={SUBJECT_EMAIL}"),
        *("--approve", "--reviewer", APPROVER),
        *("--signing-key", str(key_file(tmp_path / "keys", APPROVER))),
    )
    [record] = request_context().register.list()
    for point in rest:
        crash_at(point, "--resume", record.id)
        assert "request.completed" not in kinds(record.id)

    resumed = run_cli(
        "request",
        "submit",
        "--resume",
        record.id,
        "--json",
        env=subprocess_env(PREFECT_API_URL=prefect_api_url),
    )

    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout)["status"] == "completed"
    _assert_end_state(isolated_settings, record.id)
    shop = request_context().progress.store(record.id, "shop")
    assert shop is not None and shop.attempts == 2  # the uncommitted attempt, then the rerun


def test_crash_hooks_need_the_test_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.crash_points import crash_point

    monkeypatch.setenv("LIFECYCLE_TEST_CRASH_AT", "planned:crm")
    monkeypatch.delenv("LIFECYCLE_TEST_HOOKS", raising=False)
    crash_point("planned", "crm")  # still alive: without LIFECYCLE_TEST_HOOKS=1 it is inert
    monkeypatch.setenv("LIFECYCLE_TEST_HOOKS", "1")
    crash_point("planned", "shop")  # another point
