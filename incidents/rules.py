"""From an assessment to a risk level and the notifications it requires, with deadlines.

Pure functions of the policy (``config.schema.incidents``) and the facts:

- risk: the highest level among the policy's ``risk_rules`` whose conditions all hold;
  ``low`` when none does (a breach unlikely to result in a risk, Art. 33(1)).
- authority: required unless the risk is ``low``; due ``authority_hours`` (72) after the
  moment we became aware.
- subjects: required when the risk is ``high`` (Art. 34(1)), due ``subjects_hours`` after
  the assessment; exempt when every affected store is encrypted at rest and the key was
  not compromised (Art. 34(3)(a)) and the policy allows that exemption.
- clients: every client with affected subjects, due by its contract's hours from awareness.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from config.schema.incidents import RISK_ORDER, IncidentPolicy, RiskCondition
from connectors.base import UNASSIGNED
from incidents.assessment import Assessment

AUTHORITY = "authority"
SUBJECTS = "subjects"
CLIENT_PREFIX = "client:"

REQUIRED = "required"
SENT = "sent"
EXEMPT = "exempt"
NOT_REQUIRED = "not_required"


def _holds(when: RiskCondition, a: Assessment, kinds: tuple[str, ...]) -> bool:
    checks = (
        not when.kinds or any(k in kinds for k in when.kinds),
        not when.categories or any(c in a.categories for c in when.categories),
        when.high_risk_categories is None
        or bool(a.high_risk_categories) == when.high_risk_categories,
        when.min_subjects is None or a.subjects >= when.min_subjects,
        when.min_records is None or a.records >= when.min_records,
        when.unintelligible is None or a.unintelligible == when.unintelligible,
    )
    return all(checks)


def judge_risk(policy: IncidentPolicy, a: Assessment, kinds: tuple[str, ...]) -> Assessment:
    """``a`` with its risk level and the reasons of every rule that gave that level."""
    level, reasons = "low", []
    for rule in policy.risk_rules:
        if not _holds(rule.when, a, kinds):
            continue
        if RISK_ORDER[rule.level] > RISK_ORDER[level]:
            level, reasons = rule.level, [rule.reason]
        elif rule.level == level:
            reasons.append(rule.reason)
    if level == "low":
        reasons = reasons or ["no risk rule applies: unlikely to result in a risk to people"]
    return replace(a, risk=level, reasons=tuple(reasons))


@dataclass(frozen=True)
class NotificationDue:
    """What one audience is owed: required (by ``due_at``), exempt or not required."""

    audience: str
    status: str
    due_at: datetime | None
    because: str


def notifications(
    policy: IncidentPolicy, a: Assessment, aware_at: datetime, assessed_at: datetime
) -> list[NotificationDue]:
    """The notifications ``a`` requires under ``policy``, authority first."""
    out: list[NotificationDue] = []
    if a.risk == "low":
        out.append(
            NotificationDue(
                AUTHORITY, NOT_REQUIRED, None, "Art. 33(1): unlikely to result in a risk"
            )
        )
    else:
        out.append(
            NotificationDue(
                AUTHORITY,
                REQUIRED,
                aware_at + timedelta(hours=policy.authority_hours),
                f"Art. 33(1): risk {a.risk}; {policy.authority_hours} h from awareness",
            )
        )
    if a.risk != "high":
        out.append(NotificationDue(SUBJECTS, NOT_REQUIRED, None, "Art. 34(1): risk not high"))
    elif a.unintelligible and policy.subjects_exempt_when_unintelligible:
        out.append(
            NotificationDue(
                SUBJECTS,
                EXEMPT,
                None,
                "Art. 34(3)(a): every affected store is encrypted at rest and the key was "
                "not compromised",
            )
        )
    else:
        out.append(
            NotificationDue(
                SUBJECTS,
                REQUIRED,
                assessed_at + timedelta(hours=policy.subjects_hours),
                f"Art. 34(1): high risk; without undue delay ({policy.subjects_hours} h)",
            )
        )
    for client, subjects in sorted(a.clients.items()):
        if subjects <= 0 or client == UNASSIGNED:
            continue  # no one to notify: rows without a client are no client's
        hours = policy.client_hours_for(client)
        out.append(
            NotificationDue(
                CLIENT_PREFIX + client,
                REQUIRED,
                aware_at + timedelta(hours=hours),
                f"contract terms: {hours} h from awareness ({subjects} subjects affected)",
            )
        )
    return out
