"""The cancel-request flow: end a data-subject request from the Prefect UI.

The deployment form takes the request id and a reason, never an identity. It does what
``lifecycle request cancel`` does (``tasks.cancellation``): the request becomes cancelled,
its identity destroyed, "request.cancelled" in the ledger (the reason as length and
digest), and the request's unfinished subject-request runs cancelled. A reason holding an
e-mail address or phone number (or a request id that is not one) is refused, and
overwritten in this run's parameters so Prefect does not keep it either.
"""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel, Field

from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from config.loader import load_config
from core.errors import LifecycleError
from flows.run_parameters import replace_parameters
from ops.intake.callback import notify_help_desk
from state.progress import RequestProgress
from state.register import RequestRegister
from state.register_model import check_request_id
from tasks.cancellation import cancel_flow_runs, cancel_request, check_reason, ledger_flow_runs

FLOW_ACTOR = "flow:cancel-request"
REFUSED = "(refused: see the flow run's error)"


class CancelOutcome(BaseModel):
    """What the cancellation did (ids and states only)."""

    request_id: str
    status: str
    identity_destroyed: bool
    flow_runs: list[dict[str, object]] = Field(default_factory=list)


@flow(name="cancel-request", persist_result=False, log_prints=False)
def cancel_request_flow(request_id: str, reason: str) -> CancelOutcome:
    """End an open or failed request: cancelled, identity destroyed, its flow runs cancelled.

    ``reason``: why (kept in the request register; no personal data, e-mail addresses and
    phone numbers are refused).
    """
    from prefect.runtime import flow_run

    own_run = flow_run.get_id()
    try:
        check_request_id(request_id)
    except LifecycleError:  # it may be anything pasted in the wrong field
        replace_parameters({"request_id": REFUSED, "reason": REFUSED}, what="the refused value")
        raise
    try:
        check_reason("reason", reason)
    except LifecycleError:
        replace_parameters({"request_id": request_id, "reason": REFUSED}, what="the refused reason")
        raise
    keys = keyring_from_settings()
    ledger = Ledger.open(keys=keys, actor=FLOW_ACTOR)
    policy = load_config().policy.requests
    register = RequestRegister(
        ledger, keys, deadline_days=policy.deadline_days, max_deadline_days=policy.max_deadline_days
    )
    record = cancel_request(
        register,
        RequestProgress(ledger.engine, keys),
        request_id,
        reason=reason,
        actor=FLOW_ACTOR,
    )
    known = ledger_flow_runs(ledger, request_id)
    runs = cancel_flow_runs(request_id, known, skip=own_run)
    notify_help_desk(record.id)  # its ticket, if any, hears it ended; never raises
    return CancelOutcome(
        request_id=record.id,
        status=record.status.value,
        identity_destroyed=record.identity_destroyed,
        flow_runs=[
            {"flow_run_id": r.flow_run_id, "state": r.state, "cancelled": r.cancelled}
            | ({"problem": r.problem} if r.problem else {})
            for r in runs
        ],
    )
