"""One run of a request at a time: a second run waits for the first, or gives up clearly,
and never executes beside it; a lease that is renewed outlives its lifetime."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from engine import request_lease
from engine.intake import submit
from engine.request_support import request_context
from flows.subject_request import subject_request
from state.leases import Lease, LeaseBusy, LeaseHolder, WaitReport
from state.register import RequestStatus
from tests.flows.support import REQUESTER, SUBJECT_EMAIL, kinds, store_rows

Configure = Callable[..., Path]


def _erasure() -> str:
    return submit(
        request_context(), kind="erasure", identity={"email": SUBJECT_EMAIL}, requested_by=REQUESTER
    ).id


def _other_run(request_id: str, ttl: float = 120.0) -> Lease:
    """Another run of the request, alive (this process), holding its lease."""
    lease = Lease(
        request_context().ledger.engine,
        request_lease.lease_name(request_id),
        ttl=timedelta(seconds=ttl),
        owner="flow run other (test)",
    )
    assert lease.try_acquire() is None
    return lease


def test_a_second_run_gives_up_without_touching_anything(
    prefect_server: None,
    configure: Configure,
    isolated_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(auto_approve=True)
    monkeypatch.setenv("LIFECYCLE_REQUEST_LEASE_WAIT_SECONDS", "0")
    from config.settings import get_settings

    get_settings.cache_clear()
    rid = _erasure()
    before = store_rows(isolated_settings, "crm")
    other = _other_run(rid)
    try:
        with pytest.raises(LeaseBusy) as busy:
            subject_request(request_id=rid)
        assert "flow run other (test)" in busy.value.message
        assert request_context().register.get(rid).status is RequestStatus.RECEIVED
        assert store_rows(isolated_settings, "crm") == before  # nothing located, nothing erased
        assert kinds(rid) == ["request.received"]
    finally:
        other.release()


def test_a_second_run_waits_for_the_first_then_finds_the_work_done(
    prefect_server: None,
    configure: Configure,
    isolated_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(auto_approve=True)
    rid = _erasure()
    assert subject_request(request_id=rid).status == "completed"
    done = kinds(rid)
    rows = store_rows(isolated_settings, "crm")

    other = _other_run(rid)  # another run of the request is still finishing
    waiting = threading.Event()

    class Noticed(WaitReport):
        def __call__(self, holder: LeaseHolder, waited: timedelta) -> None:
            waiting.set()
            super().__call__(holder, waited)

    monkeypatch.setattr(request_lease, "WaitReport", Noticed)

    def finish_other() -> None:
        assert waiting.wait(300), "the second run never waited"
        other.release()

    finisher = threading.Thread(target=finish_other)
    finisher.start()
    try:
        second = subject_request(request_id=rid)
    finally:
        finisher.join()
    assert waiting.is_set()
    assert second.status == "completed"
    assert kinds(rid) == done  # nothing executed or recorded twice
    assert store_rows(isolated_settings, "crm") == rows


def test_the_lease_is_renewed_while_held(isolated_settings: Path) -> None:
    rid = "req_00000000000000aa"
    engine = request_context().ledger.engine
    lease = Lease(engine, request_lease.lease_name(rid), ttl=timedelta(seconds=0.8), owner="me")
    held = request_lease.RequestLease(rid, lease)
    held.acquire(timedelta(0))
    try:
        threading.Event().wait(2.0)  # more than twice the lifetime
        rival = Lease(engine, request_lease.lease_name(rid), ttl=timedelta(seconds=5), owner="x")
        # Alive and renewed: the rival may not take it, even though the host check would
        # not free it (same pid) and the first expiry has long passed.
        assert rival.try_acquire() is not None
        held.check()  # still ours
    finally:
        held.release()
    rival = Lease(engine, request_lease.lease_name(rid), ttl=timedelta(seconds=5), owner="x")
    assert rival.try_acquire() is None
    rival.release()
