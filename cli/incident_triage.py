"""``lifecycle incident report | dismiss | declare``: a concern, and what triage makes of it.

A reported concern opens an incident in ``triage``; triage either dismisses it (not a
personal data breach, with the reason) or declares it a breach, which starts the clock
(72 hours to the authority from the moment we became aware, GDPR Art. 33(1)). Free text
holding an e-mail address or phone number is refused (exit 2, naming the option, never
the value); the ledger keeps its length and digest only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

import typer

from cli.incident_common import (
    TIME_HELP,
    IdArg,
    actor,
    config,
    incident_json,
    open_register,
    parse_time,
    print_next,
    reason_checked,
    say,
    when,
)
from cli.output import JsonOption, fail, handled_errors, print_json


class BreachKind(StrEnum):
    """GDPR's three kinds of personal data breach."""

    confidentiality = "confidentiality"
    integrity = "integrity"
    availability = "availability"


SummaryOpt = Annotated[
    str,
    typer.Option(
        "--summary", help="What was noticed, without personal data (no names, e-mail, phone)."
    ),
]
ReportedByOpt = Annotated[
    str, typer.Option("--reported-by", metavar="ROLE", help="Who reported it, as a role.")
]
DetectedOpt = Annotated[
    str | None,
    typer.Option("--detected-at", metavar="TIME", help=f"When it was detected ({TIME_HELP})."),
]


def report_command(
    *,
    summary: SummaryOpt,
    reported_by: ReportedByOpt,
    detected_at: DetectedOpt = None,
    as_json: bool = JsonOption,
) -> None:
    """Report a privacy or security concern: an incident in triage; prints its id.

    Exit codes: 0 reported; 2 a summary holding personal data, a malformed role or time,
    a role the policy's report_roles does not list.
    """
    detected = parse_time(detected_at, "--detected-at")
    with handled_errors():
        reason_checked(summary, "--summary")
        roles = config().policy.incidents.report_roles
        if roles and reported_by not in roles:
            listed = ", ".join(roles)
            raise fail(f"--reported-by: give one of the policy's report_roles: {listed}", 2)
        register = open_register(actor())
        incident = register.report(
            summary, reported_by=reported_by, actor=actor(), detected_at=detected
        )
    if as_json:
        print_json({"incident": incident_json(incident)})
        return
    say(incident.id)
    say(
        f"reported by {incident.reported_by} at {when(incident.reported_at)}: in triage "
        "(the summary is kept in the register; the ledger holds its digest)"
    )
    print_next(register, incident)


def dismiss_command(
    incident_id: IdArg,
    *,
    reason: Annotated[str, typer.Option("--reason", help="Why it is not a personal data breach.")],
    as_json: bool = JsonOption,
) -> None:
    """Close a concern that is not a personal data breach, with the reason.

    Exit codes: 0 dismissed; 1 refused (not in triage, unknown id); 2 a reason holding
    personal data.
    """
    with handled_errors():
        reason_checked(reason)
        register = open_register(actor())
        incident = register.dismiss(incident_id, reason=reason, actor=actor())
    if as_json:
        print_json({"incident": incident_json(incident)})
        return
    say(f"{incident.id} dismissed: not a personal data breach; nothing more to do")


def declare_command(
    incident_id: IdArg,
    *,
    kind: Annotated[
        list[BreachKind],
        typer.Option("--kind", help="confidentiality, integrity or availability (repeatable)."),
    ],
    aware_at: Annotated[
        str | None,
        typer.Option(
            "--aware-at",
            metavar="TIME",
            help=f"When we became aware: the 72 h clock starts here (default now; {TIME_HELP}).",
        ),
    ] = None,
    detected_at: DetectedOpt = None,
    as_json: bool = JsonOption,
) -> None:
    """Declare the concern a personal data breach: the notification clock starts.

    Exit codes: 0 declared; 1 refused (not in triage, unknown id); 2 a malformed or
    future time, no kind.
    """
    aware = parse_time(aware_at, "--aware-at")
    detected = parse_time(detected_at, "--detected-at")
    with handled_errors():
        hours = config().policy.incidents.authority_hours
        register = open_register(actor())
        incident = register.declare(
            incident_id,
            kinds=[k.value for k in kind],
            actor=actor(),
            aware_at=aware,
            detected_at=detected,
        )
    assert incident.aware_at is not None  # set by declare
    due = incident.aware_at + timedelta(hours=hours)
    if as_json:
        print_json({"incident": incident_json(incident), "authority_due_if_required": due})
        return
    left = (due - datetime.now(UTC)).total_seconds() / 3600
    say(
        f"{incident.id} declared a personal data breach ({', '.join(incident.kinds)}); aware "
        f"since {when(incident.aware_at)}"
    )
    say(
        f"the authority is owed a report by {when(due)} ({left:.1f} h left) unless the "
        "assessment finds it unlikely to result in a risk (Art. 33(1))"
    )
    print_next(register, incident)
