"""``lifecycle incident action add | done | waive`` and ``close``: corrective actions, and
closing a breach once nothing is left.

A breach closes only when every notification it requires is sent or exempt and every
corrective action is done or waived with a reason; otherwise ``close`` lists what is left
(exit 1) and changes nothing.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.incident_common import (
    IdArg,
    actor,
    open_register,
    parse_date,
    print_next,
    reason_checked,
    say,
)
from cli.output import JsonOption, err_console, handled_errors, print_error, print_json

actions_app = typer.Typer(no_args_is_help=True, help="Corrective actions: add, done, waive.")

NumberArg = Annotated[int, typer.Argument(metavar="N", min=1, help="The action's number.")]


@actions_app.command("add")
def add_command(
    incident_id: IdArg,
    *,
    title: Annotated[str, typer.Option("--title", help="What is to be done (no personal data).")],
    owner: Annotated[str, typer.Option("--owner", metavar="ROLE", help="Who does it, a role.")],
    due: Annotated[
        str | None, typer.Option("--due", metavar="DATE", help="By when (YYYY-MM-DD).")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Add a corrective action (open) with its owner and due date.

    Exit codes: 0 added; 1 refused (closed or dismissed incident, unknown id); 2 a title
    holding personal data, a malformed owner or date.
    """
    due_date = parse_date(due, "--due")
    with handled_errors():
        reason_checked(title, "--title")
        register = open_register(actor())
        action = register.add_action(
            incident_id, title=title, owner=owner, due=due_date, actor=actor()
        )
    if as_json:
        print_json(
            {
                "incident_id": incident_id,
                "action": action.number,
                "owner": action.owner,
                "due": action.due,
                "status": action.status,
            }
        )
        return
    when_due = f", due {action.due.isoformat()}" if action.due else ""
    say(f"{incident_id}: action {action.number} added (owner {action.owner}{when_due})")
    say(
        f"next: once it is taken, `lifecycle incident action done {incident_id} {action.number}`"
        f" (or `action waive {incident_id} {action.number} --reason TEXT`)"
    )


def _finish(incident_id: str, number: int, status: str, reason: str | None, as_json: bool) -> None:
    with handled_errors():
        reason_checked(reason)
        register = open_register(actor())
        action = register.finish_action(
            incident_id, number, status=status, actor=actor(), reason=reason
        )
        incident = register.get(incident_id)
    if as_json:
        print_json({"incident_id": incident_id, "action": action.number, "status": action.status})
        return
    say(f"{incident_id}: action {action.number} {action.status}")
    print_next(register, incident)


@actions_app.command("done")
def done_command(incident_id: IdArg, number: NumberArg, *, as_json: bool = JsonOption) -> None:
    """Mark a corrective action done.

    Exit codes: 0 recorded; 1 refused (no such action, already done or waived, incident
    closed).
    """
    _finish(incident_id, number, "done", None, as_json)


@actions_app.command("waive")
def waive_command(
    incident_id: IdArg,
    number: NumberArg,
    *,
    reason: Annotated[str, typer.Option("--reason", help="Why it is not pursued.")],
    as_json: bool = JsonOption,
) -> None:
    """Waive a corrective action, with the reason.

    Exit codes: 0 recorded; 1 refused (no such action, already done or waived); 2 a reason
    holding personal data.
    """
    _finish(incident_id, number, "waived", reason, as_json)


def close_command(
    incident_id: IdArg,
    *,
    reason: Annotated[
        str | None, typer.Option("--reason", help="A closing note (no personal data).")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Close a breach once nothing is left (notifications, corrective actions).

    Every required notification must be sent or exempt and every action done or waived;
    otherwise it lists what is left and changes nothing.

    Exit codes: 0 closed; 1 refused (what is left is listed; unknown id); 2 a reason
    holding personal data.
    """
    with handled_errors():
        reason_checked(reason)
        register = open_register(actor())
        left = register.closing_problems(incident_id)
        if not left:
            incident = register.close(incident_id, actor=actor(), reason=reason)
    if left:
        if as_json:
            print_json({"incident_id": incident_id, "closed": False, "left": left})
        print_error(f"{incident_id} cannot close yet: {len(left)} thing(s) left")
        for problem in left:
            err_console.print(f"  - {problem}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if as_json:
        print_json({"incident_id": incident_id, "closed": True, "closed_at": incident.closed_at})
        return
    say(f"{incident_id} closed; its whole timeline: `lifecycle incident show {incident_id}`")
