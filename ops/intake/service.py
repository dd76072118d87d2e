"""Registering an intake request exactly as the CLI does, then starting its flow run.

``Intake.register``: the ticket is checked, ``engine.intake.submit`` checks and registers
the request (the identity sealed in our register; "request.received" in the ledger), and
a flow run of ``subject-request/subject-request`` is created with the parameters
``{"request_id": ...}`` only, named after the request. In the transaction that registers
the request, the duplicate guards (``idempotency``) record the webhook delivery and claim
the ticket, and the ticket is stored as the request's external reference: all of it
commits together or not at all. So a delivery seen before raises ``RepeatedDelivery``
with the request it became (the app answers 409), and a ticket whose request of the same
kind is still open gets that request back (``already_registered``; the app answers 200),
before any check runs and again, race-free, at the commit. Once the request is
registered, a later failure does not undo it: the response says so with the request id,
and an operator starts its run (``lifecycle request submit --resume ID``); a retry of the
delivery is answered with that request, not registered again.

The request context (configuration, keys, ledger) is built once and rebuilt when the
inventory or policy file changes, so a long-running service follows edits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from audit.events import EventStatus
from core.errors import LifecycleError, TerminalError, TransientError
from core.package import PassphraseRecipient, Recipient, X25519Recipient, parse_public_key
from engine.request_support import RequestContext, request_context
from ops.intake import reference
from ops.intake.idempotency import (
    Delivery,
    Guard,
    RepeatedDelivery,
    TicketOpen,
    earlier_delivery,
    open_request_of_ticket,
    purge_expired,
)
from ops.intake.models import IntakeRefused, IntakeRequest, Problem, submit_problems
from state.register import RequestRecord

log = logging.getLogger("lifecycle.intake")

DEPLOYMENT = "subject-request/subject-request"
ACTOR = "service:intake"
StartRun = Callable[[str], str]
"""Creates the flow run of a request id; returns the flow run id."""


class IntakeResult(BaseModel):
    """What a caller gets back: ids and status, never an identity value."""

    request_id: str
    flow_run_id: str | None
    status: str
    problem: str | None = None
    already_registered: bool | None = None
    """True: the ticket's open request, returned instead of registering another."""


def start_flow_run(request_id: str) -> str:
    """A flow run of the subject-request deployment for ``request_id`` (its id only).

    Refused without ``PREFECT_API_URL``: Prefect would start a throwaway server of its own,
    and the run would go nowhere.
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise TerminalError("PREFECT_API_URL is not set: no Prefect server to run requests")
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        run = client.create_flow_run_from_deployment(
            deployment.id,
            parameters={"request_id": request_id},
            name=request_id,
            idempotency_key=f"intake-{request_id}",
            tags=["intake"],
        )
    return str(run.id)


def _recipient(req: IntakeRequest) -> Recipient | None:
    if req.recipient_public_key and req.passphrase is not None:
        raise IntakeRefused(
            [Problem("recipient_public_key", "give a public key or a passphrase, not both")]
        )
    if req.recipient_public_key:
        return X25519Recipient(parse_public_key(req.recipient_public_key))
    if req.passphrase is not None:
        return PassphraseRecipient(req.passphrase.get_secret_value().encode())
    return None


@dataclass
class Intake:
    """Registers requests; ``start_run`` is replaceable (benchmarks register without runs)."""

    start_run: StartRun = start_flow_run
    make_context: Callable[[], RequestContext] = request_context

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._context: RequestContext | None = None
        self._stamp: tuple[int, ...] = ()

    def context(self) -> RequestContext:
        """The shared request context, rebuilt when the configuration files change."""
        with self._lock:
            stamp = self._config_stamp()
            if self._context is None or stamp != self._stamp:
                self._context, self._stamp = self.make_context(), stamp
            return self._context

    def _config_stamp(self) -> tuple[int, ...]:
        from config.loader import INVENTORY_FILE, POLICY_FILE
        from config.settings import get_settings

        folder: Path = get_settings().config_dir
        stamp = []
        for name in (INVENTORY_FILE, POLICY_FILE):
            try:
                stamp.append((folder / name).stat().st_mtime_ns)
            except OSError:
                stamp.append(-1)
        return tuple(stamp)

    def register(self, req: IntakeRequest, delivery: Delivery | None = None) -> IntakeResult:
        """Check and register ``req``, then start its flow run; IntakeRefused if refused.

        ``delivery``: the webhook delivery ``req`` came in (RepeatedDelivery if it was
        accepted before). A ticket whose request of this kind is open returns that request
        (``already_registered``) and registers nothing.
        """
        from engine.intake import submit

        ctx = self.context()
        engine = ctx.ledger.engine
        try:
            ticket = None if req.ticket is None else reference.check_ticket(req.ticket)
            guard = Guard(kind=req.kind, delivery=delivery, ticket=ticket)
            if delivery is not None:
                purge_expired(engine)
                earlier = earlier_delivery(engine, delivery)
                if earlier is not None:
                    raise RepeatedDelivery(earlier)
            if ticket is not None:
                existing = open_request_of_ticket(engine, req.kind, ticket)
                if existing is not None:
                    return self._existing(ctx, existing)
            record = submit(
                ctx,
                kind=req.kind,
                identity=req.identity,
                requested_by=req.requested_by,
                changes=req.changes or None,
                recipient=_recipient(req),
                note=req.note,
                within=guard.claim,
            )
        except LifecycleError as e:
            if not _usage_error(e):
                raise
            raise IntakeRefused(submit_problems(e)) from None
        except RepeatedDelivery as e:  # lost to a concurrent copy at the commit
            if e.request_id is None and delivery is not None:
                raise RepeatedDelivery(earlier_delivery(engine, delivery)) from None
            raise
        except TicketOpen as e:  # lost to a concurrent request for the ticket
            found = e.request_id
            if found is None and ticket is not None:
                found = open_request_of_ticket(engine, req.kind, ticket)
            if found is None:  # closed in between: the ticket is free again
                raise TransientError(
                    "the ticket's request changed while registering; retry"
                ) from None
            return self._existing(ctx, found)
        flow_run_id, problem = self._start(ctx, record)
        return IntakeResult(
            request_id=record.id,
            flow_run_id=flow_run_id,
            status=record.status.value,
            problem=problem,
        )

    def _existing(self, ctx: RequestContext, request_id: str) -> IntakeResult:
        """The ticket's open request, returned instead of registering another."""
        record = ctx.register.get(request_id)
        return IntakeResult(
            request_id=record.id,
            flow_run_id=None,
            status=record.status.value,
            already_registered=True,
        )

    def _start(self, ctx: RequestContext, record: RequestRecord) -> tuple[str | None, str | None]:
        """The flow run's id, or None and why not (also in the ledger and the log)."""
        try:
            return self.start_run(record.id), None
        except Exception as e:  # the request stands; an operator starts its run
            log.error("request %s registered, its flow run not created (%s)", record.id, e)
            error = type(e).__name__
            reason = e.message if isinstance(e, LifecycleError) else error
        try:
            ctx.ledger.append(
                "request.intake_run_failed",
                status=EventStatus.FAILED,
                request_id=record.id,
                subject=record.subject,
                detail={"error": error},
                actor=ACTOR,
            )
        except LifecycleError as failed:
            log.error("request %s: the failure was not recorded (%s)", record.id, failed)
        return None, (
            f"registered, but its flow run could not be created ({reason}); "
            f"start it with: lifecycle request submit --resume {record.id}"
        )


def _usage_error(error: LifecycleError) -> bool:
    """Whether ``error`` refuses the input (422) rather than reports a failure of ours.

    ``submit`` raises TerminalError for both; configuration and database failures are
    told apart by class and by the register's "database ... during" wording.
    """
    from core.errors import ConfigError

    if not isinstance(error, TerminalError) or isinstance(error, ConfigError):
        return False
    return "database" not in error.message
