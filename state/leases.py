"""Leases in the audit database: one holder at a time for a named job (the retention sweep).

A lease is a row in ``leases``: a random holder token, who holds it (for messages), and
when it was acquired, last renewed and expires. Taking it is atomic on every backend:
an INSERT that fails on the primary key when the row exists, or an UPDATE whose WHERE
clause only matches an expired row (or the row of a holder seen to be dead), each in one
transaction; whoever's statement changes a row holds the lease. The holder renews it
between steps; a holder that crashes stops renewing and the lease expires, so the next
run takes over (at once when the dead holder ran on this host: its process is gone).

``fence`` runs inside other transactions of the audit database and refuses to let a
process that lost its lease (it stalled past expiry and someone took over) write
progress or ledger events: the lease row is locked (``FOR UPDATE``; SQLite serializes
writers anyway), so a takeover either commits before the write, which then fails, or
waits for it.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from core.engines import IMMEDIATE
from core.errors import TerminalError
from state.register_tables import database_errors
from state.sweep_tables import OWNER_LEN, leases

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _moment(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease, as recorded."""

    name: str
    holder: str
    owner: str
    host: str
    pid: int
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime

    def describe(self) -> str:
        """``held by OWNER since T (renewed T, expires T unless renewed)``."""
        return (
            f"held by {self.owner} since {_moment(self.acquired_at)} (last renewed "
            f"{_moment(self.renewed_at)}, expires {_moment(self.expires_at)} unless renewed)"
        )

    def gone(self, now: datetime) -> str | None:
        """Why the holder no longer counts (expired, or its process on this host is gone)."""
        if self.expires_at <= now:
            return "expired"
        if self.host == socket.gethostname() and not _alive(self.pid):
            return "holder process gone"
        return None


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one we may not signal counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # not ours to signal, or unknown: alive; the expiry still frees it
        return True
    return True


class LeaseBusy(TerminalError):
    """Someone else holds the lease (and kept holding it for as long as we could wait)."""

    def __init__(self, message: str, holder: LeaseHolder) -> None:
        super().__init__(message, lease=holder.name, owner=holder.owner)
        self.holder = holder


class LeaseLost(TerminalError):
    """This process no longer holds its lease: it expired and someone else took it."""


@dataclass(frozen=True)
class Takeover:
    """The holder a lease was taken from, and why (for the ledger)."""

    previous: LeaseHolder
    reason: str


class Lease:
    """One process's claim on the lease called ``name`` (not held until ``acquire``)."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        *,
        ttl: timedelta,
        owner: str,
        job: str | None = None,
        clock: Clock = utc_now,
        holder: str | None = None,
    ) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{IMMEDIATE: True})
        self.name = name
        self.job = job or name
        self.ttl = ttl
        self.holder = holder or secrets.token_hex(16)
        self.owner = owner[:OWNER_LEN]
        self.host = socket.gethostname()[:OWNER_LEN]
        self.pid = os.getpid()
        self._clock = clock
        self.held = False
        self.took_over: Takeover | None = None
        self.renewed = 0.0
        """``time.monotonic()`` of the last time this process took or renewed the lease."""

    def __repr__(self) -> str:
        return f"Lease({self.name!r}, owner={self.owner!r}, held={self.held})"

    # -- reading ------------------------------------------------------------------------

    def current(self) -> LeaseHolder | None:
        """Whoever holds the lease now (expired or not), or None."""
        return current_holder(self._engine, self.name)

    # -- taking -------------------------------------------------------------------------

    def try_acquire(self) -> LeaseHolder | None:
        """Take the lease if it is free, expired or its holder is gone; else who holds it.

        Returns None once held. Every path is one atomic statement, so two processes
        racing here cannot both succeed.
        """
        seen: LeaseHolder | None = None
        for _ in range(5):  # a lost race re-reads; a few rounds settle any interleaving
            seen = self.current()
            now = self._clock()
            if seen is None:
                if self._insert(now):
                    return None
                continue
            reason = seen.gone(now)
            if seen.holder == self.holder or reason is None:
                return None if seen.holder == self.holder else seen
            if self._take_over(seen, reason, now):
                self.took_over = Takeover(seen, reason)
                return None
        if seen is None:  # it kept vanishing between our reads and writes
            raise TerminalError(f"lease {self.name!r}: could not settle who holds it")
        return seen

    def _values(self, now: datetime) -> dict[str, object]:
        return {
            "holder": self.holder,
            "owner": self.owner,
            "host": self.host,
            "pid": self.pid,
            "acquired_at": now,
            "renewed_at": now,
            "expires_at": now + self.ttl,
        }

    def _insert(self, now: datetime) -> bool:
        with database_errors("lease acquire"):
            try:
                with self._writer.begin() as conn:
                    conn.execute(insert(leases).values(name=self.name, **self._values(now)))
            except SAIntegrityError:
                return False  # someone inserted first: read who
        self.held, self.renewed = True, time.monotonic()
        return True

    def _take_over(self, seen: LeaseHolder, reason: str, now: datetime) -> bool:
        c = leases.c
        # Expired: only while still expired (a late renewal wins). Holder gone: only while
        # that same holder is recorded (a dead process renews nothing).
        still = c.expires_at <= now if reason == "expired" else c.holder == seen.holder
        stmt = update(leases).where(c.name == self.name, still).values(**self._values(now))
        with database_errors("lease acquire"), self._writer.begin() as conn:
            taken = conn.execute(stmt).rowcount == 1
        self.held = taken
        self.renewed = time.monotonic()
        return taken

    def acquire(
        self,
        *,
        wait: timedelta = timedelta(0),
        poll: timedelta = timedelta(seconds=5),
        on_wait: Callable[[LeaseHolder, timedelta], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Take the lease, waiting up to ``wait`` for its holder to finish; else LeaseBusy.

        ``on_wait(holder, waited)`` is called before each pause (a progress message);
        ``sleep`` and the lease's clock are injectable, so tests wait without sleeping.
        """
        await_lease(
            self.try_acquire,
            job=self.job,
            wait=wait,
            poll=poll,
            on_wait=on_wait,
            clock=self._clock,
            sleep=sleep,
        )

    # -- holding ------------------------------------------------------------------------

    def renew(self) -> None:
        """Push the expiry ``ttl`` past now; LeaseLost if someone else took the lease."""
        now = self._clock()
        c = leases.c
        stmt = (
            update(leases)
            .where(c.name == self.name, c.holder == self.holder)
            .values(renewed_at=now, expires_at=now + self.ttl)
        )
        with database_errors("lease renew"), self._writer.begin() as conn:
            renewed = conn.execute(stmt).rowcount == 1
        if not renewed:
            self.held = False
            raise LeaseLost(self._lost_message())
        self.renewed = time.monotonic()

    def renew_if_due(self) -> None:
        """``renew`` unless this process renewed the lease less than a quarter of its ttl
        ago: it then holds it for three quarters of the ttl at least, as surely as right
        after a renewal (a holder that stalls past expiry learns at its next renewal)."""
        if time.monotonic() - self.renewed >= self.ttl.total_seconds() / 4:
            self.renew()

    def fence(self, conn: Connection) -> None:
        """Inside a write transaction: refuse (LeaseLost) unless this process holds the lease."""
        c = leases.c
        holder = conn.execute(
            select(c.holder).where(c.name == self.name).with_for_update()
        ).scalar_one_or_none()
        if holder != self.holder:
            self.held = False
            raise LeaseLost(self._lost_message())

    def release(self) -> None:
        """Give the lease up (nothing happens when someone else holds it by now)."""
        if not self.held:
            return
        c = leases.c
        stmt = delete(leases).where(c.name == self.name, c.holder == self.holder)
        with database_errors("lease release"), self._writer.begin() as conn:
            conn.execute(stmt)
        self.held = False

    def _lost_message(self) -> str:
        now = self.current()
        who = f"; it is now {now.describe()}" if now is not None else ""
        return (
            f"lease {self.name!r} was lost: it expired (not renewed within "
            f"{int(self.ttl.total_seconds())} s) and another run took it over{who}. "
            "This run stopped; the holder continues the work."
        )


def renew_all(held: list[Lease]) -> list[Lease]:
    """Renew many leases that share one holder token in one statement; those lost.

    A batch run holds a lease per request: one UPDATE renews them all, and only when it
    changes fewer rows than there are leases are the holders read to find which were lost.
    """
    if not held:
        return []
    holder, ttl, clock = held[0].holder, held[0].ttl, held[0]._clock
    if any(lease.holder != holder or lease.ttl != ttl for lease in held):
        raise ValueError("renew_all: the leases must share a holder token and a ttl")
    now, c = clock(), leases.c
    names = [lease.name for lease in held]
    lost: list[Lease] = []
    with database_errors("lease renew"), held[0]._writer.begin() as conn:
        for start in range(0, len(names), 500):  # within every driver's bound-value limit
            chunk = names[start : start + 500]
            stmt = (
                update(leases)
                .where(c.holder == holder, c.name.in_(chunk))
                .values(renewed_at=now, expires_at=now + ttl)
            )
            if conn.execute(stmt).rowcount == len(chunk):
                continue
            ours = set(
                conn.execute(select(c.name).where(c.holder == holder, c.name.in_(chunk))).scalars()
            )
            lost += [lease for lease in held[start : start + 500] if lease.name not in ours]
    renewed = time.monotonic()
    for lease in held:
        if lease in lost:
            lease.held = False
        else:
            lease.renewed = renewed
    return lost


def current_holder(engine: Engine, name: str) -> LeaseHolder | None:
    """The recorded holder of lease ``name`` (expired or not), or None."""
    with database_errors("lease read"), engine.connect() as conn:
        row = conn.execute(select(leases).where(leases.c.name == name)).one_or_none()
    if row is None:
        return None
    return LeaseHolder(
        name=row.name,
        holder=row.holder,
        owner=row.owner,
        host=row.host,
        pid=int(row.pid),
        acquired_at=row.acquired_at,
        renewed_at=row.renewed_at,
        expires_at=row.expires_at,
    )


def await_lease(
    probe: Callable[[], LeaseHolder | None],
    *,
    job: str,
    wait: timedelta,
    poll: timedelta = timedelta(seconds=5),
    on_wait: Callable[[LeaseHolder, timedelta], None] | None = None,
    clock: Clock = utc_now,
    sleep: Callable[[float], None] = time.sleep,
) -> timedelta:
    """Call ``probe`` until it finds no holder (returns how long that took), pausing
    ``poll`` between calls; LeaseBusy naming the holder once ``wait`` has passed."""
    started = clock()
    while True:
        holder = probe()
        waited = clock() - started
        if holder is None:
            return waited
        if waited >= wait:
            message = busy_message(holder, job, waited=waited if wait else None)
            raise LeaseBusy(message, holder)
        if on_wait is not None:
            on_wait(holder, waited)
        sleep(min(poll, wait - waited).total_seconds())


class WaitReport:
    """An ``on_wait`` that says (``say``) a progress line when the wait starts, when the
    holder changes, and then every ``every``, rather than at every poll."""

    def __init__(
        self,
        say: Callable[[str], None],
        *,
        job: str,
        limit: timedelta,
        every: timedelta = timedelta(minutes=1),
    ) -> None:
        self._say = say
        self._job = job
        self._limit = limit
        self._every = every
        self._last: tuple[str, timedelta] | None = None

    def __call__(self, holder: LeaseHolder, waited: timedelta) -> None:
        last = self._last
        if last is not None and last[0] == holder.holder and waited - last[1] < self._every:
            return
        self._last = (holder.holder, waited)
        self._say(
            f"waiting for the running {self._job} (waited {_span(waited)} of up to "
            f"{_span(self._limit)}): lease {holder.name!r} is {holder.describe()}"
        )


def busy_message(holder: LeaseHolder, job: str, *, waited: timedelta | None = None) -> str:
    """What to tell the second run: who holds the lease, since when, until when."""
    after = f"; still held after waiting {_span(waited)}" if waited is not None else ""
    return f"another {job} is running: lease {holder.name!r} is {holder.describe()}{after}"


def _span(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"
