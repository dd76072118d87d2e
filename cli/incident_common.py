"""What the ``lifecycle incident`` commands share: the register, the actor, times, output.

Imports nothing heavy at module level (``lifecycle incident --help`` stays fast): the
register, the configuration and SQLAlchemy are imported when a command runs.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import console, fail

if TYPE_CHECKING:
    from audit.ledger import Ledger
    from config.schema.model import LifecycleConfig
    from state.incident_model import Incident, Notification
    from state.incidents import IncidentRegister

IdArg = Annotated[str, typer.Argument(metavar="ID", help="Incident id (inc_...).")]
ToOpt = Annotated[
    str,
    typer.Option("--to", metavar="AUDIENCE", help="authority, subjects or client:NAME."),
]
TIME_HELP = "ISO 8601 with its zone, e.g. 2026-12-01T09:00Z"


def say(text: str) -> None:
    """One line to stdout, literally (no markup, no highlighting)."""
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def next_step(text: str) -> None:
    """What the operator does next."""
    say(f"next: {text}")


def actor() -> str:
    """Who is acting, as the ledger records it (``LIFECYCLE_ACTOR``, as every command)."""
    from config.settings import get_settings

    return get_settings().actor


def open_ledger(actor_name: str | None = None) -> Ledger:
    """The ledger on the configured audit database (the key checked first)."""
    from audit.ledger import Ledger

    return Ledger.open(actor=actor_name)


def open_register(actor_name: str | None = None, ledger: Ledger | None = None) -> IncidentRegister:
    """The incident register on the configured audit database (or on ``ledger``'s)."""
    from state.incidents import IncidentRegister

    return IncidentRegister(ledger if ledger is not None else open_ledger(actor_name))


def config() -> LifecycleConfig:
    """The checked configuration (ConfigError, exit 2, when invalid)."""
    from config.loader import load_config

    return load_config()


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time with its zone (``Z`` or an offset), in UTC; exit 2 otherwise."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise fail(f"{option}: not a time; give {TIME_HELP}", 2) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise fail(f"{option}: give the time with its zone ({TIME_HELP})", 2)
    return moment.astimezone(UTC)


def parse_date(value: str | None, option: str) -> date | None:
    """A calendar date (YYYY-MM-DD); exit 2 otherwise."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise fail(f"{option}: not a date; give YYYY-MM-DD", 2) from None


def when(moment: datetime | None, as_json: bool = False) -> Any:
    """A moment as output shows it: ISO 8601 in JSON, minutes in UTC in tables."""
    if moment is None or as_json:
        return moment.isoformat() if moment is not None else None
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def hours_left(due: datetime | None, now: datetime) -> str:
    """``31.5 h left`` / ``overdue by 2.0 h`` / empty without a deadline."""
    if due is None:
        return ""
    hours = (due - now).total_seconds() / 3600
    return f"{hours:.1f} h left" if hours > 0 else f"overdue by {-hours:.1f} h"


def notification_json(n: Notification, now: datetime) -> dict[str, Any]:
    """One notification as ``--json`` gives it."""
    return {
        "audience": n.audience,
        "status": n.status,
        "due_at": when(n.due_at, True),
        "overdue": n.overdue(now),
        "because": n.because,
        "sent_at": when(n.sent_at, True),
        "recipient": n.recipient_role,
        "reference": n.reference,
        "reason": n.reason,
    }


def notification_row(n: Notification, now: datetime) -> dict[str, Any]:
    """One notification as a table row."""
    if n.status == "sent":
        state = f"sent {when(n.sent_at)} to {n.recipient_role} ({n.reference})"
    elif n.status == "exempt":
        state = f"exempt: {n.reason}"
    elif n.status == "required":
        state = f"required by {when(n.due_at)} ({hours_left(n.due_at, now)})"
    else:
        state = "not required"
    return {"audience": n.audience, "status": state, "because": n.because}


def incident_json(i: Incident) -> dict[str, Any]:
    """An incident's own fields as ``--json`` gives them (the summary included: it passed
    the free-text check; the ledger holds only its digest)."""
    return {
        "id": i.id,
        "state": i.state,
        "summary": i.summary,
        "reported_by": i.reported_by,
        "reported_at": when(i.reported_at, True),
        "detected_at": when(i.detected_at, True),
        "aware_at": when(i.aware_at, True),
        "kinds": list(i.kinds),
        "key_compromised": i.key_compromised,
        "risk": i.risk,
        "assessed_at": when(i.assessed_at, True),
        "closed_at": when(i.closed_at, True),
        "close_reason": i.close_reason,
    }


def what_next(register: IncidentRegister, incident: Incident) -> list[str]:
    """The operator's next steps for ``incident``, in order (empty when closed)."""
    iid = incident.id
    if incident.state == "triage":
        return [
            f"a personal data breach? `lifecycle incident declare {iid} --kind confidentiality` "
            "(the clock starts when you became aware: --aware-at TIME); not a breach: "
            f"`lifecycle incident dismiss {iid} --reason TEXT`"
        ]
    if incident.state != "breach":
        return []
    if incident.scope is None:
        return [
            f"record what it covers: `lifecycle incident scope {iid} --table STORE.TABLE "
            "--window COLUMN=START..END` (or --bucket, --file scope.yaml)"
        ]
    if incident.assessment is None:
        return [f"assess it from the stores: `lifecycle incident assess {iid}`"]
    return _assessed_steps(register, iid)


def _assessed_steps(register: IncidentRegister, iid: str) -> list[str]:
    """An assessed breach's next steps: notifications, actions, then closing."""
    steps = []
    for n in register.notifications(iid):
        if n.status != "required":
            continue
        if n.audience == "subjects":
            steps.append(
                f"the affected subjects: `lifecycle incident subjects {iid} --recipient-key FILE`"
            )
        steps.append(
            f"{n.audience} due {when(n.due_at)}: `lifecycle incident draft {iid} --to "
            f"{n.audience}`, send it, then `lifecycle incident notify {iid} --to {n.audience} "
            "--recipient ROLE --reference REF` (or `exempt ... --reason TEXT`)"
        )
    actions = register.actions(iid)
    for a in actions:
        if a.status == "open":
            steps.append(
                f"action {a.number} ({a.owner}): `lifecycle incident action done {iid} "
                f"{a.number}` once taken, or `action waive {iid} {a.number} --reason TEXT`"
            )
    if steps:
        return steps
    if not actions:
        return [
            f"record the corrective actions: `lifecycle incident action add {iid} --title "
            f"TEXT --owner ROLE [--due DATE]`; once all are done: `lifecycle incident close {iid}`"
        ]
    return [f"nothing is left: `lifecycle incident close {iid}`"]


def print_next(register: IncidentRegister, incident: Incident) -> None:
    """Print ``what_next``, one ``next:`` line each."""
    for step in what_next(register, incident):
        next_step(step)


def reason_checked(reason: str | None, option: str = "--reason") -> str | None:
    """``reason`` refused (exit 2, naming ``option``) when it holds personal data."""
    if reason is None:
        return None
    from core.free_text import check_free_text

    check_free_text(option, reason)
    return reason


__all__ = [
    "IdArg",
    "ToOpt",
    "actor",
    "config",
    "hours_left",
    "incident_json",
    "next_step",
    "notification_json",
    "notification_row",
    "open_ledger",
    "open_register",
    "parse_date",
    "parse_time",
    "print_next",
    "reason_checked",
    "say",
    "what_next",
    "when",
]
