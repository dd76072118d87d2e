"""An operator's confirmation of a store's manual work: the question, the answer, the form.

A manual processor's erasure or rectification is done by an operator at the provider;
the flow asks for the confirmation with ``ConfirmationInput`` (``flows.confirmation_wait``).
``ask_confirmation`` reads the question from the store's open intents (our tables) and
words the form: store, provider, action, how many items, the connector's instructions,
the timeout and what happens at it; never the identity, which the operator reads with
``lifecycle request identity``. ``record_confirmation`` takes the answer once
(``engine.confirmation.take_answer``) and, when confirmed, audits the store's batches as
any store's (``audit_batches``: once, the provider's reference in each ``*.batch`` event).
"""

from __future__ import annotations

from typing import Literal

from prefect.input import RunInput
from pydantic import BaseModel, Field

from audit.events import EventStatus
from core.errors import TerminalError
from engine.confirmation import (
    CONFIRMATION_TIMEOUT_SECONDS,
    Answer,
    Question,
    Taken,
    awaited,
    refusals,
    standing,
    take_answer,
)
from engine.events import run_ids
from engine.request_support import RequestContext, clean_errors, request_context
from tasks.erasure_tasks import audit_batches
from tasks.lifecycle_task import lifecycle_task

__all__ = [
    "ConfirmationInput",
    "ConfirmationQuestion",
    "ask_confirmation",
    "record_confirmation",
    "record_confirmation_gave_up",
]


class ConfirmationInput(RunInput):
    """The operator's answer on work done by hand at a provider (a form in the Prefect UI)."""

    confirmed: bool = Field(
        description="Checked: done at the provider (give its reference). Unchecked: declined "
        "(the request fails for this store; nothing is recorded as done there)."
    )
    reference: str = Field(
        default="",
        description="The provider's reference for the work: its ticket or request number "
        "(letters, digits and ._:/-). Required when confirmed.",
    )
    reviewer: str = Field(description="Your name: who did the work or checked it was done.")
    note: str = Field(
        default="",
        description="Optional (hashed in the ledger, never kept in clear; no personal data).",
    )


class ConfirmationQuestion(BaseModel):
    """A store's work awaiting the operator, as the flow asks about it (no identity)."""

    store: str
    action: str
    row: int
    items: int
    refused: int
    description: str

    @property
    def key(self) -> str:
        """The pause key: the same on a rerun, a new one after a refused answer."""
        return f"confirm-{self.row}-{self.refused + 1}"


def waiting_time(seconds: int) -> str:
    """``seconds`` in words for the form: days, hours, minutes or seconds."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def _provider(ctx: RequestContext, store: str) -> str:
    config = next((s for s in ctx.config.inventory.stores if s.name == store), None)
    return str(getattr(config, "provider", store))


def describe(
    request_id: str,
    question: Question,
    provider: str,
    instructions: str,
    timeout_seconds: int,
) -> str:
    """The form's text (markdown): what to do, how to answer, the timeout; no identity."""
    store, action = question.store, question.action
    waited = waiting_time(timeout_seconds)
    return "\n".join(
        [
            f"# Request {request_id}: {action} at {provider} awaits an operator",
            "",
            f"Store **{store}** is a processor asked by hand (provider **{provider}**): the "
            f"**{action}** of the subject's data there (**{question.items} item(s)**) is "
            "done by you, outside this system, and confirmed here.",
            "",
            f"1. Read who the subject is (and, for a rectification, the corrected values): "
            f"`lifecycle request identity {request_id} --store {store}`. They are never "
            "shown here.",
            f"2. {instructions[:1].upper()}{instructions[1:]}.",
            "3. Answer: **confirmed** checked with the provider's **reference** once it is "
            "done; unchecked to decline (the request fails for this store, nothing is "
            "recorded as done there). Your name as **reviewer**.",
            "",
            f"**Timeout:** this run waits {waited}. Unanswered by then, the store fails as "
            "if declined: nothing is recorded as done there; resuming the request asks again.",
            "",
            f"From a shell instead: `lifecycle request confirm {request_id} --store {store} "
            "--reference REF --reviewer NAME` (or `--decline --reviewer NAME`).",
        ]
    )


def _question(ctx: RequestContext, request_id: str, store: str) -> Question | None:
    return awaited(ctx, request_id, store)


@lifecycle_task("ask-confirmation")
def ask_confirmation(
    request_id: str,
    store: str,
    instructions: str,
    timeout_seconds: int = CONFIRMATION_TIMEOUT_SECONDS,
) -> ConfirmationQuestion | None:
    """The question on ``store``'s work awaiting the operator; None when none awaits (it
    was answered meanwhile: the flow carries on). Records this run as the one waiting."""
    with clean_errors(f"asking for the confirmation of store '{store}'"):
        ctx = request_context()
        question = _question(ctx, request_id, store)
        if question is None:
            return None
        flow_run_id = run_ids()["flow_run_id"]
        if flow_run_id is not None:
            ctx.progress.runs.set_waiting_run(request_id, flow_run_id)
        text = describe(request_id, question, _provider(ctx, store), instructions, timeout_seconds)
        return ConfirmationQuestion(
            store=store,
            action=question.action,
            row=question.row,
            items=question.items,
            refused=refusals(ctx, request_id, store, question.row),
            description=text,
        )


@lifecycle_task("record-confirmation")
def record_confirmation(
    request_id: str,
    store: str,
    row: int,
    answer: ConfirmationInput | None,
) -> Literal["confirmed", "declined", "timed out", "refused"]:
    """Take the operator's answer to the question ``row`` (None: nobody answered in time)
    once; the answer that stands. Confirmed: the store's batches are audited (once)."""
    with clean_errors(f"recording the confirmation of store '{store}'"):
        ctx = request_context()
        taken = take(ctx, request_id, store, row, _answer(answer))
        if taken.outcome == "refused":
            from prefect.logging import get_run_logger

            get_run_logger().warning(
                "request %s: the answer on store '%s' was refused: %s; answer the form again",
                request_id,
                store,
                taken.problem,
            )
        return taken.outcome


def _answer(given: ConfirmationInput | None) -> Answer:
    if given is None:
        return Answer(confirmed=None, source="timeout")
    return Answer(given.confirmed, given.reference, given.reviewer, given.note, "ui")


def take(ctx: RequestContext, request_id: str, store: str, row: int, answer: Answer) -> Taken:
    """``take_answer`` for the question ``row`` of ``store``, then audit a confirmed store's
    batches (Prefect-free: the CLI takes answers this way too)."""
    question = _question(ctx, request_id, store)
    if question is None or question.row != row:
        recorded = standing(ctx, request_id, store, row)
        if recorded is None:
            raise TerminalError(
                f"request {request_id}: store '{store}' no longer awaits that confirmation",
                request_id=request_id,
            )
        taken = Taken(recorded)
    else:
        result = take_answer(ctx, request_id, question, answer)
        taken = result
    if taken.outcome == "confirmed":
        audit_batches(ctx, request_id, store, ctx.record(request_id).kind.value)
    return taken


@lifecycle_task("record-confirmation-refused")
def record_confirmation_gave_up(request_id: str, store: str, refused: int) -> None:
    """Too many refused answers: fail clearly (the store's work still awaits the operator)."""
    with clean_errors("recording refused confirmations"):
        ctx = request_context()
        ctx.audit(
            ctx.event(
                "confirmation.abandoned",
                EventStatus.FAILED,
                request_id,
                connector=store,
                counts={"refused": refused},
            )
        )
    raise TerminalError(
        f"request {request_id}: {refused} answers on store '{store}' were refused; its work "
        "still awaits an operator's confirmation",
        request_id=request_id,
    )
