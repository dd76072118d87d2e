"""The demo's incident (``cli.demo_cmd``): one breach from a reported concern to closed.

Monitoring reports an unusual bulk read of the CRM's login log; triage declares it a
confidentiality breach, scopes it to the ``login_events`` rows of two days, and the
``incident-assessment`` flow counts the records and distinct subjects from the store. The
authority report is drafted from the templates (written under ``incidents/`` in the data
folder) and recorded as sent, a corrective action is added and done, and the incident
closes. Each step is one register change with its ledger event, as from the CLI
(``lifecycle incident ...``); the output shows ids, counts and deadlines, never a value.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.output import console

if TYPE_CHECKING:
    from config.schema.model import LifecycleConfig
    from state.incidents import IncidentRegister

SUMMARY = "Monitoring saw an unusual bulk read of the CRM login log by a reporting account"
REPORTED_BY = "security"
STORE, TABLE, COLUMN = "crm", "login_events", "occurred_at"
AUTHORITY_REFERENCE = "DEMO-DPA-0001"
ACTION = "Revoke the reporting account's access to the login log and rotate its credentials"


def _say(text: str) -> None:
    console.print(f"  {text}", highlight=False, markup=False, soft_wrap=True)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "-"


def _window(today: date) -> tuple[datetime, datetime]:
    """Two whole days ending yesterday at midnight (UTC): the seeded logins are recent."""
    end = datetime.combine(today - timedelta(days=1), clock(), tzinfo=UTC)
    return end - timedelta(days=2), end


def _draft(config: LifecycleConfig, register: IncidentRegister, iid: str, folder: Path) -> Path:
    from cli.incident_notify import write_draft
    from incidents.notices import render_draft

    draft = render_draft(
        config,
        register.get(iid),
        register.notifications(iid),
        register.actions(iid),
        "authority",
        now=datetime.now(UTC),
    )
    path = folder / f"{iid}-authority.md"
    write_draft(path, draft.text)
    return path


def _open(register: IncidentRegister, actor: str, today: date) -> str:
    """Report, declare and scope the breach; its id."""
    from incidents.scope import IncidentScope, ScopePart, TimeWindow

    iid = register.report(SUMMARY, reported_by=REPORTED_BY, actor=actor).id
    _say(f"{iid} reported by {REPORTED_BY}: in triage")
    incident = register.declare(iid, kinds=["confidentiality"], actor=actor)
    _say(f"declared a confidentiality breach; the 72 h clock runs from {_when(incident.aware_at)}")
    start, end = _window(today)
    window = TimeWindow(start=start, end=end, column=COLUMN)
    scope = IncidentScope(parts=(ScopePart(store=STORE, table=TABLE, window=window),))
    register.set_scope(iid, scope, key_compromised=None, actor=actor)
    _say(f"scope: {STORE}.{TABLE} from {_when(start)} to {_when(end)} (by {COLUMN})")
    return iid


def _notify(
    config: LifecycleConfig, register: IncidentRegister, iid: str, folder: Path, actor: str
) -> str | None:
    """Each notification's status; the authority report drafted and recorded as sent."""
    reference = None
    for n in register.notifications(iid):
        if n.status != "required":
            _say(f"{n.audience}: {n.status.replace('_', ' ')} ({n.because})")
            continue
        _say(f"{n.audience}: required by {_when(n.due_at)}")
        if n.audience == "authority":
            path = _draft(config, register, iid, folder)
            _say(f"authority report drafted from the templates: {path}")
            sent = register.notified(
                iid,
                "authority",
                recipient_role=config.policy.incidents.authority,
                reference=AUTHORITY_REFERENCE,
                actor=actor,
            )
            reference = sent.reference
            _say(f"authority notification recorded as sent ({reference})")
    return reference


def run_incident(
    config: LifecycleConfig, data_dir: Path, actor: str, *, today: date | None = None
) -> dict[str, Any]:
    """Run the demo's incident end to end; what it came to (for the demo's summary).
    ``today`` (default: the UTC date) places the scope's window."""
    from audit.ledger import Ledger
    from flows.incident_assessment import incident_assessment
    from state.incidents import IncidentRegister

    console.print(
        "[bold]Incident[/]: a reported concern, declared a breach, assessed from the CRM, "
        "the authority notified, closed"
    )
    started = time.perf_counter()
    register = IncidentRegister(Ledger.open(actor=actor))
    iid = _open(register, actor, today or datetime.now(UTC).date())
    incident_assessment(incident_id=iid)
    a = register.get(iid).assessment
    assert a is not None  # recorded by the flow
    _say(
        f"assessed: {a.records:,} records, {a.subjects:,} distinct subjects, categories "
        f"{', '.join(a.categories) or 'none'}; risk {a.risk} ({'; '.join(a.reasons)})"
    )
    reference = _notify(config, register, iid, data_dir / "incidents", actor)
    due = datetime.now(UTC).date() + timedelta(days=7)
    action = register.add_action(iid, title=ACTION, owner=REPORTED_BY, due=due, actor=actor)
    register.finish_action(iid, action.number, status="done", actor=actor)
    _say(f"corrective action {action.number} added (owner {REPORTED_BY}) and done")
    left = register.closing_problems(iid)
    if left:  # a policy that asks for more than the authority report: shown, left open
        _say(f"left open: {'; '.join(left)}")
        state = "open"
    else:
        state = register.close(iid, actor=actor).state
        _say(
            f"{iid} {state} in {time.perf_counter() - started:.1f} s; its timeline: "
            f"lifecycle incident show {iid}"
        )
    return {
        "incident_id": iid,
        "state": state,
        "records": a.records,
        "subjects": a.subjects,
        "risk": a.risk,
        "authority_reference": reference,
    }


def incident_result(outcome: dict[str, Any]) -> str:
    """The demo summary's line for the incident."""
    notified = (
        f"authority notified ({outcome['authority_reference']})"
        if outcome["authority_reference"]
        else "no authority report required"
    )
    return (
        f"{outcome['incident_id']} {outcome['state']}: {outcome['records']:,} records, "
        f"{outcome['subjects']:,} subjects, risk {outcome['risk']}; {notified}"
    )
