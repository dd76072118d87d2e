"""Feedback on a refused approval: a warning on the run's log and an artifact the operator
sees at once, saying why the decision was refused and what to do (no personal data)."""

from __future__ import annotations

import logging

from core.free_text import FreeTextRefused, check_free_text
from engine.approval import Verdict
from engine.request_support import RequestContext

REFUSED_ARTIFACT = "approval-refused"
log = logging.getLogger(__name__)


def refusal_feedback(ctx: RequestContext, request_id: str, problem: str, verdict: Verdict) -> None:
    """Say on the run's log (WARNING) and in an ``approval-refused`` artifact why the
    form's decision was refused and what to do. Best effort: the refusal is recorded in
    the ledger already, so a failure here is logged and does not fail the review."""
    why = _shown_problem(problem)
    outcome = _refusal_outcome(ctx, request_id, verdict)
    _run_logger().warning(
        "Decision on request %s refused: %s. %s", request_id, why.rstrip("."), outcome
    )
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(
            key=REFUSED_ARTIFACT,
            markdown=_refusal_markdown(ctx, request_id, why, outcome, verdict),
            description=f"Decision on request {request_id} refused",
        )
    except Exception as e:  # the UI loses an explanation; the ledger keeps the refusal
        _run_logger().warning(
            "the approval-refused artifact of request %s was not created (%s)",
            request_id,
            type(e).__name__,
        )


def _shown_problem(problem: str) -> str:
    """The ledger's problem text, unless it quotes something that looks like personal data
    (a signature's approver field is whatever its maker typed)."""
    try:
        check_free_text("problem", problem)
    except FreeTextRefused:
        return "the decision failed its checks (details in the ledger: approval.refused)"
    return problem


def _refusal_outcome(ctx: RequestContext, request_id: str, verdict: Verdict) -> str:
    if verdict == "refused":
        return "No decision was taken: the run is waiting for another one."
    if verdict == "finished":
        return "Nothing is left to decide: the request was already finished."
    approval = ctx.progress.runs.run(request_id).approval
    who = f" by {approval.reviewer} ({approval.source})" if approval is not None else ""
    return f"The decision that stands ({verdict}{who}) is carried out."


def _refusal_advice(ctx: RequestContext, request_id: str, problem: str) -> list[str]:
    """What to do next, for the kinds of problem ``state.approvals`` reports."""
    policy = ctx.config.policy.requests.approval
    requester = ctx.record(request_id).requested_by.strip().casefold()
    others = [a.name for a in policy.approvers if a.name.casefold() != requester]
    names = ", ".join(others) or "(none listed: add one to the policy)"
    sign = (
        f"Sign the decision with your own key: `lifecycle approver sign {request_id} --key "
        "YOUR_KEY` (add `--reject` to reject), and paste the whole line it prints into the "
        "signature field, with your name as reviewer."
    )
    lowered = problem.casefold()
    if "four-eyes" in lowered:
        return [f"The requester may not decide: ask another approver ({names}).", sign]
    if "not one of the policy's approvers" in lowered:
        return [f"Give your name exactly as the policy lists it ({names}).", sign]
    if "the note holds" in lowered:
        return ["Write the note again without e-mail addresses or phone numbers."]
    return [sign]  # unsigned, another key, stale, other plans, damaged


def _refusal_markdown(
    ctx: RequestContext, request_id: str, why: str, outcome: str, verdict: Verdict
) -> str:
    lines = [
        f"# Decision on request {request_id} refused",
        "",
        f"**Why:** {why}",
        "",
        f"**What happened:** {outcome}",
        "",
    ]
    if verdict == "refused":
        lines += ["**What to do:**", *(f"- {a}" for a in _refusal_advice(ctx, request_id, why))]
        lines += [
            "- Then open this run's **Resume** form again. After several refused decisions the "
            "run stops and the request stays awaiting approval: approve it with "
            f"`lifecycle request submit --resume {request_id} --approve --reviewer NAME "
            "--signing-key FILE`.",
            "",
        ]
    else:
        lines += ["**What to do:** nothing; the decision that stands applies.", ""]
    lines.append(
        f"Every refusal is in the audit ledger: `lifecycle audit show --request {request_id}`."
    )
    return "\n".join(lines) + "\n"


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The flow run's logger when there is one (its log in the UI), else this module's."""
    from prefect.context import FlowRunContext
    from prefect.logging.loggers import flow_run_logger

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return log
    return flow_run_logger(context.flow_run, context.flow)
