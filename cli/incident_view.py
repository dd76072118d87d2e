"""``lifecycle incident list | show``: open incidents and their clock; one incident whole.

``list`` shows the open incidents with their state, risk and next deadline, and exits 3
while a notification is overdue (a finding stands, as the README's exit codes say).
``show`` prints the incident, its scope, assessment, notifications and actions, and its
timeline reconstructed from the ledger events (the incident id is their request id):
kinds, times, actors and the details each event holds (counts, names, digests of free
text; never a value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.incident_common import (
    IdArg,
    actor,
    hours_left,
    incident_json,
    notification_json,
    notification_row,
    open_ledger,
    open_register,
    say,
    what_next,
    when,
)
from cli.output import JsonOption, emit, handled_errors, print_json, print_table

if TYPE_CHECKING:
    from audit.events import StoredEvent
    from audit.ledger import Ledger
    from state.incident_model import Incident, Notification

EXIT_OVERDUE = 3
LIST_COLUMNS = ["id", "state", "risk", "reported", "aware", "next_deadline", "left", "actions"]
TIMELINE_COLUMNS = ["at", "event", "actor", "details"]
ACTION_COLUMNS = ["number", "title", "owner", "due", "status", "reason"]
_DETAIL_CHARS = 240
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:\d\d|Z)$")


def _row(
    incident: Incident, due: Sequence[Notification], open_actions: int, now: datetime, js: bool
) -> dict[str, Any]:
    first = due[0] if due else None
    return {
        "id": incident.id,
        "state": incident.state,
        "risk": incident.risk or ("-" if not js else None),
        "reported": when(incident.reported_at, js),
        "aware": when(incident.aware_at, js),
        "next_deadline": (
            None
            if first is None
            else (
                {"audience": first.audience, "due_at": when(first.due_at, True)}
                if js
                else f"{first.audience} {when(first.due_at)}"
            )
        ),
        "left": hours_left(first.due_at if first else None, now),
        "overdue": [n.audience for n in due if n.overdue(now)],
        "actions": open_actions,
    }


def list_command(
    *,
    overdue: Annotated[
        bool, typer.Option("--overdue", help="Only incidents with a missed notification deadline.")
    ] = False,
    as_json: bool = JsonOption,
) -> None:
    """List open incidents: state, risk, next notification deadline, open actions.

    Exit codes: 0 nothing overdue; 3 a required notification is past its deadline.
    """
    now = datetime.now(UTC)
    with handled_errors():
        register = open_register(actor())
        incidents = register.list(states=("triage", "breach"))
        due: dict[str, list[Notification]] = {}
        for incident, notification in register.due():
            due.setdefault(incident.id, []).append(notification)
        rows = [
            _row(
                i,
                due.get(i.id, []),
                sum(a.status == "open" for a in register.actions(i.id)),
                now,
                as_json,
            )
            for i in incidents
        ]
    late = [r for r in rows if r["overdue"]]
    shown = late if overdue else rows
    if as_json:
        print_json({"incidents": shown, "overdue": len(late)})
    else:
        for r in shown:
            if r["overdue"]:
                r["left"] += f" ({', '.join(r['overdue'])} overdue)"
        title = "Incidents with a missed deadline" if overdue else "Open incidents"
        emit(shown, LIST_COLUMNS, as_json=False, title=title)
        if late:
            say(
                f"{len(late)} incident(s) with an overdue notification: send it and record it "
                "(`lifecycle incident notify ID --to AUDIENCE ...`), or record why not "
                "(`lifecycle incident exempt ...`)"
            )
        elif not shown:
            say("no open incidents" if not overdue else "no missed deadlines")
    raise typer.Exit(EXIT_OVERDUE if late else 0)


# -- show ---------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A detail value in a few words: digests of free text as their length."""
    if isinstance(value, Mapping):
        if set(value) == {"chars", "sha256"}:
            return f"text ({value['chars']} chars, digest kept)"
        return "; ".join(f"{k} {_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "-"
    return _scalar(value)


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and _ISO.match(value):
        return str(when(datetime.fromisoformat(value)))
    return str(value)


def _details(event: StoredEvent) -> str:
    parts = [f"{k}={v}" for k, v in event.counts.items()]
    parts += [f"{k}: {_text(v)}" for k, v in event.detail.items()]
    text = "; ".join(parts)
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


def timeline(ledger: Ledger, incident_id: str) -> list[StoredEvent]:
    """The incident's ledger events (its id is their request id), in the order appended."""
    return list(ledger.events(request_id=incident_id))


def _event_json(e: StoredEvent) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "at": when(e.occurred_at, True),
        "kind": e.kind,
        "status": e.status.value,
        "actor": e.actor,
        "flow_run_id": e.flow_run_id,
        "counts": dict(e.counts),
        "detail": dict(e.detail),
    }


def show_command(incident_id: IdArg, *, as_json: bool = JsonOption) -> None:
    """Show one incident with its whole timeline from the ledger.

    Its record, scope, assessment, notifications, corrective actions, what is left
    before it can close, and every ledger event of it.

    Exit codes: 0 shown; 1 unknown id.
    """
    from cli.incident_assess import PART_COLUMNS, part_rows

    now = datetime.now(UTC)
    with handled_errors():
        ledger = open_ledger(actor())
        register = open_register(ledger=ledger)
        incident = register.get(incident_id)
        notes = register.notifications(incident_id)
        actions = register.actions(incident_id)
        events = timeline(ledger, incident_id)
        left = register.closing_problems(incident_id) if incident.state == "breach" else []
        steps = what_next(register, incident)
    a = incident.assessment
    if as_json:
        print_json(
            {
                "incident": incident_json(incident),
                "scope": incident.scope.model_dump(mode="json") if incident.scope else None,
                "assessment": a.to_json() if a is not None else None,
                "notifications": [notification_json(n, now) for n in notes],
                "actions": [
                    {
                        "number": x.number,
                        "title": x.title,
                        "owner": x.owner,
                        "due": x.due,
                        "status": x.status,
                        "reason": x.reason,
                    }
                    for x in actions
                ],
                "left_before_closing": left,
                "next": steps,
                "timeline": [_event_json(e) for e in events],
            }
        )
        return
    fields = incident_json(incident) | {
        "reported_at": when(incident.reported_at),
        "detected_at": when(incident.detected_at),
        "aware_at": when(incident.aware_at),
        "assessed_at": when(incident.assessed_at),
        "closed_at": when(incident.closed_at),
        "kinds": ", ".join(incident.kinds),
        "key_compromised": {True: "yes", False: "no", None: "unknown"}[incident.key_compromised],
    }
    print_table(
        [{"field": k, "value": v} for k, v in fields.items()],
        ["field", "value"],
        title=f"Incident {incident.id}",
    )
    if incident.scope is not None:
        say("scope: " + "; ".join(p.label for p in incident.scope.parts))
    if a is not None:
        print_table(part_rows(a), PART_COLUMNS, title=f"Assessment: risk {a.risk}")
        for reason in a.reasons:
            say(f"  because {reason}")
    if notes:
        print_table(
            [notification_row(n, now) for n in notes],
            ["audience", "status", "because"],
            title="Notifications",
        )
    if actions:
        print_table(
            [x.__dict__ | {"due": x.due.isoformat() if x.due else None} for x in actions],
            ACTION_COLUMNS,
            title="Corrective actions",
        )
    print_table(
        [
            {
                "at": when(e.occurred_at),
                "event": e.kind.removeprefix("incident."),
                "actor": e.actor,
                "details": _details(e),
            }
            for e in events
        ],
        TIMELINE_COLUMNS,
        title=f"Timeline (ledger, {len(events)} events)",
    )
    for problem in left:
        say(f"left before closing: {problem}")
    for step in steps:
        say(f"next: {step}")
