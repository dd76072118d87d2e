"""One run of a request at a time: the ``request:<id>`` lease (``state.leases``).

Two processes can find themselves running the same request: a CLI ``--resume`` beside a
deployment run, or a CLI approval that handed its decision to a paused run which picked
it up only after the CLI had given up waiting and run the request itself. Progress
records make each step idempotent after a crash, but two live runs executing the same
store at once would each read the plan and race. So a run holds the request's lease
from preparation to its summary, and gives it up only while it waits for a decision (a
paused run holds no process that could renew it, and the CLI may act meanwhile).

A background thread renews the lease every quarter of its lifetime, so a long batch
cannot outlive it. A run that lost its lease (it stalled past expiry and another run took
over) stops at its next step with ``LeaseLost``: the holder carries the request on.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from config.settings import get_settings
from core.errors import LifecycleError
from engine.request_support import lease_owner, request_context
from state.leases import Lease, LeaseHolder, LeaseLost, WaitReport, renew_all

LEASE_PREFIX = "request:"
log = logging.getLogger(__name__)


def lease_name(request_id: str) -> str:
    return f"{LEASE_PREFIX}{request_id}"


class RequestLease:
    """The lease of one request held by this run, renewed in the background."""

    def __init__(self, request_id: str, lease: Lease) -> None:
        self.request_id = request_id
        self._lease = lease
        self._stop = threading.Event()
        self._lost: LeaseLost | None = None
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._lease.held and self._lost is None

    def acquire(self, wait: timedelta) -> None:
        """Take the lease, waiting up to ``wait`` for another run of the request (LeaseBusy)."""
        report = WaitReport(log.warning, job=f"request {self.request_id}", limit=wait)
        self._lease.acquire(wait=wait, poll=timedelta(seconds=2), on_wait=report)
        self._lost = None
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._renew_forever, name=f"lease-{self.request_id}", daemon=True
        )
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and give the lease up."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._lease.release()

    def check(self) -> None:
        """Between steps: LeaseLost when another run took the request over."""
        if self._lost is not None:
            raise self._lost
        if self._lease.held:
            self._lease.renew_if_due()

    def _renew_forever(self) -> None:
        every = self._lease.ttl.total_seconds() / 4
        while not self._stop.wait(every):
            try:
                self._lease.renew()
            except LeaseLost as lost:
                self._lost = lost
                return
            except LifecycleError as e:  # the database blinked: try again next round
                log.warning("renewing the lease of request %s: %s", self.request_id, e.message)


_held: dict[str, RequestLease] = {}


def new_lease(request_id: str, holder: str | None = None) -> RequestLease:
    """The request's lease, not yet taken (``holder``: a batch's shared holder token)."""
    settings = get_settings()
    lease = Lease(
        request_context().ledger.engine,
        lease_name(request_id),
        ttl=timedelta(seconds=settings.request_lease_seconds),
        owner=lease_owner(),
        job=f"request {request_id}",
        holder=holder,
    )
    return RequestLease(request_id, lease)


@contextmanager
def hold_request(request_id: str) -> Iterator[RequestLease]:
    """Run the body as the only run of ``request_id`` (waits for another, then LeaseBusy)."""
    held = new_lease(request_id)
    held.acquire(timedelta(seconds=get_settings().request_lease_wait_seconds))
    _held[request_id] = held
    try:
        yield held
    finally:
        _held.pop(request_id, None)
        held.release()


@contextmanager
def released_while_waiting(request_id: str) -> Iterator[None]:
    """Give the request's lease up for the body (a pause for a decision), then take it back."""
    held = _held.get(request_id)
    if held is None:
        yield
        return
    held.release()
    try:
        yield
    except Exception:
        held.acquire(timedelta(seconds=get_settings().request_lease_wait_seconds))
        raise
    # Not on BaseException: a suspended run (Prefect's Pause) ends its process here.
    held.acquire(timedelta(seconds=get_settings().request_lease_wait_seconds))


def check_lease(request_id: str) -> None:
    """LeaseLost when this run no longer holds the request (another run carries it on)."""
    held = _held.get(request_id)
    if held is not None:
        held.check()


def holder(request_id: str) -> LeaseHolder | None:
    """Who runs ``request_id`` now, if anyone (for the CLI's messages)."""
    from state.leases import current_holder

    return current_holder(request_context().ledger.engine, lease_name(request_id))


class _Renewer:
    """One background thread renewing many held leases (a batch's), a quarter-ttl apart."""

    def __init__(self, held: list[RequestLease]) -> None:
        self._held = held
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-batch", daemon=True)

    def __enter__(self) -> _Renewer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        every = timedelta(seconds=get_settings().request_lease_seconds).total_seconds() / 4
        while not self._stop.wait(every):
            live = [held for held in self._held if held._lost is None and held._lease.held]
            try:
                lost = renew_all([held._lease for held in live])
            except LifecycleError as e:  # the database blinked: try again next round
                log.warning("renewing the leases of %d requests: %s", len(live), e.message)
                continue
            for held in live:
                if held._lease in lost:
                    held._lost = LeaseLost(held._lease._lost_message())


@contextmanager
def hold_requests(request_ids: list[str]) -> Iterator[tuple[list[str], list[str]]]:
    """Hold the lease of every request that no other run holds, without waiting.

    Yields (held, busy): the requests this run may carry out, and those another run has
    now (they are left to it). One thread renews them all; ``check_lease`` works for each
    as in a single request's run.
    """
    taken: list[RequestLease] = []
    busy: list[str] = []
    holder = secrets.token_hex(16)  # one token for the batch: one UPDATE renews them all
    try:
        for request_id in request_ids:
            lease = new_lease(request_id, holder)
            if lease._lease.try_acquire() is None:
                taken.append(lease)
                _held[request_id] = lease
            else:
                busy.append(request_id)
        with _Renewer(taken):
            yield [lease.request_id for lease in taken], busy
    finally:
        for lease in taken:
            _held.pop(lease.request_id, None)
            try:
                lease._lease.release()
            except LifecycleError as e:  # it expires on its own
                log.warning("releasing the lease of request %s: %s", lease.request_id, e.message)
