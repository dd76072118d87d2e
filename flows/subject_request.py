"""The subject-request flow: access, rectification or erasure of one subject's data.

Two ways in. With ``request_id`` of a request registered beforehand (the CLI's way): the
identity never reaches Prefect. With ``start`` (the deployment form): the flow registers
the request first, then overwrites its own parameters through the Prefect API with the
request id alone, so Prefect's database does not keep the identity.

Steps, one task per store in inventory order: locate (derived identities feed later
stores) -> plan -> approval -> execute -> verify -> complete. Every task reads its inputs
from our own tables and records its progress there, so running the flow again with the
same request id (after a crash, or ``lifecycle request submit --resume``) continues where
it stopped. Tasks run one after another: no concurrent writes to Prefect's or our SQLite.
Two runs of one request never overlap: each holds the request's lease
(``tasks.request_lease``) except while paused for a decision; a second run waits.

Deferrals (legal holds) do not block completion: the request completes for everything
that could be done, and the deferrals are recorded in the ledger, returned in the
outcome and reported by the CLI with exit code 4. Holding the request open instead would
keep the subject's identity readable for as long as the hold lasts (possibly years).
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from prefect import flow
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run

from audit.events import EventStatus
from audit.leases import LeaseLost
from audit.register import RequestStatus
from config.loader import load_config
from core.errors import LifecycleError, TerminalError
from core.package import PassphraseRecipient, Recipient, X25519Recipient, parse_public_key
from tasks.access_tasks import verify_access_package, write_access_package
from tasks.approval_tasks import (
    ApprovalInput,
    check_approval,
    record_approval_gave_up,
    record_approval_timeout,
    record_review,
)
from tasks.erasure_tasks import execute_store, plan_store, verify_store
from tasks.intake import parse_changes, submit
from tasks.rectify_tasks import rectify_store, verify_rectified_store
from tasks.replan import PlanGrew
from tasks.request_lease import check_lease, hold_request, released_while_waiting
from tasks.request_models import NewRequest, RequestOutcome
from tasks.request_support import request_context
from tasks.request_tasks import (
    advance_request,
    close_rejected,
    complete_request,
    failure_fields,
    locate_store,
    prepare_request,
    publish_summary,
    record_failure,
    record_nothing_found,
)

__all__ = ["ApprovalInput", "NewRequest", "RequestOutcome", "subject_request"]

APPROVAL_TIMEOUT_SECONDS = 7 * 24 * 3600
APPROVAL_POLL_SECONDS = 10
MAX_REVIEWS = 3  # refused (four-eyes) decisions before the flow gives up
MAX_APPROVAL_ROUNDS = 5  # approvals one run asks for while the stores' rows keep changing


class RequestFailed(TerminalError):
    """A store failed or verification found data left; the ledger says which and what was done."""


class ApprovalNeeded(TerminalError):
    """The plans await a decision that no reviewer can give to this run (no Prefect server)."""


@flow(
    name="subject-request",
    persist_result=False,
    log_prints=False,
)
def subject_request(
    request_id: str | None = None, start: NewRequest | None = None
) -> RequestOutcome:
    """Carry out a data-subject request end to end; returns its outcome (counts only).

    Give ``request_id`` (registered beforehand, or to resume) or ``start`` (a new request
    from the deployment form), not both.
    """
    if start is not None:
        if request_id is not None:
            raise TerminalError("give a request id or a new request, not both")
        request_id = _register(start)
    elif request_id is None:
        raise TerminalError("give a request id (registered before) or a new request")
    with hold_request(request_id):  # one run of a request at a time
        _carry_out(request_id)
    return publish_summary(request_id)


def _carry_out(request_id: str) -> None:
    kind, status = prepare_request(request_id)
    current = RequestStatus(status)
    if current.terminal:
        if current is RequestStatus.COMPLETED:
            complete_request(request_id)  # records completion if a crash skipped it
        return
    stores = [store.name for store in load_config().inventory.stores]
    found = sum(_each(request_id, stores, locate_store))
    if not found:
        _nothing_found(request_id)
    elif kind == "erasure":
        _erase(request_id, stores)
    elif kind == "access":
        _access(request_id)
    else:
        _rectify(request_id, stores)


def _register(start: NewRequest) -> str:
    """Register the form's request, then remove the identity from Prefect's parameters.

    Done in the flow itself, not a task: a task would receive the identity as a parameter.
    """
    recipient: Recipient | None = None
    if start.recipient_public_key:
        recipient = X25519Recipient(parse_public_key(start.recipient_public_key))
    elif start.passphrase is not None:
        recipient = PassphraseRecipient(start.passphrase.get_secret_value().encode())
    ctx = request_context()
    try:
        record = submit(
            ctx,
            kind=start.kind,
            identity=start.identity(),
            requested_by=start.requested_by,
            changes=parse_changes(start.change_lines()) or None,
            recipient=recipient,
        )
    except LifecycleError:
        _replace_parameters(None)  # refused: the identity must not stay in Prefect either
        raise
    flow_run_id = _replace_parameters(record.id)
    if flow_run_id is not None:
        ctx.ledger.append(
            "request.parameters_replaced",
            status=EventStatus.SUCCEEDED,
            request_id=record.id,
            subject=record.subject,
            flow_run_id=flow_run_id,
            detail={"kept": ["request_id"]},
        )
    return record.id


def _replace_parameters(request_id: str | None) -> str | None:
    """Overwrite this flow run's parameters with the request id; the run id (None if no run)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    if run_id is None:
        return None
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(
                UUID(run_id), parameters={"request_id": request_id, "start": None}
            )
    except Exception as e:
        raise TerminalError(
            f"the identity could not be removed from the parameters of flow run {run_id} "
            f"({type(e).__name__}); delete that flow run"
            + (f", then run request {request_id} by its id" if request_id else ""),
            request_id=request_id,
        ) from None
    return run_id


def _failure_artifact(request_id: str, store: str | None, message: str | None) -> None:
    """Say in the UI which store failed, what had been done, and how to resume."""
    from prefect.artifacts import create_markdown_artifact

    try:
        stores = request_context().progress.stores(request_id)
    except LifecycleError:
        stores = []
    lines = [
        f"# Request {request_id} stopped",
        "",
        f"**Failing store:** {store or '(the request as a whole)'}",
        "",
        f"**Error:** {message or 'withheld (it may quote stored values); see the ledger'}",
        "",
        "| store | phase reached |",
        "|---|---|",
        *(f"| {s.store} | {s.phase.value} |" for s in stores),
        "",
        "Nothing is repeated on resume: every store continues from the phase shown. "
        f"**Resume** with `lifecycle request submit --resume {request_id}`, or run the "
        f"subject-request deployment with request_id `{request_id}`.",
    ]
    create_markdown_artifact(
        key="request-failure", markdown="\n".join(lines), description=f"Request {request_id} failed"
    )


def _each(request_id: str, stores: list[str], step: Callable[[str, str], int]) -> list[int]:
    """Run ``step`` per store in order; a failure is audited (store, what was done) and raised."""
    results = []
    for store in stores:
        check_lease(request_id)
        try:
            results.append(step(request_id, store))
        except (PlanGrew, LeaseLost):
            raise  # not a failure: awaits approval of the grown plan, or another run has it
        except LifecycleError as e:
            error, message = failure_fields(e)
            record_failure(request_id, store, error, message)
            _failure_artifact(request_id, store, message)
            raise
    return results


def _guarded(request_id: str, step: Callable[[str], int]) -> int:
    check_lease(request_id)
    try:
        return step(request_id)
    except LeaseLost:
        raise
    except LifecycleError as e:
        error, message = failure_fields(e)
        record_failure(request_id, None, error, message)
        _failure_artifact(request_id, None, message)
        raise


def _fail_if_left(request_id: str, left: int, what: str) -> None:
    if left:
        message = f"request {request_id}: {left} {what} after verification"
        record_failure(request_id, None, "RequestFailed", message)
        raise RequestFailed(message, request_id=request_id)


def _nothing_found(request_id: str) -> None:
    record_nothing_found(request_id)
    note = "nothing found in any store"
    for status in (
        RequestStatus.PLANNED,
        RequestStatus.APPROVED,
        RequestStatus.EXECUTING,
        RequestStatus.VERIFYING,
    ):
        advance_request(request_id, status.value, note)
    complete_request(request_id)


def _reviewer_reachable() -> bool:
    """Whether a paused run can be answered: a Prefect server is configured, not the
    temporary one a CLI run without ``PREFECT_API_URL`` starts (nobody could open it)."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def _approved(request_id: str, round_: int = 1) -> bool:
    """Wait for approval where policy requires it; False when rejected or timed out.

    ``round_`` > 1 asks again after a plan grew: new pause keys, since Prefect would
    otherwise hand back the answer given to the earlier pause of the same key.
    """
    advance_request(request_id, RequestStatus.PLANNED.value)
    check = check_approval(request_id)
    if check.state == "rejected":
        close_rejected(request_id, "rejected")  # finishes a rejection a crash cut short
    if check.state != "required":
        return check.state == "approved"
    if not _reviewer_reachable():
        raise ApprovalNeeded(
            f"request {request_id} awaits approval and no reviewer can answer this run (no "
            f"Prefect server): lifecycle request submit --resume {request_id} --approve "
            "--reviewer NAME --signing-key FILE, or set PREFECT_API_URL and approve in the UI",
            request_id=request_id,
        )
    prefix = "approval" if round_ == 1 else f"approval-r{round_}"
    for attempt in range(1, MAX_REVIEWS + 1):
        key = f"{prefix}-{attempt}"
        try:
            # Paused, this run gives the request up: a CLI approval may carry it on.
            with released_while_waiting(request_id):
                answer = pause_flow_run(
                    wait_for_input=ApprovalInput.with_initial_data(description=check.summary),
                    timeout=APPROVAL_TIMEOUT_SECONDS,
                    poll_interval=APPROVAL_POLL_SECONDS,
                    key=key,
                )
        except FlowPauseTimeout:
            return record_approval_timeout(request_id, APPROVAL_TIMEOUT_SECONDS) == "approved"
        _forget_answer(request_id, key)
        # The decision that stands: this answer's, or one taken first (the CLI takes it in
        # our register, then resumes this run); "finished" if another run carried it out.
        verdict = record_review(
            request_id, answer.decision, answer.reviewer, answer.note, answer.signature
        )
        if verdict != "refused":
            return verdict == "approved"
    record_approval_gave_up(request_id, MAX_REVIEWS)
    return False  # not reached: the task raises


def _forget_answer(request_id: str, pause_key: str) -> None:
    """Delete the answer Prefect keeps as this run's input (its note is free text): read
    once, it lives on in our register only."""
    from prefect.client.orchestration import get_client
    from prefect.input.run_input import keyset_from_base_key
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    if run_id is None:
        return
    response = keyset_from_base_key(f"paused-{pause_key}")["response"]
    try:
        with get_client(sync_client=True) as client:
            client.delete_flow_run_input(UUID(run_id), response)
    except Exception as e:
        raise TerminalError(
            f"the approval answer could not be deleted from flow run {run_id} "
            f"({type(e).__name__}); nothing was decided: run request {request_id} again",
            request_id=request_id,
        ) from None


def _erase(request_id: str, stores: list[str]) -> None:
    _each(request_id, stores, plan_store)
    if not _approve_and_execute(request_id, stores):
        return
    advance_request(request_id, RequestStatus.VERIFYING.value)
    left = sum(_each(request_id, stores, verify_store))
    _fail_if_left(request_id, left, "rows that should be gone remain")
    complete_request(request_id)


def _approve_and_execute(request_id: str, stores: list[str]) -> bool:
    """Approve, then execute every store; False when rejected or timed out.

    A store whose rows changed since approval is re-planned; if its plan grew, the
    request is back awaiting approval (``PlanGrew``) and is asked again, up to
    ``MAX_APPROVAL_ROUNDS`` times in one run.
    """
    for round_ in range(1, MAX_APPROVAL_ROUNDS + 1):
        if not _approved(request_id, round_):
            return False
        advance_request(request_id, RequestStatus.EXECUTING.value)
        try:
            _each(request_id, stores, execute_store)
        except PlanGrew:
            if round_ == MAX_APPROVAL_ROUNDS:
                raise
            continue
        return True
    return False  # not reached: the last round returns or raises


def _access(request_id: str) -> None:
    if not _approved(request_id):
        return
    advance_request(request_id, RequestStatus.EXECUTING.value)
    _guarded(request_id, write_access_package)
    advance_request(request_id, RequestStatus.VERIFYING.value)
    missing = _guarded(request_id, verify_access_package)
    _fail_if_left(request_id, missing, "found records are missing from the package")
    complete_request(request_id)


def _rectify(request_id: str, stores: list[str]) -> None:
    if not _approved(request_id):
        return
    advance_request(request_id, RequestStatus.EXECUTING.value)
    _each(request_id, stores, rectify_store)
    advance_request(request_id, RequestStatus.VERIFYING.value)
    lost = sum(_each(request_id, stores, verify_rectified_store))
    _fail_if_left(request_id, lost, "rectified rows are no longer found")
    complete_request(request_id)
