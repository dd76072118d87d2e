"""One retention sweep at a time: the ``retention-sweep`` lease (``state.leases``).

A real sweep takes the lease before it plans (``acquire_lease``), waiting a bounded time
for a running sweep when asked to; ``SweepContext`` renews it at each step and releases
it when it closes. A lease taken over from a holder that expired or whose process died is
recorded in the ledger, and the sweep that holder left unfinished is resumed next
(``sweep_runner.plan_sweep``). Prefect's deployment concurrency limit (``prefect.yaml``)
keeps deployment runs apart too; the lease also covers ``lifecycle sweep`` and any
process outside Prefect.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from audit.events import EventStatus
from config.settings import get_settings
from engine.events import ledger_event
from engine.request_support import lease_owner
from engine.sweep_runner import SWEEP_ACTOR, SweepContext
from state.leases import Clock, Lease, LeaseHolder, utc_now
from state.sweeps import SWEEP_LEASE


def sweep_lease(ctx: SweepContext, *, clock: Clock = utc_now) -> Lease:
    """The sweep lease for this process (not held yet), with the configured expiry."""
    return Lease(
        ctx.ledger.engine,
        SWEEP_LEASE,
        ttl=timedelta(seconds=get_settings().sweep_lease_seconds),
        owner=lease_owner(),
        job="retention sweep",
        clock=clock,
    )


def acquire_lease(
    ctx: SweepContext,
    *,
    wait: timedelta,
    on_wait: Callable[[LeaseHolder, timedelta], None] | None = None,
    lease: Lease | None = None,
) -> Lease:
    """Take the sweep lease (waiting up to ``wait``, then LeaseBusy) and work under it.

    Called again (a retried task), it keeps the lease the context already holds.
    """
    lease = lease or ctx.lease or sweep_lease(ctx)
    lease.acquire(wait=wait, on_wait=on_wait)
    if ctx.lease is not lease:
        ctx.hold(lease)
    if lease.took_over is not None:
        previous = lease.took_over.previous
        ctx.append(
            [
                ledger_event(
                    "sweep.lease_taken_over",
                    EventStatus.SUCCEEDED,
                    None,  # which sweep resumes is decided later, when it plans
                    actor=SWEEP_ACTOR,
                    # Times and pid only: an owner may name an operator (LIFECYCLE_ACTOR).
                    detail={
                        "lease": lease.name,
                        "reason": lease.took_over.reason,
                        "previous_pid": previous.pid,
                        "previous_acquired_at": previous.acquired_at.isoformat(),
                        "previous_renewed_at": previous.renewed_at.isoformat(),
                        "previous_expires_at": previous.expires_at.isoformat(),
                    },
                )
            ]
        )
        lease.took_over = None  # recorded
    return lease
