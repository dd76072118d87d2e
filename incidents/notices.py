"""Notification drafts: the authority report, the subject notice and the client notice.

Rendered from templates in the config folder (``<config>/<incidents.templates>/``:
``authority.md``, ``subjects.md``, ``client.md``; a file that is missing there falls back
to the built-in one, ``incidents.notice_templates``) with ``string.Template.safe_substitute``:
a template can only place ``$name`` values, never run code, and a placeholder nobody fills
stays as written (the draft lists it). Every value comes from the incident register (the
assessment's counts, categories and regions, the timeline, the corrective actions) and
the policy; none is read from a store, so no subject's data can reach a draft.

The authority report carries the content GDPR Art. 33(3) asks for: the nature of the
breach (kinds, parts, time window), categories and approximate numbers of subjects and
records, the contact point, likely consequences and the measures taken or proposed; the
subject notice the Art. 34(2) content in plain language.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from connectors.base import UNASSIGNED
from core.errors import ConfigError, InvalidInput
from incidents.notice_templates import BUILT_IN
from incidents.rules import AUTHORITY, CLIENT_PREFIX, SUBJECTS

if TYPE_CHECKING:
    from config.schema.model import LifecycleConfig
    from incidents.assessment import Assessment, PartAssessment
    from incidents.scope import ScopePart
    from state.incident_model import Action, Incident, Notification

TEMPLATE_FILES = {"authority": "authority.md", "subjects": "subjects.md", "client": "client.md"}
_CLIENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")  # as config.schema.incidents.ClientName
NOT_ASSESSED = "not assessed yet (to follow, Art. 33(4))"

KIND_MEANING = {
    "confidentiality": "confidentiality: personal data was disclosed to or accessed by "
    "someone not entitled to it",
    "integrity": "integrity: personal data was altered without authorisation",
    "availability": "availability: personal data was lost or could not be accessed",
}
KIND_CONSEQUENCE = {
    "confidentiality": "whoever obtained the data may read or misuse it (for example for "
    "phishing, fraud or identity theft)",
    "integrity": "people may be affected by decisions or contacts based on altered data",
    "availability": "people may be unable to use a service, or their data may be lost",
}


def check_audience(value: str, option: str = "--to") -> str:
    """``authority``, ``subjects`` or ``client:NAME``, else InvalidInput naming ``option``."""
    if value in (AUTHORITY, SUBJECTS):
        return value
    if value.startswith(CLIENT_PREFIX) and _CLIENT.match(value.removeprefix(CLIENT_PREFIX)):
        return value
    raise InvalidInput(
        f"{option}: give authority, subjects or client:NAME (a client name of letters, "
        "digits, '.', '_', '-' and spaces)"
    )


def template_name(audience: str) -> str:
    """Which template an audience's draft uses: authority, subjects or client."""
    return "client" if audience.startswith(CLIENT_PREFIX) else audience


@dataclass(frozen=True)
class Draft:
    """A rendered draft: its text, the template it came from and placeholders left unfilled."""

    audience: str
    text: str
    template: str  # the file, or "built-in <name>"
    unfilled: tuple[str, ...]


def template_text(config: LifecycleConfig, name: str) -> tuple[str, str]:
    """The template ``name`` and where it came from: the config folder's, else built-in."""
    filename = TEMPLATE_FILES[name]
    if config.source is not None:
        path = config.source / config.policy.incidents.templates / filename
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8"), str(path)
            except (OSError, UnicodeDecodeError) as e:
                why = getattr(e, "strerror", None) or "not UTF-8 text"
                raise ConfigError(f"incident template {path}: cannot read it ({why})") from None
    return BUILT_IN[name], f"built-in {filename}"


def render(template: str, values: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """``template`` with ``values`` placed (``$name`` / ``${name}``; ``$$`` is a ``$``), and
    the placeholders it names that no value fills (left as written). Runs of blank lines
    (where a value was empty) become one."""
    tpl = string.Template(template)
    unfilled = tuple(sorted({n for n in tpl.get_identifiers() if n not in values}))
    text = re.sub(r"\n{3,}", "\n\n", tpl.safe_substitute(values))  # an empty value's lines
    return text, unfilled


def render_draft(
    config: LifecycleConfig,
    incident: Incident,
    notifications: Sequence[Notification],
    actions: Sequence[Action],
    audience: str,
    *,
    now: datetime,
) -> Draft:
    """The draft for ``audience`` from its template and the incident's record."""
    audience = check_audience(audience)
    text, source = template_text(config, template_name(audience))
    values = draft_values(config, incident, notifications, actions, audience, now=now)
    rendered, unfilled = render(text, values)
    return Draft(audience, rendered, source, unfilled)


# -- values -------------------------------------------------------------------------------


def when(moment: datetime | None, missing: str = "not recorded") -> str:
    """A moment as the drafts show it: minutes, UTC."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else missing


def _bullets(lines: Sequence[str], empty: str) -> str:
    return "\n".join(f"- {line}" for line in lines) if lines else empty


def _listing(items: Sequence[str], empty: str = "none") -> str:
    return ", ".join(items) if items else empty


def _window(part: ScopePart) -> str:
    if part.window is None:
        return "no time window (everything in scope)"
    column = f" by {part.window.column}" if part.window.column else ""
    return f"{when(part.window.start)} to {when(part.window.end)}{column}"


def _encrypted(p: PartAssessment) -> str:
    if p.at_rest.encrypted is None:
        return "encryption at rest unknown"
    if not p.at_rest.encrypted:
        return "not encrypted at rest"
    held = f", key held by {p.at_rest.key_held_by}" if p.at_rest.key_held_by else ""
    return f"encrypted at rest{held}"


def _part_lines(incident: Incident, a: Assessment | None) -> list[str]:
    scope = incident.scope.parts if incident.scope is not None else ()
    assessed = {p.label: p for p in a.parts} if a is not None else {}
    lines = []
    for part in scope:
        p = assessed.get(part.label)
        if p is None:
            lines.append(f"{part.label}: {_window(part)}; {NOT_ASSESSED}")
            continue
        by = f" (counted by {p.identity})" if p.identity else ""
        lines.append(
            f"{part.label}: {_window(part)}; {p.records:,} records, {p.subjects:,} "
            f"subjects{by}; categories {_listing(p.categories)}; region {p.region or 'unknown'}; "
            f"{_encrypted(p)}"
        )
    return lines


def _windows(incident: Incident) -> str:
    parts = incident.scope.parts if incident.scope is not None else ()
    found = sorted({_window(p) for p in parts if p.window is not None})
    return "; ".join(found) if found else "no time window: the whole scope"


def _consequences(config: LifecycleConfig, incident: Incident, a: Assessment | None) -> list[str]:
    lines = [KIND_CONSEQUENCE[k] for k in incident.kinds if k in KIND_CONSEQUENCE]
    if a is None:
        return [*lines, f"the risk is {NOT_ASSESSED}"]
    if a.high_risk_categories:
        lines.append(
            "data of categories the policy marks high-risk was affected: "
            + _listing([_described(config, c) for c in a.high_risk_categories])
        )
    if a.unintelligible:
        lines.append(
            "every affected store is encrypted at rest and the key was not compromised: the "
            "data is unintelligible to whoever obtained it"
        )
    lines.append(f"risk assessed as {a.risk}: " + "; ".join(a.reasons))
    return lines


def _described(config: LifecycleConfig, category: str) -> str:
    found = next((c for c in config.policy.categories if c.name == category), None)
    return f"{category} ({found.description})" if found and found.description else category


def _measures(actions: Sequence[Action]) -> list[str]:
    out = []
    for a in actions:
        due = f", due {a.due.isoformat()}" if a.due else ""
        state = {"open": "proposed", "done": "taken", "waived": "not pursued"}.get(a.status, "")
        why = f" ({a.reason})" if a.reason else ""
        out.append(f"{a.title} [{state}; owner {a.owner}{due}]{why}")
    return out


def _due(notifications: Sequence[Notification], audience: str) -> datetime | None:
    return next((n.due_at for n in notifications if n.audience == audience), None)


FIGURES = (
    "records",
    "subjects",
    "subjects_by",
    "categories",
    "categories_described",
    "high_risk_categories",
    "regions",
    "clients",
    "client_subjects",
    "risk",
    "risk_reasons",
    "unintelligible",
)
"""The values an assessment gives; ``NOT_ASSESSED`` each before there is one."""


def _figures(config: LifecycleConfig, a: Assessment | None, client: str) -> dict[str, str]:
    if a is None:
        return dict.fromkeys(FIGURES, NOT_ASSESSED)
    return {
        "records": f"{a.records:,}",
        "subjects": f"{a.subjects:,}",
        "subjects_by": _listing(a.subjects_by),
        "categories": _listing(a.categories),
        "categories_described": _bullets([_described(config, c) for c in a.categories], "-"),
        "high_risk_categories": _listing(a.high_risk_categories),
        "regions": _listing(a.regions, "unknown"),
        "clients": _listing(
            [
                f"{'no client recorded' if c == UNASSIGNED else c} ({n:,} subjects)"
                for c, n in a.clients.items()
            ]
        ),
        "client_subjects": f"{a.clients.get(client, 0):,}" if client else "",
        "risk": a.risk,
        "risk_reasons": _bullets(list(a.reasons), "-"),
        "unintelligible": "yes" if a.unintelligible else "no",
    }


def draft_values(
    config: LifecycleConfig,
    incident: Incident,
    notifications: Sequence[Notification],
    actions: Sequence[Action],
    audience: str,
    *,
    now: datetime,
) -> dict[str, str]:
    """Every ``$name`` a template may use, as text (see the built-in templates)."""
    policy = config.policy.incidents
    a = incident.assessment
    deadline = _due(notifications, AUTHORITY)
    late = deadline is not None and now > deadline
    client = audience.removeprefix(CLIENT_PREFIX) if audience.startswith(CLIENT_PREFIX) else ""
    kinds = [KIND_MEANING.get(k, k) for k in incident.kinds]
    timeline = [
        f"reported: {when(incident.reported_at)} (by {incident.reported_by})",
        f"detected: {when(incident.detected_at)}",
        f"became aware: {when(incident.aware_at)}",
        f"assessed: {when(incident.assessed_at, NOT_ASSESSED)}",
        f"authority deadline: {when(deadline, 'none set')}",
    ]
    figures = _figures(config, a, client)
    key = {True: "yes", False: "no", None: "unknown"}[incident.key_compromised]
    return {
        **figures,
        "incident_id": incident.id,
        "state": incident.state,
        "summary": incident.summary,
        "drafted_at": when(now),
        "authority": policy.authority,
        "contact": policy.contact,
        "audience": audience,
        "client": client,
        "kinds": _listing(list(incident.kinds), "not declared"),
        "nature": _bullets(kinds, "- not declared a breach yet"),
        "parts": _bullets(_part_lines(incident, a), "- no scope recorded yet"),
        "window": _windows(incident),
        "key_compromised": key,
        "consequences": _bullets(_consequences(config, incident, a), "-"),
        "measures": _bullets(_measures(actions), "- none recorded yet"),
        "reported_at": when(incident.reported_at),
        "detected_at": when(incident.detected_at),
        "aware_at": when(incident.aware_at),
        "assessed_at": when(incident.assessed_at, NOT_ASSESSED),
        "deadline": when(deadline, "none set"),
        "audience_deadline": when(_due(notifications, audience), "none set"),
        "timeline": _bullets(timeline, "-"),
        "delay_note": (
            "This notification is made more than "
            f"{policy.authority_hours} hours after we became aware of the breach (Art. 33(1)). "
            "Reasons for the delay: [state them here]."
            if late
            else ""
        ),
    }
