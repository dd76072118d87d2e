"""Stale erasure plans: a store whose rows changed since its plan was made is planned again.

A plan can wait for approval for days; meanwhile the subject's rows change (a new order
referencing the customer row, an order deleted, a household now sharing an address, a
legal hold ending). Replaying the old plan then fails for ever (a foreign key from a row
the plan does not know) or erases by a stale picture. So before a store executes (and
when a rerun finds its plan not yet approved) it is located and planned again; the
connector's plan reads shared rows itself, so this is one locate and one plan per store.

- Same plan: nothing is recorded, the recorded plan runs.
- Not yet approved: the new plan replaces the old one; the approver sees the new one.
- Approved, and the new plan touches no row the approved one did not (it shrank, or only
  what is kept or deferred changed; a mask where a delete was approved is less): it
  replaces the approved plan and runs under the existing approval.
- Approved, and it grew (a row, or a table, the approver never saw; a delete where a mask
  or nothing was approved): the approval is withdrawn, the store goes back to planned and
  the request to awaiting approval; ``PlanGrew`` tells the flow to ask again.

Every re-plan is in the ledger as ``erasure.replanned`` with the old and new counts (rows
and tables touched) and digests, never keys. A store where something may already have
taken effect (committed batches, or intents a crash left unconfirmed) is not re-planned
here: the execution's own reconciliation settles it first.
"""

from __future__ import annotations

from typing import Any

from audit.events import EventStatus
from connectors.base import Action, Key, StorePlan
from core.errors import TerminalError
from engine.request_support import (
    FLOW_ACTOR,
    RequestContext,
    findings_data,
    plan_summary,
    today,
)
from state.progress import Phase, StoreProgress
from state.progress_phases import PhaseTaken
from state.register import RequestStatus

_TOUCHING = (Action.DELETE, Action.MASK, Action.UNLINK)
_MILDER = {Action.MASK: Action.DELETE}  # approved as a delete, now only masked: less

Touch = tuple[str, Action, Key]


class PlanGrew(TerminalError):
    """A store's fresh plan touches what its approved plan did not: approval is needed again.

    Raised after the approval was withdrawn and the request moved back to awaiting
    approval; the flow asks again (a reviewer, or the policy) instead of failing.
    """


def touched(plan: StorePlan) -> set[Touch]:
    """Every (target, action, key) the plan changes: deleted, masked or unlinked."""
    return {(s.target, s.action, k) for s in plan.steps if s.action in _TOUCHING for k in s.keys}


def grew(approved: StorePlan, fresh: StorePlan) -> bool:
    """Whether ``fresh`` changes a row, or changes it more, than ``approved`` allowed."""
    allowed = touched(approved)
    for target, action, key in touched(fresh):
        milder = _MILDER.get(action)
        if (target, action, key) in allowed:
            continue
        if milder is not None and (target, milder, key) in allowed:
            continue
        return True
    return False


def _signature(plan: StorePlan) -> frozenset[tuple[Any, ...]]:
    """The plan as a set (step order and reasons aside): equal when it does the same."""
    return frozenset(
        (s.target, s.action, tuple((m.column, m.mask) for m in s.masks), s.until, k)
        for s in plan.steps
        for k in s.keys
    )


def _size(plan: StorePlan) -> tuple[int, int]:
    """Rows and tables the plan changes."""
    rows = {(target, key) for target, _action, key in touched(plan)}
    return len(rows), len({target for target, _key in rows})


_UNDECIDED = (RequestStatus.RECEIVED, RequestStatus.PLANNED, RequestStatus.AWAITING_APPROVAL)


def awaiting_decision(ctx: RequestContext, request_id: str) -> bool:
    """Whether the request's plans await their decision (a pre-approval binds to them later)."""
    if ctx.record(request_id).status not in _UNDECIDED:
        return False
    approval = ctx.progress.runs.run(request_id).approval
    return approval is None or approval.digest is None


def refresh_plan(ctx: RequestContext, request_id: str, store: str, row: StoreProgress) -> bool:
    """Locate and plan ``store`` again; record and audit a changed plan. True if it changed.

    ``row`` is the store's progress, planned or approved and not executed. An approved
    plan that grew raises ``PlanGrew`` once the approval is withdrawn (see the module).
    """
    if ctx.progress.batches(request_id, store) or ctx.progress.intents(request_id, store):
        return False  # something may have taken effect: reconciliation settles it first
    old = StorePlan.from_json(ctx.progress.plan(request_id, store))
    identities = ctx.identities(request_id, before=row.position)
    with ctx.connector(store) as connector:
        fresh = connector.locate(identities)
        new = connector.plan_erasure(fresh, today(), ctx.subject(request_id))
    if _signature(new) == _signature(old):
        return False
    approved = row.phase is Phase.APPROVED
    needs_approval = approved and grew(old, new)
    (old_rows, old_tables), (new_rows, new_tables) = _size(old), _size(new)
    summary = plan_summary(new)
    event = ctx.event(
        "erasure.replanned",
        EventStatus.PLANNED,
        request_id,
        connector=store,
        counts={
            "old_rows": old_rows,
            "new_rows": new_rows,
            "old_tables": old_tables,
            "new_tables": new_tables,
        },
        detail={
            "reason": "the store's rows changed since the plan was made",
            "grew": grew(old, new),
            "approval": ("required again" if needs_approval else "kept" if approved else "pending"),
            "old_digest": old.digest(),
            "digest": new.digest(),
            "steps": summary,
            "warnings": list(new.warnings),
        },
    )
    if needs_approval:
        _withdraw_approval(ctx, request_id, store)
    # The new plan and its event commit together: a crash between them would leave an
    # event for a plan never recorded, and the rerun would audit the same change again.
    record = ctx.progress.replanned_step(
        request_id,
        store,
        phase=Phase.PLANNED if needs_approval else row.phase,
        counts=fresh.counts(),
        findings=findings_data(fresh),
        derived=fresh.derived,
        plan=new.to_json(),
        digest=new.digest(),
        summary=summary,
    )
    try:
        ctx.ledger.append_many([event], also=record)
    except PhaseTaken:
        return False  # executed meanwhile by another run: reconciliation settles it
    if needs_approval:
        raise PlanGrew(
            f"request {request_id}: the rows of store '{store}' changed since its plan was "
            f"approved; the new plan changes {new_rows} rows in {new_tables} tables "
            f"(approved: {old_rows} rows in {old_tables} tables), so it needs approval again",
            request_id=request_id,
            store=store,
        )
    return True


def _withdraw_approval(ctx: RequestContext, request_id: str, store: str) -> None:
    """Approval withdrawn before the request moves back: a crash between the two steps
    leaves nothing that a rerun could take for approval of the grown plan."""
    ctx.progress.runs.clear_approval(request_id)
    status = ctx.record(request_id).status
    if status is RequestStatus.EXECUTING:
        ctx.register.transition(
            request_id,
            RequestStatus.AWAITING_APPROVAL,
            actor=FLOW_ACTOR,
            note=f"the plan of store {store} grew since approval; approval needed again",
            expected=RequestStatus.EXECUTING,
        )
