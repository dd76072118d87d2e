"""Tasks of a batch of requests: one task run per step and store for the whole batch.

``prepare_batch`` readies every request (as a single run's first step does),
``locate_batch`` finds every request's data in one store with set-based statements (the
connector's ``BatchLocating``: one statement per table per chunk of subjects), recording
each request's findings exactly as a single request's locate does, and ``carry_out_batch``
takes each request on from there (plan, approval, execute, verify, complete) with the
single request's own steps run as plain functions (``tasks.lifecycle_task.plain_tasks``):
the records are the same, without a task run per request, store and step.
A request that fails is audited as it would be alone and blocks no other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from connectors.base import BatchLocating, Findings, Identities
from connectors.registry import supports
from core.errors import LifecycleError, TransientError
from engine.batch_outcome import BatchItem
from engine.request_support import (
    clean_errors,
    has_connector,
    request_context,
    shared_connectors,
)
from state.register import RequestStatus
from tasks.lifecycle_task import lifecycle_task, plain_tasks
from tasks.request_tasks import (
    failure_fields,
    prepare_request,
    record_located,
    summarize_request,
)

TRANSIENT_ATTEMPTS = 3
"""Attempts per request at a step that failed transiently (a lost connection)."""


@lifecycle_task("prepare-batch")
def prepare_batch(request_ids: list[str]) -> dict[str, str]:
    """Ready every request; returns the kind of each one that has work left.

    Requests already closed are left out (a rerun of the batch); one that cannot be
    prepared is left out too, and its error stays in its own record.
    """
    ready: dict[str, str] = {}
    with plain_tasks():
        for request_id in request_ids:
            try:
                kind, status = prepare_request(request_id)
            except LifecycleError:
                continue
            if not RequestStatus(status).terminal:
                ready[request_id] = kind
    return ready


@lifecycle_task("locate-batch")
def locate_batch(store: str, request_ids: list[str]) -> int:
    """Locate every request not yet located in ``store``, together; returns how many.

    Identities include those earlier stores derived for each request (the flow runs the
    stores in ``locate_levels`` order). A store whose connector cannot locate in batches
    is left to each request's own locate step.
    """
    with clean_errors(f"locating in store '{store}' for a batch"):
        ctx = request_context()
        if not has_connector(ctx.config.store(store).type):
            return 0
        position = ctx.position(store)
        todo = [r for r in request_ids if ctx.progress.store(r, store) is None]
        if not todo:
            return 0
        identities: list[Identities] = [ctx.identities(r, before=position) for r in todo]
        with ctx.connector(store) as connector:
            if not supports(connector, BatchLocating):
                return 0
            found: Sequence[Findings] = connector.locate_many(identities)
        for request_id, ids, findings in zip(todo, identities, found, strict=True):
            record_located(ctx, request_id, store, ids, findings)
        return len(todo)


@lifecycle_task("carry-out-batch")
def carry_out_batch(
    request_ids: list[str], carry_out: Callable[[str], None], lines: dict[str, int]
) -> list[BatchItem]:
    """Take each request on from where it stands; one item per request, in order.

    ``carry_out`` is the single request's orchestration (``flows.subject_request``), run
    with its steps as plain functions; each request is tried again after a transient error
    (every step is idempotent), up to ``TRANSIENT_ATTEMPTS`` times.
    """
    with shared_connectors():  # one connector per store for the whole batch
        return [_carry_one(r, carry_out, lines.get(r, 0)) for r in request_ids]


def _carry_one(request_id: str, carry_out: Callable[[str], None], line: int) -> BatchItem:
    """One request of the batch, tried again after a transient error; its item."""
    error: str | None = None
    for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
        try:
            with plain_tasks():
                carry_out(request_id)
            error = None
            break
        except TransientError as e:
            error = failure_fields(e)[1] or type(e).__name__
            if attempt == TRANSIENT_ATTEMPTS:
                break
        except LifecycleError as e:
            error = failure_fields(e)[1] or type(e).__name__
            break
    return _item(request_id, line, error)


def _item(request_id: str, line: int, error: str | None) -> BatchItem:
    outcome = summarize_request.fn(request_id)
    return BatchItem(
        line=line,
        request_id=request_id,
        kind=outcome.kind,
        status=outcome.status,
        deferred=sum(d.count for d in outcome.deferrals),
        exit_code=outcome.exit_code,
        error=error,
    )


def audited_item(request_id: str, line: int, note: str) -> BatchItem:
    """The item of a request this batch run did not carry out (``note`` says why)."""
    return _item(request_id, line, note or None)
