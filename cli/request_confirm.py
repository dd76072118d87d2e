"""``lifecycle request confirm`` and ``identity``: an operator's side of manual stores.

A store in manual mode (a processor an operator contacts by hand) waits for the operator:
``identity`` shows them what the store is asked about (the identity values of the kinds
the store declares and, for a rectification, its corrections), recorded in the ledger as
``identity.disclosed`` (store and kinds, never the values); ``confirm`` records that the
work is done, with the provider's reference, or declined (``--decline``), through the
same checks and the same once-only record as the flow's form
(``tasks.confirmation_tasks.take``). A confirmed store's batches are audited at once.

If the request's flow run is paused waiting for that answer (our register keeps its id),
the CLI resumes it with the same answer, and the run carries on (it finds the answer
recorded); a suspended deployment run is not resumed with a decline (rerun from the top,
it would ask anew): the CLI records the failure and says to cancel that run. Otherwise
``lifecycle request submit --resume ID`` carries the request on. A declined store fails
the request (``request.failed``, naming the store); nothing is recorded as done there,
and a resume asks again.

Exit codes: 0 recorded; 1 nothing awaits (not reached yet, or answered already), or
another answer stood first; 2 an answer refused (no reference, a malformed one, personal
data).
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any
from uuid import UUID

import typer

from cli.output import console, err_console, fail, handled_errors

StoreOpt = Annotated[str, typer.Option("--store", help="The store awaiting the operator.")]
ReferenceOpt = Annotated[
    str | None,
    typer.Option("--reference", help="The provider's reference (ticket or request number)."),
]
DeclineOpt = Annotated[bool, typer.Option("--decline", help="Declined: not done at the provider.")]
ReviewerOpt = Annotated[str, typer.Option("--reviewer", help="Your name: who did or checked it.")]
NoteOpt = Annotated[
    str, typer.Option("--note", help="Optional (hashed in the ledger; no personal data).")
]


def confirm_command(
    request_id: Annotated[str, typer.Argument(metavar="ID", help="Request id (req_...).")],
    *,
    store: StoreOpt,
    reviewer: ReviewerOpt,
    reference: ReferenceOpt = None,
    decline: DeclineOpt = False,
    note: NoteOpt = "",
) -> None:
    """Record that a manual store's work is done at the provider (or --decline it)."""
    if decline == (reference is not None):
        raise typer.BadParameter("give --reference REF (done) or --decline, one of them")
    with handled_errors():
        from engine.confirmation import Answer, awaited, failure_message
        from engine.request_support import request_context
        from tasks.confirmation_tasks import take

        ctx = request_context()
        question = awaited(ctx, request_id, store)
        if question is None:
            raise fail(
                f"request {request_id}: store '{store}' awaits no confirmation (unknown store, "
                "not reached yet, or answered already: lifecycle request status)"
            )
        answer = Answer(not decline, reference or "", reviewer, note, "cli")
        taken = take(ctx, request_id, store, question.row, answer)
        if taken.outcome == "refused":
            raise fail(f"answer refused: {taken.problem}", 2)
        if taken.outcome != ("declined" if decline else "confirmed"):
            raise fail(f"request {request_id}: store '{store}' was {taken.outcome} already", 1)
        handed = _hand_over(ctx, request_id, answer)
        if decline and handed is None:
            from tasks.request_tasks import record_failure

            message = failure_message(request_id, store, question.action, "declined")
            record_failure.fn(request_id, store, "ConfirmationDeclined", message)
    done = "declined" if decline else f"confirmed (reference {reference})"
    console.print(f"request {request_id}: {question.action} in store {store} {done}")
    if handed is not None:
        err_console.print(f"resumed flow run {handed} with the answer", highlight=False)
    else:
        err_console.print(
            f"carry the request on: lifecycle request submit --resume {request_id}",
            highlight=False,
        )


def _hand_over(ctx: Any, request_id: str, answer: Any) -> str | None:
    """Resume the flow run paused for this answer, if one is; its id (None: none waits)."""
    from ops.api_target import reach_server

    flow_run_id: str | None = ctx.progress.runs.waiting_run(request_id)
    if flow_run_id is None or not reach_server():
        return None
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    run_input = {
        "confirmed": bool(answer.confirmed),
        "reference": answer.reference,
        "reviewer": answer.reviewer,
        "note": answer.note,
    }
    with contextlib.suppress(Exception):
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(flow_run_id)).state
        if state is not None and state.is_paused():
            if not answer.confirmed and state.name == "Suspended":
                # Rerun from the top, it would ask anew: the request failed instead.
                err_console.print(
                    f"flow run {flow_run_id} is suspended waiting for this answer: cancel it "
                    "(lifecycle request status shows the request failed)",
                    highlight=False,
                )
                return None
            resume_flow_run(UUID(flow_run_id), run_input=run_input)
            return flow_run_id
    return None


def identity_command(
    request_id: Annotated[str, typer.Argument(metavar="ID", help="Request id (req_...).")],
    store: StoreOpt,
) -> None:
    """Show what a manual store is asked about: the subject's identities of the kinds it
    declares (and a rectification's corrections). Disclosure is recorded in the ledger."""
    with handled_errors():
        from audit.events import EventStatus
        from config.settings import get_settings
        from connectors.base import Rectifying
        from connectors.registry import supports
        from engine.confirmation import awaited
        from engine.intake import decode_changes
        from engine.request_support import request_context

        ctx = request_context()
        config = next((s for s in ctx.config.inventory.stores if s.name == store), None)
        kinds = list(getattr(config, "identities", None) or [])
        if config is None or awaited(ctx, request_id, store) is None or not kinds:
            raise fail(f"request {request_id}: store '{store}' awaits no operator")
        position = ctx.position(store)
        identities = ctx.identities(request_id, before=position)
        shown = {k: sorted(identities.get(k, ())) for k in kinds if identities.get(k)}
        corrections: dict[str, str] = {}
        with ctx.connector(store) as connector:
            if supports(connector, Rectifying):
                changes = decode_changes(ctx.register.open_changes(request_id))
                corrections = connector.changes_for(changes)
        ctx.audit(
            ctx.event(
                "identity.disclosed",
                EventStatus.SUCCEEDED,
                request_id,
                connector=store,
                detail={"kinds": sorted(shown), "corrections": sorted(corrections)},
                actor=get_settings().actor,
            )
        )
    for kind, values in shown.items():
        for value in values:
            console.print(f"{kind}: {value}", highlight=False, markup=False)
    for name, value in corrections.items():
        console.print(f"correct {name} to: {value}", highlight=False, markup=False)
