"""``lifecycle incident draft | notify | exempt``: the notifications a breach is owed.

``draft`` renders the authority report, the subject notice or a client notice from the
templates in the config folder (``incidents.notices``), filled from the incident's record:
counts and names only, never a subject's data. ``notify`` records that a notification was
sent (when, to which role, the reference), ``exempt`` why one is not made.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cli.incident_common import (
    TIME_HELP,
    IdArg,
    ToOpt,
    actor,
    config,
    hours_left,
    notification_json,
    open_register,
    parse_time,
    print_next,
    reason_checked,
    say,
    when,
)
from cli.output import JsonOption, err_console, handled_errors, print_json

OutFileOpt = Annotated[
    Path | None,
    typer.Option("--out", metavar="FILE", dir_okay=False, help="Write the draft here (mode 0600)."),
]


def write_draft(path: Path, text: str) -> None:
    """``text`` to ``path`` (mode 0600, a link there is not followed); TerminalError if not."""
    import os

    from core.errors import TerminalError
    from core.private_files import FILE_MODE, private_dir

    try:
        private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as e:
        raise TerminalError(f"cannot write {path} ({e.strerror or type(e).__name__})") from None


def draft_command(
    incident_id: IdArg, *, to: ToOpt, out: OutFileOpt = None, as_json: bool = JsonOption
) -> None:
    """Render a notification draft from the templates in the config folder.

    The authority report (GDPR Art. 33(3)), the subject notice (Art. 34(2)) or a client
    notice, filled from the incident's record (counts and names, never a subject's data).

    Exit codes: 0 drafted; 1 unknown id or a template that cannot be read; 2 an audience
    that is not authority, subjects or client:NAME.
    """
    from incidents.notices import check_audience, render_draft

    with handled_errors():
        audience = check_audience(to)
        register = open_register(actor())
        incident = register.get(incident_id)
        draft = render_draft(
            config(),
            incident,
            register.notifications(incident_id),
            register.actions(incident_id),
            audience,
            now=datetime.now(UTC),
        )
        if out is not None:
            write_draft(out, draft.text)
    if as_json:
        print_json(
            {
                "incident_id": incident_id,
                "audience": audience,
                "template": draft.template,
                "unfilled": list(draft.unfilled),
                "out": str(out) if out is not None else None,
                "text": draft.text if out is None else None,
            }
        )
        return
    if out is None:
        typer.echo(draft.text, nl=not draft.text.endswith("\n"))
    note = err_console if out is None else None  # keep stdout the draft alone
    lines = [f"draft for {audience} from {draft.template}" + (f" written to {out}" if out else "")]
    if draft.unfilled:
        lines.append(
            "placeholders no value fills (left as written): "
            + ", ".join(f"${name}" for name in draft.unfilled)
        )
    if incident.assessment is None:
        lines.append("not assessed yet: counts and risk say so; assess it for the figures")
    lines.append(
        f"next: check and complete it, send it, then `lifecycle incident notify {incident_id} "
        f"--to {audience} --recipient ROLE --reference REF`"
    )
    for line in lines:
        if note is not None:
            note.print(line, highlight=False, markup=False, soft_wrap=True)
        else:
            say(line)


RecipientOpt = Annotated[
    str,
    typer.Option("--recipient", metavar="ROLE", help="Who it was sent to, as a role."),
]
ReferenceOpt = Annotated[
    str,
    typer.Option("--reference", metavar="REF", help="The case or message reference it went under."),
]
SentAtOpt = Annotated[
    str | None,
    typer.Option("--sent-at", metavar="TIME", help=f"When it was sent (default now; {TIME_HELP})."),
]


def notify_command(
    incident_id: IdArg,
    *,
    to: ToOpt,
    recipient: RecipientOpt,
    reference: ReferenceOpt,
    sent_at: SentAtOpt = None,
    as_json: bool = JsonOption,
) -> None:
    """Record that a notification was sent: to whom (a role), the reference, when.

    Exit codes: 0 recorded; 1 refused (no such notification: assess first; already sent;
    not a declared breach); 2 a malformed audience, role, reference or time.
    """
    from incidents.notices import check_audience

    sent = parse_time(sent_at, "--sent-at")
    with handled_errors():
        audience = check_audience(to)
        register = open_register(actor())
        n = register.notified(
            incident_id,
            audience,
            recipient_role=recipient,
            reference=reference,
            actor=actor(),
            sent_at=sent,
        )
        incident = register.get(incident_id)
    now = datetime.now(UTC)
    if as_json:
        print_json({"incident_id": incident_id, "notification": notification_json(n, now)})
        return
    late = n.due_at is not None and n.sent_at is not None and n.sent_at > n.due_at
    timing = (
        f" ({hours_left(n.due_at, n.sent_at or now).replace('overdue', 'late')})"
        if late
        else (f" (due {when(n.due_at)})" if n.due_at else "")
    )
    say(
        f"{incident_id}: {audience} notification recorded as sent {when(n.sent_at)} to "
        f"{n.recipient_role}, reference {n.reference}{timing}"
    )
    print_next(register, incident)


def exempt_command(
    incident_id: IdArg,
    *,
    to: ToOpt,
    reason: Annotated[
        str,
        typer.Option(
            "--reason", help="Why it is not made, e.g. Art. 34(3)(a): encrypted, key safe."
        ),
    ],
    as_json: bool = JsonOption,
) -> None:
    """Record why a notification is not made (an exemption with its reason).

    Exit codes: 0 recorded; 1 refused (already sent, no such notification, not a declared
    breach); 2 a reason holding personal data, a malformed audience.
    """
    from incidents.notices import check_audience

    with handled_errors():
        audience = check_audience(to)
        reason_checked(reason)
        register = open_register(actor())
        n = register.exempt(incident_id, audience, reason=reason, actor=actor())
        incident = register.get(incident_id)
    if as_json:
        print_json(
            {"incident_id": incident_id, "notification": notification_json(n, datetime.now(UTC))}
        )
        return
    say(f"{incident_id}: {audience} notification recorded as exempt (the reason is kept)")
    print_next(register, incident)
