"""The CLI's side of approval: sign a decision, take it in our register, hand it to the run.

``lifecycle request submit --resume ID --approve --reviewer NAME --signing-key FILE``
signs the decision over the request's current plans with the approver's private key and
takes it through the same checks and the same one-decision-per-plans record as the UI
(``engine.approval.take_decision``). If the request's flow run is paused waiting
for that decision (our register keeps its id), the CLI resumes that run with the signed
decision as its input and waits for it to finish: the run carries on once, and this
process executes nothing. Otherwise (no run waits, or the run is gone) the caller runs the
request here, as ``--resume`` always did.

A refused decision is recorded (``approval.refused``) and exits 2 when it failed a check
(not signed, another key, four-eyes), 1 when a decision stood already or the request had
finished (the race was lost: the message says who decided).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from cli.output import err_console, fail
from core.approver_keys import load_signing_key

HANDOVER_GRACE_SECONDS = 30.0
"""How long a waiting run may take to pick the decision up (a paused run polls every
10 s; a suspended one waits for the worker) before the CLI runs the request itself. Late
is safe: both take the request's lease (``engine.request_lease``), so whichever comes
second waits, then finds the work recorded and does nothing twice."""
POLL_SECONDS = 0.5
_UNDECIDED = ("received", "planned", "awaiting_approval")


def load_signer(ctx: Any, reviewer: str, signing_key: Path) -> Any:
    """The approver's signer for a pre-approval: checked before anything is registered."""
    from core.approver_keys import SigningKeyError
    from state.approvals import DecisionRefused, signer_for

    try:
        return signer_for(
            ctx.config.policy.requests.approval, reviewer, load_signing_key(signing_key)
        )
    except (DecisionRefused, SigningKeyError) as e:
        raise fail(f"approval refused: {e.message}", 2) from None


def decide(ctx: Any, request_id: str, reviewer: str, signing_key: Path) -> dict[str, Any]:
    """Sign and take the approval of ``request_id``; the run input that carries it.

    Exits (2 or 1, see the module) when the decision is refused; it is then recorded.
    """
    from core.approver_keys import SigningKeyError, sign_decision
    from engine.approval import take_decision
    from state.approvals import Attempt, DecisionRefused, current_scope

    try:
        key = load_signing_key(signing_key)
    except SigningKeyError as e:
        raise fail(f"approval refused: {e.message}", 2) from None
    record = ctx.register.get(request_id)
    entry = ctx.config.policy.requests.approval.approver(reviewer)
    signed = None
    if entry is not None:  # signed as the approver named; the policy's key must verify it
        scope = current_scope(record, ctx.progress)
        signed = sign_decision(
            key, request_id=request_id, scope=scope, decision="approved", approver=entry.name
        )
    attempt = Attempt("approved", "cli", reviewer, signed)
    try:
        take_decision(ctx, request_id, attempt)
    except DecisionRefused as refused:
        raise fail(f"approval refused: {refused.problem}", 1 if refused.taken else 2) from None
    assert signed is not None  # an unsigned attempt never passes take_decision
    err_console.print(
        f"request {request_id}: approved by {signed.approver} (signature verified)",
        highlight=False,
    )
    return {
        "decision": "approve",
        "reviewer": signed.approver,
        "signature": signed.token(),
        "note": "",
    }


def paused_run(ctx: Any, request_id: str) -> str | None:
    """The flow run paused waiting for the request's decision, if one is."""
    flow_run_id = ctx.progress.runs.waiting_run(request_id)
    if flow_run_id is None or ctx.register.get(request_id).status.value not in _UNDECIDED:
        return None
    state = _state(flow_run_id)
    return flow_run_id if state is not None and state.is_paused() else None


def _state(flow_run_id: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            return client.read_flow_run(UUID(flow_run_id)).state
    except ObjectNotFound:
        return None


def hand_over(ctx: Any, request_id: str, run_input: dict[str, Any]) -> str | None:
    """Resume the run that waits for ``request_id``'s decision; its id once it has picked
    the decision up, None when no live run waits (the caller runs the request itself)."""
    flow_run_id: str | None = ctx.progress.runs.waiting_run(request_id)
    if flow_run_id is None:
        return None
    from prefect.flow_runs import resume_flow_run

    deadline = time.monotonic() + HANDOVER_GRACE_SECONDS
    resumed = False
    while time.monotonic() < deadline:
        if _picked_up(ctx, request_id):
            return flow_run_id
        state = _state(flow_run_id)
        if state is None or state.is_final():
            return None  # crashed, failed, cancelled, or on another Prefect server
        if state.is_paused() and not resumed:
            # Refused while the run is still saving its form, or resumed by someone else
            # meanwhile: either way, look again (that run then finds our decision).
            with contextlib.suppress(Exception):
                resume_flow_run(UUID(flow_run_id), run_input=run_input)
                resumed = True
                err_console.print(
                    f"resumed flow run {flow_run_id} with the decision", highlight=False
                )
        time.sleep(POLL_SECONDS)
    err_console.print(
        f"flow run {flow_run_id} did not pick the decision up within "
        f"{HANDOVER_GRACE_SECONDS:.0f} s (its process is gone?); running the request here",
        highlight=False,
    )
    return None


def _picked_up(ctx: Any, request_id: str) -> bool:
    """Whether a run acted on the decision: the request moved past awaiting approval."""
    return str(ctx.register.get(request_id).status.value) not in _UNDECIDED


def wait_for_run(flow_run_id: str) -> str:
    """Wait until the flow run ends; its final state's name."""
    while True:
        state = _state(flow_run_id)
        if state is None:
            return "gone"
        if state.is_final():
            return str(state.name)
        time.sleep(POLL_SECONDS)
