"""An operator's confirmation of work a store cannot do by itself (a manual processor).

A store in manual mode (``connectors.processor``, ``mode: manual``) records its work as
intents in our progress tables and raises ``AwaitingConfirmation``: erasure intents are
written by ``on_prepared``, a rectification's by ``tasks.rectify_tasks``. The open intents
are the question (``Question``: named by the first intent's row id, so a rerun asks the
same one and a new attempt asks anew); the operator's answer (from the flow's form or
``lifecycle request confirm``) is taken here, Prefect-free, once:

- confirmed, with the provider's reference (checked by ``ManualConfirmation.confirm``):
  the intents become the store's batches carrying that reference and the store is
  executed, in the transaction that appends ``confirmation.recorded``; the batches are
  then audited as any store's (``tasks.erasure_tasks.audit_batches``);
- declined, or nobody answered in time: the intents are discarded (nothing recorded as
  done) with ``confirmation.declined``; the flow records the store's failure;
- refused (no reference, a reference the connector refuses, personal data in the
  reviewer or note field): ``confirmation.refused`` with the problem, and it is asked again.

A second answer to a question already answered changes nothing: the one recorded stands
(``standing``). Events hold the store, action, counts, the reference, the reviewer's name
and the note's digest only; never an identity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from audit.events import EventStatus, StoredEvent
from connectors.base import BatchResult, ManualConfirmation
from connectors.registry import require
from core.errors import TerminalError
from core.free_text import FreeTextRefused, check_free_text
from engine.request_support import RequestContext, batch_record, intent_batch
from state.progress import BatchIntent
from state.progress_phases import PhaseTaken
from state.register_model import text_fingerprint

CONFIRMATION_TIMEOUT_SECONDS = 7 * 24 * 3600
"""How long a run waits for the operator; then the store fails as if declined."""
MAX_REFUSED = 3
"""Refused answers from the form to one question before the flow gives up asking."""

Outcome = Literal["confirmed", "declined", "timed out"]
_REVIEWER = re.compile(r"^[\w][\w .'-]{0,79}$")


@dataclass(frozen=True)
class Question:
    """A store's work awaiting the operator: its open intents, named by the first one's row."""

    store: str
    action: str  # "erasure" or "rectification"
    row: int
    items: int
    batches: tuple[BatchResult, ...]
    rows: tuple[int, ...]  # the intents' row ids, in the order of ``batches``

    def key(self, refused: int) -> str:
        """The pause key of this question after ``refused`` refused answers (letters,
        digits and dashes: Prefect's input keys allow no more)."""
        return f"confirm-{self.row}-{refused + 1}"


@dataclass(frozen=True)
class Answer:
    """What the operator said: ``confirmed`` None when nobody answered in time."""

    confirmed: bool | None
    reference: str = ""
    reviewer: str = ""
    note: str = ""
    source: Literal["ui", "cli", "timeout"] = "ui"


@dataclass(frozen=True)
class Taken:
    """The answer that stands for a question, or why this one was refused."""

    outcome: Outcome | Literal["refused"]
    problem: str | None = None


def action_of(ctx: RequestContext, request_id: str) -> str:
    """What a request's stores are asked to do: "erasure" or "rectification"."""
    kind = ctx.record(request_id).kind.value
    if kind not in ("erasure", "rectification"):
        raise TerminalError(f"request {request_id} is an {kind} request: nothing to confirm")
    return str(kind)


def awaited(ctx: RequestContext, request_id: str, store: str) -> Question | None:
    """The store's work awaiting an operator (its open intents), if any."""
    intents = ctx.progress.intents(request_id, store)
    if not intents:
        return None
    batches = tuple(intent_batch(store, i) for i in intents)
    items = sum(len(b.keys) or b.affected for b in batches)
    rows = tuple(i.row for i in intents)
    return Question(store, action_of(ctx, request_id), rows[0], items, batches, rows)


def refusals(ctx: RequestContext, request_id: str, store: str, row: int) -> int:
    """Answers from the form refused so far for the question ``row`` (each asks anew)."""
    return sum(
        1
        for e in ctx.ledger.events(request_id=request_id, kinds=["confirmation.refused"])
        if e.connector == store and e.detail.get("question") == row and e.detail["source"] == "ui"
    )


def _answered(events: list[StoredEvent], store: str, row: int) -> Outcome | None:
    for e in events:
        if e.connector == store and e.detail.get("question") == row:
            if e.kind == "confirmation.recorded":
                return "confirmed"
            return "timed out" if e.detail.get("outcome") == "timed out" else "declined"
    return None


def standing(ctx: RequestContext, request_id: str, store: str, row: int) -> Outcome | None:
    """The answer recorded for the question ``row`` of ``store``, if one was."""
    kinds = ["confirmation.recorded", "confirmation.declined"]
    return _answered(list(ctx.ledger.events(request_id=request_id, kinds=kinds)), store, row)


def _problem(answer: Answer) -> str | None:
    """What makes a form or CLI answer unusable (names fields, never their values)."""
    if answer.confirmed is None:
        return None
    if not _REVIEWER.match(answer.reviewer.strip()):
        return "give your name as reviewer (letters, digits, spaces, . ' -; at most 80)"
    if answer.confirmed and not answer.reference.strip():
        return "a confirmation needs the provider's reference (its ticket or request number)"
    try:
        check_free_text("reviewer", answer.reviewer)
        if answer.note:
            check_free_text("note", answer.note)
    except FreeTextRefused as e:
        return f"the {e.field} holds {e.found}; it must not contain personal data"
    return None


def take_answer(ctx: RequestContext, request_id: str, question: Question, answer: Answer) -> Taken:
    """Record ``answer`` to ``question`` once; the answer that stands, or why it was refused.

    Confirmed: the intents become the store's batches with the reference, the store is
    executed (in the transaction of ``confirmation.recorded``). Declined or timed out:
    the intents are discarded. An answer recorded first (the CLI, another run) stands.
    """
    store, row = question.store, question.row
    first = standing(ctx, request_id, store, row)
    if first is not None:
        return Taken(first)
    problem = _problem(answer)
    results: list[BatchResult] = []
    if problem is None and answer.confirmed:
        with ctx.connector(store) as connector:
            confirming = require(connector, ManualConfirmation, "manual confirmation")
            try:
                results = confirming.confirm(question.batches, answer.reference.strip())
            except TerminalError as e:  # the reference refused: its form named, not its value
                problem = e.message
    if problem is not None:
        _refuse(ctx, request_id, question, answer, problem)
        return Taken("refused", problem)
    detail: dict[str, object] = {
        "question": row,
        "action": question.action,
        "source": answer.source,
    }
    if answer.confirmed is not None:
        detail["reviewer"] = answer.reviewer.strip()
    if answer.note:
        detail["note_sha256"] = text_fingerprint(answer.note)["sha256"]
    if answer.confirmed:
        detail["reference"] = answer.reference.strip()
        outcome: dict[int, BatchIntent | None] = {
            row_id: BatchIntent(batch_record(done), done.keys, done.intent or 0)
            for row_id, done in zip(question.rows, results, strict=True)
        }
        kind, status = "confirmation.recorded", EventStatus.SUCCEEDED
        taken: Outcome = "confirmed"
    else:
        outcome = dict.fromkeys(question.rows)
        taken = "declined" if answer.confirmed is False else "timed out"
        detail["outcome"] = taken
        kind, status = "confirmation.declined", EventStatus.FAILED
    event = ctx.event(
        kind,
        status,
        request_id,
        connector=store,
        counts={"items": question.items},
        detail=detail,
        actor=answer.reviewer.strip() or None,
    )
    settle = ctx.progress.settle_step(request_id, store, outcome, executed=bool(answer.confirmed))
    try:
        ctx.ledger.append_many([event], also=settle)
    except PhaseTaken:  # answered meanwhile (the CLI, another run): that answer stands
        recorded = standing(ctx, request_id, store, row)
        if recorded is None:
            raise
        return Taken(recorded)
    return Taken(taken)


def _refuse(
    ctx: RequestContext, request_id: str, question: Question, answer: Answer, problem: str
) -> None:
    ctx.audit(
        ctx.event(
            "confirmation.refused",
            EventStatus.FAILED,
            request_id,
            connector=question.store,
            detail={
                "question": question.row,
                "action": question.action,
                "source": answer.source,
                "problem": problem,
            },
        )
    )


def failure_message(request_id: str, store: str, action: str, outcome: Outcome) -> str:
    """The store's failure after a declined or unanswered confirmation (ledger-safe)."""
    why = "nobody confirmed it in time" if outcome == "timed out" else "the operator declined it"
    return (
        f"request {request_id}: the {action} in store '{store}' was not done ({why}); "
        "nothing is recorded as done there. Resume the request to ask again"
    )
