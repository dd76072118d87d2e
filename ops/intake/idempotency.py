"""The intake's duplicate guards, kept in the audit database so they survive a restart.

Two ways a help desk can send the same request twice, and what stops each:

- **The same delivery again** (a retry after a timeout, possibly across a restart of the
  service): ``intake_deliveries`` holds SHA-256 of each accepted delivery's signature
  (the signature is an HMAC keyed by the shared secret, so the digest says nothing about
  the body, which is never stored) with the request it became. The row is inserted in the
  transaction that registers the request (``RequestRegister.register``'s ``within``), so
  the request and the memory of its delivery commit together or not at all, and of two
  concurrent copies exactly one commits: the other loses on the primary key and is
  answered 409 with the winner's request id. A row expires after twice the signature
  tolerance (by then the delivery's timestamp is stale and refused anyway) and expired
  rows are deleted on later deliveries (``purge_expired``).
- **The same ticket again** (a new delivery, e.g. the ticket re-sent): ``intake_tickets``
  maps SHA-256 of (request kind, ticket id) to the request it became, claimed in the same
  transaction. While that request is open (any status but completed, rejected, closed,
  cancelled) a new request for the ticket and kind is not registered: the caller gets the
  existing request id. Once it is closed, the ticket may start a new request (the subject
  asked again, or a corrected request follows a rejected one) and the claim moves to it.
  A different kind on the same ticket is a different request.

Crash safety: the guards, the request's rows and its external reference commit in one
transaction. A crash before the commit leaves nothing, so the retry registers; after it,
the retry is answered with the registered request (its flow run, if not created, is
started by an operator: ``lifecycle request submit --resume ID``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, and_, delete, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ops.intake.reference import store_reference
from state.register_model import TERMINAL
from state.register_tables import database_errors, intake_deliveries, intake_tickets, requests

log = logging.getLogger("lifecycle.intake")

_CLOSED = sorted(s.value for s in TERMINAL)


class RepeatedDelivery(Exception):
    """A delivery accepted before; ``request_id`` is the request it became (None: unknown)."""

    def __init__(self, request_id: str | None = None) -> None:
        super().__init__("this delivery was received before")
        self.request_id = request_id


class TicketOpen(Exception):
    """The ticket and kind already have an open request (``request_id``; None: unknown)."""

    def __init__(self, request_id: str | None = None) -> None:
        super().__init__("this ticket already has an open request of this kind")
        self.request_id = request_id


def delivery_digest(signature: str) -> str:
    """SHA-256 (hex) of a verified delivery's signature: what identifies the delivery."""
    return hashlib.sha256(signature.encode("ascii")).hexdigest()


def ticket_key(kind: str, ticket: str) -> str:
    """SHA-256 (hex) of the request kind and ticket id (exact, whatever the collation)."""
    return hashlib.sha256(f"{kind}\n{ticket}".encode()).hexdigest()


@dataclass(frozen=True)
class Delivery:
    """A verified webhook delivery: its digest and until when it is remembered."""

    digest: str
    expires_at: datetime

    @classmethod
    def of(cls, signature: str, tolerance: float, now: datetime | None = None) -> Delivery:
        """The delivery signed by ``signature``, remembered for twice ``tolerance``.

        Its timestamp was within ``tolerance`` of now, so twice that from now it is stale
        and ``signing.verify`` refuses it: the row is no longer needed.
        """
        current = datetime.now(UTC) if now is None else now
        return cls(delivery_digest(signature), current + timedelta(seconds=2 * tolerance))


@dataclass(frozen=True)
class Guard:
    """What a registration claims in its own transaction: its delivery and its ticket."""

    kind: str
    delivery: Delivery | None = None
    ticket: str | None = None

    def claim(self, conn: Connection, request_id: str) -> None:
        """Record the delivery and the ticket for ``request_id``, in ``conn``'s transaction.

        RepeatedDelivery or TicketOpen (the registration is then undone) when another
        transaction holds either; the ticket is stored as the request's external reference.
        """
        now = datetime.now(UTC)
        if self.delivery is not None:
            row = {
                "digest": self.delivery.digest,
                "request_id": request_id,
                "expires_at": self.delivery.expires_at,
            }
            try:
                conn.execute(insert(intake_deliveries).values(**row))
            except IntegrityError:
                raise RepeatedDelivery from None
        if self.ticket is None:
            return
        key = ticket_key(self.kind, self.ticket)
        claimed = conn.execute(
            select(intake_tickets.c.request_id, requests.c.status)
            .select_from(intake_tickets)
            .outerjoin(requests, requests.c.id == intake_tickets.c.request_id)
            .where(intake_tickets.c.ticket_key == key)
        ).first()
        if claimed is not None:
            if claimed.status is not None and claimed.status not in _CLOSED:
                raise TicketOpen(claimed.request_id)
            # Its request is closed (or gone): the ticket may start a new one. Deleting by
            # the old holder only, so of two takers one inserts and the other conflicts.
            conn.execute(
                delete(intake_tickets).where(
                    intake_tickets.c.ticket_key == key,
                    intake_tickets.c.request_id == claimed.request_id,
                )
            )
        try:
            conn.execute(
                insert(intake_tickets).values(ticket_key=key, request_id=request_id, claimed_at=now)
            )
        except IntegrityError:
            raise TicketOpen from None
        store_reference(conn, request_id, self.ticket)


def earlier_delivery(engine: Engine, delivery: Delivery) -> str | None:
    """The request id an earlier copy of ``delivery`` became, or None if it is new."""
    query = select(intake_deliveries.c.request_id).where(
        intake_deliveries.c.digest == delivery.digest
    )
    with database_errors("delivery check"), engine.connect() as conn:
        found = conn.execute(query).scalar_one_or_none()
    return None if found is None else str(found)


def open_request_of_ticket(engine: Engine, kind: str, ticket: str) -> str | None:
    """The open request the ticket and kind became, or None (none, or it is closed)."""
    query = (
        select(requests.c.id)
        .select_from(intake_tickets)
        .join(
            requests,
            and_(
                requests.c.id == intake_tickets.c.request_id,
                requests.c.status.not_in(_CLOSED),
            ),
        )
        .where(intake_tickets.c.ticket_key == ticket_key(kind, ticket))
    )
    with database_errors("ticket check"), engine.connect() as conn:
        found = conn.execute(query).scalar_one_or_none()
    return None if found is None else str(found)


def purge_expired(engine: Engine, now: datetime | None = None) -> int:
    """Delete the deliveries past their expiry; how many. Best effort: failures are logged.

    A transaction of its own, so the registering transactions never lock a range of
    expiry times (MariaDB's gap locks) and a failure here never refuses a delivery.
    """
    current = datetime.now(UTC) if now is None else now
    try:
        with engine.begin() as conn:
            done = conn.execute(
                delete(intake_deliveries).where(intake_deliveries.c.expires_at < current)
            )
    except SQLAlchemyError as e:
        log.warning("expired webhook deliveries not purged (%s)", type(e).__name__)
        return 0
    return max(done.rowcount, 0)
