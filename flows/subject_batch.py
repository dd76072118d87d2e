"""The subject-batch flow: many registered requests carried out together in one run.

The flow takes the id of a batch registered beforehand (``lifecycle request submit
--batch FILE``): each line of the file became its own request (register entry, deadline,
sealed identity), so this run, like a single request's, never sees an identity.

Per chunk of ``CHUNK`` requests: take every request's lease (one left to another run that
holds it), prepare them, locate them store by store with set-based statements (one task
run per store, ``locate_levels`` order, stores of a level together), then carry each
request on exactly as ``subject_request`` would (plan, approval, execute, verify,
complete), its steps running as plain functions inside one task run. Every request keeps
its own records and ledger trail, so a rerun of the batch (or ``--resume`` of one
request) continues each where it stopped.

Approval: a request that needs it and was not pre-approved is left awaiting approval;
the batch run does not wait. Approve one request (``lifecycle request submit --resume ID
--approve ...``) or every waiting request of the batch (``--resume-batch BATCH --approve
...``), each decision recorded per request.
"""

from __future__ import annotations

import logging
import re
from functools import partial

from prefect import flow

from config.settings import get_settings
from core.errors import LifecycleError, TerminalError
from engine.batch_outcome import BatchItem, BatchOutcome
from engine.request_lease import hold_requests
from engine.request_support import current_config, request_context
from flows.store_steps import locate_levels, run_stores
from flows.subject_request import carry_out
from state.batches import BATCH_PREFIX, RequestBatches, is_batch_id
from tasks.batch_tasks import audited_item, carry_out_batch, locate_batch, prepare_batch
from tasks.register_artifact import publish_request_register

log = logging.getLogger("lifecycle.batch")

CHUNK = 500
"""Requests located together and held at once; bounds statement sizes and lease renewals."""

BATCH_ID = re.compile(re.escape(BATCH_PREFIX) + r"[0-9a-f]{16}")


def _run_name() -> str:
    from prefect.runtime import flow_run

    given = str(flow_run.parameters.get("batch_id", ""))
    return given if BATCH_ID.fullmatch(given) else "invalid-batch-id"


@flow(name="subject-batch", flow_run_name=_run_name, persist_result=False, log_prints=False)
def subject_batch(batch_id: str) -> BatchOutcome:
    """Carry out every request of a registered batch; returns one line per request.

    ``batch_id`` is a batch registered beforehand (``lifecycle request submit --batch``):
    no identity reaches Prefect. A rerun continues each request where it stopped.
    """
    if not is_batch_id(batch_id or ""):
        raise TerminalError("give the id of a registered batch (bat_ and 16 hex digits)")
    batches = RequestBatches(request_context().ledger.engine)
    record = batches.get(batch_id)
    members = batches.members(batch_id)
    lines = {m.request_id: m.line for m in members}
    outcome = BatchOutcome(batch_id=batch_id, refused_lines=record.rejected)
    ids = [m.request_id for m in members]
    for start in range(0, len(ids), CHUNK):
        outcome.items += _chunk(ids[start : start + CHUNK], lines)
    outcome.items.sort(key=lambda item: item.line)
    publish_request_register()  # the operators' register artifact; logs, never fails the run
    _publish(outcome)
    return outcome


def _chunk(request_ids: list[str], lines: dict[str, int]) -> list[BatchItem]:
    with hold_requests(request_ids) as (held, busy):
        items = [audited_item(r, lines[r], "another run carries it out now") for r in busy]
        ready = list(prepare_batch(held))
        _locate(ready)
        items += carry_out_batch(ready, carry_out, lines)
        done = {item.request_id for item in items}
        items += [audited_item(r, lines[r], "") for r in held if r not in done]  # closed before
    return items


def _locate(request_ids: list[str]) -> None:
    """Locate the requests store by store, set-based, where the stores can.

    A store that fails here stops the batch locate (later stores may need the identities
    it derives): each request's own steps then locate what is left, one request at a
    time, so a failure is audited for the requests it concerns and blocks no other.
    """
    if not request_ids:
        return
    inventory = current_config().inventory
    stores = [store.name for store in inventory.stores]
    for level in locate_levels(inventory, stores):
        step = partial(_locate_store, request_ids)
        for result in run_stores(level, step, get_settings().store_concurrency):
            if result.error is None:
                continue
            if not isinstance(result.error, LifecycleError):
                raise result.error
            log.warning(
                "store '%s' could not be searched for the whole batch (%s); each request "
                "searches it on its own",
                result.store,
                type(result.error).__name__,
            )
            return


def _locate_store(request_ids: list[str], store: str) -> int:
    return locate_batch(store, request_ids)


def _publish(outcome: BatchOutcome) -> None:
    """A table artifact: counts per status, and every request's line, id and status."""
    from prefect.artifacts import create_markdown_artifact

    counts = ", ".join(f"{n} {status}" for status, n in outcome.counts().items())
    rows = [
        f"| {i.line} | {i.request_id} | {i.kind} | {i.status} | {i.deferred} | {i.error or ''} |"
        for i in outcome.items
    ]
    markdown = "\n".join(
        [
            f"# Batch {outcome.batch_id}",
            "",
            f"{len(outcome.items)} requests: {counts or 'none'}; "
            f"{outcome.refused_lines} line(s) refused at submission.",
            "",
            "| line | request | kind | status | deferred | note |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    create_markdown_artifact(
        key="request-batch", markdown=markdown, description=f"Batch {outcome.batch_id}"
    )
