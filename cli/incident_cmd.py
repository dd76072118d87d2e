"""``lifecycle incident``: from a reported concern to an assessed, notified and closed breach.

report -> (triage) dismiss | declare -> scope -> assess -> draft, notify or exempt ->
corrective actions -> close; ``list`` shows the open incidents and their deadlines (72 h
to the authority from awareness), ``show`` one incident with its timeline from the
ledger. Every step is one register change committed with its ledger event
(``state.incidents``). The commands live in ``cli.incident_*``; only ``assess`` imports
Prefect, and only when it runs.
"""

from __future__ import annotations

import typer

from cli.incident_actions import actions_app, close_command
from cli.incident_assess import assess_command, subjects_command
from cli.incident_notify import draft_command, exempt_command, notify_command
from cli.incident_scope import scope_command
from cli.incident_triage import declare_command, dismiss_command, report_command
from cli.incident_view import list_command, show_command

app = typer.Typer(no_args_is_help=True)

app.command("report")(report_command)
app.command("dismiss")(dismiss_command)
app.command("declare")(declare_command)
app.command("scope")(scope_command)
app.command("assess")(assess_command)
app.command("subjects")(subjects_command)
app.command("draft")(draft_command)
app.command("notify")(notify_command)
app.command("exempt")(exempt_command)
app.add_typer(actions_app, name="action")
app.command("close")(close_command)
app.command("list")(list_command)
app.command("show")(show_command)
