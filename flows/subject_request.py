"""The subject-request flow: access, rectification or erasure of one subject's data.

The flow takes the id of a request registered beforehand (``lifecycle request submit``,
the intake service): the identity is sealed in our register and never reaches Prefect,
in no parameter, run input, artifact or log. Runs are named after the request id.

Steps, one task per store: locate (derived identities feed later stores) -> plan ->
approval -> execute -> verify -> complete. Every task reads its inputs from our own tables
and records its progress there, so running the flow again with the same request id (after
a crash, or ``lifecycle request submit --resume``) continues where it stopped.
Within a step, stores run concurrently (``flows.store_steps``), at most
``LIFECYCLE_STORE_CONCURRENCY`` at once (1: one after another), so a request waits for its
slowest processor rather than for each in turn. Locate runs in levels: a store searched
by an identity that an earlier store derives runs after that store. Concurrent tasks are
safe to write: ledger appends serialize on the chain head (``BEGIN IMMEDIATE`` on SQLite,
``FOR UPDATE`` elsewhere) and every task opens its own context and connections. A failed
store stops the step from starting more stores; every store that failed is audited, and
the first in inventory order is raised.
Two runs of one request never overlap: each holds the request's lease
(``engine.request_lease``) except while waiting for a decision; a second run waits.
A run of the deployment waiting for approval suspends and frees its process
(``flows.approval_wait``); the worker runs it again once a reviewer answers. A store whose
work an operator does by hand (a manual processor) is waited for the same way
(``flows.confirmation_wait``): the operator confirms with the provider's reference, or
declines, and the store's intents become its audited batches or are discarded.

Deferrals (legal holds) do not block completion: the request completes for everything
that could be done, and the deferrals are recorded in the ledger, returned in the
outcome and reported by the CLI with exit code 4. Holding the request open instead would
keep the subject's identity readable for as long as the hold lasts (possibly years).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from prefect import flow

from config.settings import get_settings
from connectors.base import AwaitingConfirmation
from core.errors import LifecycleError, TerminalError
from engine.confirmation import failure_message
from engine.replan import PlanGrew
from engine.request_lease import check_lease, hold_request
from engine.request_models import RequestOutcome
from engine.request_support import current_config, request_context
from flows import approval_wait, confirmation_wait
from flows.approval_wait import forget_answer, pause_key, ui_refusals, wait_for_decision
from flows.confirmation_wait import forget_confirmation, wait_for_confirmation
from flows.run_parameters import REMOVED, replace_parameters
from flows.store_steps import StoreOutcome, locate_levels, run_stores
from ops.intake.callback import notify_help_desk
from state.leases import LeaseLost
from state.register import RequestStatus
from tasks.access_tasks import verify_access_package, write_access_package
from tasks.approval_tasks import (
    ApprovalInput,
    check_approval,
    record_approval_gave_up,
    record_approval_timeout,
    record_review,
)
from tasks.confirmation_tasks import (
    ask_confirmation,
    record_confirmation,
    record_confirmation_gave_up,
)
from tasks.erasure_tasks import execute_store, plan_store, verify_store
from tasks.lifecycle_task import in_plain_tasks
from tasks.rectify_tasks import rectify_store, verify_rectified_store
from tasks.register_artifact import publish_request_register
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

__all__ = ["ApprovalInput", "RequestOutcome", "subject_request"]

REQUEST_ID = re.compile(r"req_[0-9a-f]{16}")

MAX_REVIEWS = 3  # refused (four-eyes) decisions before the flow gives up
MAX_APPROVAL_ROUNDS = 5  # approvals one run asks for while the stores' rows keep changing


class RequestFailed(TerminalError):
    """A store failed or verification found data left; the ledger says which and what was done."""


class ApprovalNeeded(TerminalError):
    """The plans await a decision that no reviewer can give to this run (no Prefect server)."""


class ConfirmationNeeded(TerminalError):
    """A store's manual work awaits an operator's confirmation, and no form of this run can
    be answered (no Prefect server): confirm from the CLI, then resume."""


def _run_name() -> str:
    """The request id, or a placeholder when the value given is no request id (it might
    be an identity typed into the field: a run name is shown everywhere)."""
    from prefect.runtime import flow_run

    given = str(flow_run.parameters.get("request_id", ""))
    return given if REQUEST_ID.fullmatch(given) else "invalid-request-id"


@flow(
    name="subject-request",
    flow_run_name=_run_name,  # a request id typed into the Runs search finds it
    persist_result=False,
    log_prints=False,
)
def subject_request(request_id: str) -> RequestOutcome:
    """Carry out a data-subject request end to end; returns its outcome (counts only).

    ``request_id`` is a request registered beforehand (``lifecycle request submit``, the
    intake service): the identity never reaches Prefect. A rerun continues where it stopped.
    """
    if not REQUEST_ID.fullmatch(request_id or ""):
        # An identity typed into the field must not stay in Prefect.
        replace_parameters({"request_id": REMOVED}, what="the value given as request id")
        raise TerminalError("give the id of a registered request (req_ and 16 hex digits)")
    try:
        with hold_request(request_id):  # one run of a request at a time
            _carry_out(request_id)
    finally:
        notify_help_desk(request_id)  # final state + ticket only, once per state; never raises
    publish_request_register()  # the operators' register artifact; logs, never fails the run
    return publish_summary(request_id)


def carry_out(request_id: str) -> None:
    """One request of a batch (``flows.subject_batch``): its steps from where it stands,
    under the lease the batch holds; the help desk hears of its final state."""
    try:
        _carry_out(request_id)
    finally:
        notify_help_desk(request_id)


def _carry_out(request_id: str) -> None:
    kind, status = prepare_request(request_id)
    current = RequestStatus(status)
    if current.terminal:
        if current is RequestStatus.COMPLETED:
            complete_request(request_id)  # records completion if a crash skipped it
        return
    inventory = current_config().inventory
    stores = [store.name for store in inventory.stores]
    found = sum(_each(request_id, stores, locate_store, levels=locate_levels(inventory, stores)))
    if not found:
        _nothing_found(request_id)
    elif kind == "erasure":
        _erase(request_id, stores)
    elif kind == "access":
        _access(request_id)
    else:
        _rectify(request_id, stores)


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


_NOT_FAILURES = (PlanGrew, LeaseLost, AwaitingConfirmation)
"""Not failures: awaits a decision or an operator, or another run has the request."""


def _each(
    request_id: str,
    stores: list[str],
    step: Callable[[str, str], int],
    *,
    levels: list[list[str]] | None = None,
) -> list[int]:
    """Run ``step`` for every store; results in inventory order. A failure is audited
    (store, what was done) and raised.

    Stores run concurrently (``flows.store_steps``), level by level when ``levels``
    groups them (locate), all together otherwise; the lease is checked as each store
    starts.
    """
    limit = get_settings().store_concurrency
    results: dict[str, int] = {}
    for level in levels if levels is not None else [stores]:
        outcomes = run_stores(level, partial(_store_step, request_id, step), limit)
        _raise_first(request_id, outcomes)
        results.update((o.store, o.result) for o in outcomes if o.result is not None)
    return [results[store] for store in stores]


def _store_step(request_id: str, step: Callable[[str, str], int], store: str) -> int:
    check_lease(request_id)
    return step(request_id, store)


def _raise_first(request_id: str, outcomes: list[StoreOutcome]) -> None:
    """Audit every store that failed, then raise what ends the step (inventory order).

    A lost lease comes first and is not audited: another run has the request and will
    meet any failure itself. Then failures (audited, each with its store) and unexpected
    errors; a failure outranks a grown plan, since asking a reviewer again while a store
    is failing helps nobody (the grown plan waits, recorded, for the rerun's approval).
    Last, a grown plan (the flow asks again), then a store awaiting an operator.
    """
    errors = [o.error for o in outcomes if o.error is not None]
    if not errors:
        return
    for error in errors:
        if isinstance(error, LeaseLost) or not isinstance(error, Exception):
            raise error  # LeaseLost, or KeyboardInterrupt, SystemExit, Prefect's signals
    failed = [
        (o.store, o.error)
        for o in outcomes
        if isinstance(o.error, LifecycleError) and not isinstance(o.error, _NOT_FAILURES)
    ]
    for store, error in failed:
        name, message = failure_fields(error)
        record_failure(request_id, store, name, message)
    if failed:
        first_message = failure_fields(failed[0][1])[1]
        _failure_artifact(request_id, ", ".join(store for store, _ in failed), first_message)
    raise next(
        (e for e in errors if not isinstance(e, _NOT_FAILURES)),
        next((e for e in errors if isinstance(e, PlanGrew)), errors[0]),
    )


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
    temporary one a CLI run without ``PREFECT_API_URL`` starts (nobody could open it).
    A batch's requests never wait: a waiting request would hold up the whole batch."""
    from prefect.settings import PREFECT_API_URL

    from ops.api_target import uses_local_api

    if in_plain_tasks():
        return False
    # Nor the local API commands share (ops.api_target): no worker or watched UI there.
    return bool(PREFECT_API_URL.value()) and not uses_local_api()


def _approved(request_id: str, kind: str) -> bool:
    """Wait for approval where policy requires it; False when rejected or timed out.

    Each question has its own pause key (``flows.approval_wait``): a rerun after a suspend
    asks the same one and gets its answer; a grown plan or a refused answer asks anew.
    """
    advance_request(request_id, RequestStatus.PLANNED.value)
    check = check_approval(request_id, approval_wait.APPROVAL_TIMEOUT_SECONDS)
    if check.state == "rejected":
        close_rejected(request_id, "rejected")  # finishes a rejection a crash cut short
    if check.state != "required":
        return check.state == "approved"
    if in_plain_tasks():
        raise ApprovalNeeded(
            f"request {request_id} awaits approval: approve it alone (lifecycle request "
            f"submit --resume {request_id} --approve ...) or with the other waiting "
            "requests of its batch (lifecycle request submit --resume-batch BATCH --approve "
            "...)",
            request_id=request_id,
        )
    if not _reviewer_reachable():
        raise ApprovalNeeded(
            f"request {request_id} awaits approval and no reviewer can answer this run (no "
            f"Prefect server): lifecycle request submit --resume {request_id} --approve "
            "--reviewer NAME --signing-key FILE, or set PREFECT_API_URL and approve in the UI",
            request_id=request_id,
        )
    while (refused := ui_refusals(request_id)) < MAX_REVIEWS:
        key = pause_key(request_id)
        answer = wait_for_decision(request_id, kind, check.summary, key)
        if answer == "timed out":
            waited = approval_wait.APPROVAL_TIMEOUT_SECONDS
            return record_approval_timeout(request_id, waited) == "approved"
        # The decision that stands: this answer's, or one taken first (the CLI takes it in
        # our register, then resumes this run); "finished" if another run carried it out.
        verdict = record_review(
            request_id, answer.decision, answer.reviewer, answer.note, answer.signature
        )
        forget_answer(request_id, key)  # recorded first: a crash before this loses nothing
        if verdict != "refused":
            return verdict == "approved"
    record_approval_gave_up(request_id, refused)
    return False  # not reached: the task raises


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
        if not _approved(request_id, "erasure"):
            return False
        advance_request(request_id, RequestStatus.EXECUTING.value)
        try:
            _each_confirmed(request_id, stores, execute_store)
        except PlanGrew:
            if round_ == MAX_APPROVAL_ROUNDS:
                raise
            continue
        return True
    return False  # not reached: the last round returns or raises


def _access(request_id: str) -> None:
    if not _approved(request_id, "access"):
        return
    advance_request(request_id, RequestStatus.EXECUTING.value)
    _guarded(request_id, write_access_package)
    advance_request(request_id, RequestStatus.VERIFYING.value)
    missing = _guarded(request_id, verify_access_package)
    _fail_if_left(request_id, missing, "found records are missing from the package")
    complete_request(request_id)


def _rectify(request_id: str, stores: list[str]) -> None:
    if not _approved(request_id, "rectification"):
        return
    advance_request(request_id, RequestStatus.EXECUTING.value)
    _each_confirmed(request_id, stores, rectify_store)
    advance_request(request_id, RequestStatus.VERIFYING.value)
    lost = sum(_each(request_id, stores, verify_rectified_store))
    _fail_if_left(request_id, lost, "rectified rows are no longer found")
    complete_request(request_id)


def _each_confirmed(
    request_id: str, stores: list[str], step: Callable[[str, str], int]
) -> list[int]:
    """``_each``, asking an operator whenever a store's work awaits one (a manual
    processor), then running the step again: a confirmed store is executed and audited,
    so the step finds it done and the remaining stores carry on."""
    for _ in range(len(stores) + 1):
        try:
            return _each(request_id, stores, step)
        except AwaitingConfirmation as awaiting:
            _confirmed_by_operator(request_id, awaiting)
    raise TerminalError(
        f"request {request_id}: its stores still await an operator after every answer",
        request_id=request_id,
    )


def _confirmed_by_operator(request_id: str, awaiting: AwaitingConfirmation) -> None:
    """Ask the operator about ``awaiting``'s store until an answer stands: returns once it
    is confirmed (recorded, its batches audited); RequestFailed when declined or unanswered.

    The question is the store's open intents (our tables): a rerun after Resume asks the
    same one and gets the answer; an answer the CLI recorded first stands.
    """
    store = awaiting.store
    while True:
        timeout = confirmation_wait.CONFIRMATION_TIMEOUT_SECONDS
        question = ask_confirmation(request_id, store, awaiting.instructions, timeout)
        if question is None:
            return  # answered meanwhile: the step runs again and finds the store done
        if question.refused >= MAX_REVIEWS:
            record_confirmation_gave_up(request_id, store, question.refused)
        if not _reviewer_reachable():
            raise ConfirmationNeeded(
                f"request {request_id}: store '{store}' awaits an operator's confirmation "
                f"of the {question.action} ({question.items} item(s)) and no one can answer "
                f"this run (no Prefect server): lifecycle request confirm {request_id} "
                f"--store {store} --reference REF --reviewer NAME (or --decline), then "
                f"lifecycle request submit --resume {request_id}; or set PREFECT_API_URL "
                "and answer in the UI",
                request_id=request_id,
            )
        answer = wait_for_confirmation(request_id, question)
        given = None if answer == "timed out" else answer
        outcome = record_confirmation(request_id, store, question.row, given)
        if given is not None:
            forget_confirmation(request_id, question.key)  # recorded first: nothing lost
        if outcome == "confirmed":
            return
        if outcome != "refused":
            message = failure_message(request_id, store, question.action, outcome)
            record_failure(request_id, store, "ConfirmationDeclined", message)
            _failure_artifact(request_id, store, message)
            raise RequestFailed(message, request_id=request_id)
