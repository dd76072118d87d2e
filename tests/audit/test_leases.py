"""Leases in the audit database (SQLite, PostgreSQL, MariaDB): one holder at a time.

Time is an injected clock and waiting an injected sleep that moves it: no test sleeps.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert

from audit.database import audit_engine, dispose_engines
from state.leases import (
    Lease,
    LeaseBusy,
    LeaseLost,
    WaitReport,
    current_holder,
    renew_all,
)
from state.sweep_tables import leases

TTL = timedelta(minutes=15)
START = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    yield audit_engine(db_url)
    dispose_engines()


def _lease(engine: Engine, owner: str, clock: Clock) -> Lease:
    return Lease(
        engine, "retention-sweep", ttl=TTL, owner=owner, job="retention sweep", clock=clock
    )


def test_one_holder_until_it_releases_or_its_lease_expires(engine: Engine) -> None:
    clock = Clock()
    first, second = _lease(engine, "flow run A", clock), _lease(engine, "cli B", clock)

    first.acquire()
    holder = second.try_acquire()
    assert holder is not None and holder.owner == "flow run A"
    with pytest.raises(LeaseBusy) as busy:
        second.acquire()
    assert busy.value.message == (
        "another retention sweep is running: lease 'retention-sweep' is held by flow run A "
        "since 2026-11-20 03:00:00 UTC (last renewed 2026-11-20 03:00:00 UTC, expires "
        "2026-11-20 03:15:00 UTC unless renewed)"
    )

    # Renewed in time, the lease stays with its holder past its first expiry.
    clock.advance(TTL - timedelta(seconds=1))
    first.renew()
    clock.advance(timedelta(seconds=2))
    assert second.try_acquire() is not None

    # Not renewed (the holder crashed or stalled): the next one takes it over.
    clock.advance(TTL)
    second.acquire()
    assert second.took_over is not None and second.took_over.reason == "expired"
    assert second.took_over.previous.owner == "flow run A"
    with pytest.raises(LeaseLost, match="another run took it over"):
        first.renew()
    with pytest.raises(LeaseLost), engine.begin() as conn:
        first.fence(conn)
    first.release()  # the lease is no longer its to release
    current = current_holder(engine, "retention-sweep")
    assert current is not None and current.owner == "cli B"

    with engine.begin() as conn:
        second.fence(conn)  # the holder passes its own fence
    second.release()
    assert current_holder(engine, "retention-sweep") is None
    first.acquire()  # free again


def test_racing_acquirers_get_exactly_one_holder(engine: Engine) -> None:
    clock = Clock()
    racers = [_lease(engine, f"racer {i}", clock) for i in range(6)]
    barrier = threading.Barrier(len(racers))
    results: dict[int, object] = {}

    def race(i: int) -> None:
        barrier.wait()
        results[i] = racers[i].try_acquire()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(racers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in results.items() if r is None]
    assert len(winners) == 1
    holder = current_holder(engine, "retention-sweep")
    assert holder is not None and holder.owner == f"racer {winners[0]}"

    # And again for an expired lease: one takes it over, the others see that one.
    clock.advance(TTL * 2)
    racers = [_lease(engine, f"late {i}", clock) for i in range(6)]
    barrier.reset()
    results.clear()
    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(racers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for r in results.values() if r is None) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # no backend-specific SQL
def test_a_dead_holder_on_this_host_is_taken_over_at_once(db_url: str) -> None:
    engine = audit_engine(db_url)
    dead_pid = _pid_of_finished_process()
    with engine.begin() as conn:
        conn.execute(
            insert(leases).values(
                name="retention-sweep",
                holder="0" * 32,
                owner="cli (crashed)",
                host=socket.gethostname(),
                pid=dead_pid,
                acquired_at=datetime.now(UTC),
                renewed_at=datetime.now(UTC),
                expires_at=datetime.now(UTC) + TTL,  # far from expired
            )
        )
    lease = Lease(engine, "retention-sweep", ttl=TTL, owner="rerun")
    lease.acquire()
    assert lease.took_over is not None and lease.took_over.reason == "holder process gone"
    dispose_engines()


def _pid_of_finished_process() -> int:
    """The pid of a child that has exited and been reaped (so no process has it now)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_waiting_is_bounded_and_reports_progress(engine: Engine) -> None:
    clock = Clock()
    holder, waiter = _lease(engine, "flow run A", clock), _lease(engine, "cli B", clock)
    holder.acquire()
    lines: list[str] = []
    report = WaitReport(
        lines.append, job="retention sweep", limit=timedelta(minutes=10), every=timedelta(minutes=4)
    )

    def sleep(seconds: float) -> None:  # waiting moves the injected clock, nothing else
        clock.advance(timedelta(seconds=seconds))

    with pytest.raises(LeaseBusy) as busy:
        waiter.acquire(
            wait=timedelta(minutes=10), poll=timedelta(minutes=1), on_wait=report, sleep=sleep
        )
    assert busy.value.message.endswith("; still held after waiting 10 min 0 s")
    assert [line.split(":")[0] for line in lines] == [
        "waiting for the running retention sweep (waited 0 s of up to 10 min 0 s)",
        "waiting for the running retention sweep (waited 4 min 0 s of up to 10 min 0 s)",
        "waiting for the running retention sweep (waited 8 min 0 s of up to 10 min 0 s)",
    ]
    assert all("held by flow run A since 2026-11-20 03:00:00 UTC" in line for line in lines)

    # The holder finishes while the other waits: it gets the lease at its next look.
    holder.renew()
    polls: list[float] = []

    def sleep_then_release(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 3:
            holder.release()

    waiter.acquire(wait=timedelta(minutes=10), sleep=sleep_then_release)
    assert len(polls) == 3 and waiter.held and waiter.took_over is None


def test_a_batch_renews_its_leases_in_one_statement_and_learns_which_it_lost(
    engine: Engine,
) -> None:
    """``renew_all``: every lease sharing the batch's holder token is pushed past now; one
    another run took over (after it expired) is reported lost and is no longer held."""
    clock = Clock()
    mine = [
        Lease(engine, f"request:r{i}", ttl=TTL, owner="batch", clock=clock, holder="b" * 32)
        for i in range(3)
    ]
    for lease in mine:
        assert lease.try_acquire() is None
    clock.advance(TTL + timedelta(seconds=1))  # all expired; a rival takes the middle one
    rival = Lease(engine, "request:r1", ttl=TTL, owner="rival", clock=clock)
    assert rival.try_acquire() is None

    assert renew_all(mine) == [mine[1]]
    assert [lease.held for lease in mine] == [True, False, True]
    for lease in (mine[0], mine[2]):
        holder = current_holder(engine, lease.name)
        assert holder is not None and holder.holder == "b" * 32
        assert holder.expires_at.replace(tzinfo=UTC) == clock.now + TTL
    held_by_rival = current_holder(engine, "request:r1")
    assert held_by_rival is not None and held_by_rival.owner == "rival"  # untouched
    with pytest.raises(ValueError, match="share a holder token"):
        renew_all([mine[0], rival])


def test_a_lease_renewed_moments_ago_is_not_renewed_again_between_steps(
    engine: Engine,
) -> None:
    """``renew_if_due`` writes only once a quarter of the ttl has passed since the last
    renewal: a request's many steps do not each write to the audit database."""
    clock = Clock()
    lease = _lease(engine, "flow run A", clock)
    lease.acquire()
    before = current_holder(engine, lease.name)
    clock.advance(timedelta(minutes=1))
    lease.renew_if_due()  # renewed just now (monotonic): no write
    assert current_holder(engine, lease.name) == before
    lease.renewed -= TTL.total_seconds() / 4  # a quarter of the ttl later
    lease.renew_if_due()
    after = current_holder(engine, lease.name)
    assert after is not None and before is not None and after.renewed_at > before.renewed_at
