"""Notification drafts (``incidents.notices``): the Art. 33(3) authority report, the
Art. 34(2) subject notice and the client notice, rendered from the config folder's
templates with ``string.Template`` (values placed, nothing evaluated), from the incident's
record alone. Pure: incidents are built as the register returns them, no database.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from config.loader import load_config
from config.schema.model import LifecycleConfig
from config.settings import PROJECT_ROOT
from core.errors import InvalidInput
from incidents.assessment import Assessment, AtRestFact, PartAssessment
from incidents.notice_templates import BUILT_IN
from incidents.notices import (
    NOT_ASSESSED,
    TEMPLATE_FILES,
    check_audience,
    draft_values,
    render,
    render_draft,
)
from incidents.scope import IncidentScope, ScopePart, TimeWindow
from state.incident_model import Action, Incident, Notification

DEMO = PROJECT_ROOT / "config" / "demo"
DETECTED = datetime(2026, 11, 30, 22, 40, tzinfo=UTC)
AWARE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ASSESSED = datetime(2026, 12, 1, 11, 30, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WINDOW = TimeWindow(
    start=datetime(2026, 11, 28, tzinfo=UTC),
    end=datetime(2026, 11, 30, tzinfo=UTC),
    column="occurred_at",
)
SCOPE = IncidentScope(
    parts=(
        ScopePart(store="crm", table="login_events", window=WINDOW),
        ScopePart(store="crm", table="invoices", columns=("billing_name",)),
    )
)
SUMMARY = "Reporting account read the login log and invoices in bulk"


def _assessment() -> Assessment:
    logins = PartAssessment(
        label=SCOPE.parts[0].label,
        store="crm",
        records=57,
        subjects=44,
        identity="customer_id",
        categories=("telemetry",),
        region="eu-central-1",
        at_rest=AtRestFact(encrypted=False, evidence="declared"),
    )
    invoices = PartAssessment(
        label=SCOPE.parts[1].label,
        store="crm",
        records=1175,
        subjects=803,
        identity="customer_id",
        categories=("billing",),
        region="eu-central-1",
        clients={"acme": 12},
        at_rest=AtRestFact(encrypted=True, key_held_by="us (platform team)", evidence="x"),
    )
    return Assessment(
        parts=(logins, invoices),
        records=1232,
        subjects=830,
        subjects_by=("customer_id",),
        categories=("billing", "telemetry"),
        high_risk_categories=("billing",),
        regions=("eu-central-1",),
        clients={"acme": 12},
        key_compromised=None,
        unintelligible=False,
        risk="high",
        reasons=("readable data of a high-risk category was affected",),
    )


def _incident(*, assessed: bool = True) -> Incident:
    a = _assessment() if assessed else None
    return Incident(
        id="inc_0123456789abcdef",
        state="breach",
        summary=SUMMARY,
        reported_by="security",
        reported_at=AWARE - timedelta(minutes=20),
        detected_at=DETECTED,
        aware_at=AWARE,
        kinds=("confidentiality",),
        scope=SCOPE,
        key_compromised=None,
        assessment=a,
        risk=a.risk if a else None,
        assessed_at=ASSESSED if assessed else None,
        closed_at=None,
        close_reason=None,
    )


def _due(audience: str, hours: int) -> Notification:
    base = ASSESSED if audience == "subjects" else AWARE
    return Notification(
        audience, "required", base + timedelta(hours=hours), "x", None, None, None, None
    )


NOTICES = [_due("authority", 72), _due("subjects", 72), _due("client:acme", 24)]
ACTIONS = [
    Action(1, "Revoke the reporting account's access", "security", date(2026, 12, 2), "done", None),
    Action(2, "Encrypt the invoices table's backups", "it-ops", None, "open", None),
    Action(3, "Replace the reporting tool", "it-ops", None, "waived", "retired next month"),
]


@pytest.fixture(scope="module")
def demo() -> LifecycleConfig:
    return load_config(DEMO)


def _draft(config: LifecycleConfig, audience: str, **kw: object) -> str:
    incident = kw.pop("incident", None) or _incident()
    now = kw.pop("now", NOW)
    draft = render_draft(config, incident, NOTICES, ACTIONS, audience, now=now)  # type: ignore[arg-type]
    assert draft.unfilled == ()
    return draft.text


def test_the_authority_report_holds_every_article_33_3_field(demo: LifecycleConfig) -> None:
    text = _draft(demo, "authority")

    assert text.startswith("# Personal data breach notification to the lead supervisory authority")
    # (a) nature: kinds, parts, time window; categories and approximate numbers
    assert "confidentiality: personal data was disclosed to or accessed by someone" in text
    assert (
        "- crm.login_events: 2026-11-28 00:00 UTC to 2026-11-30 00:00 UTC by occurred_at; " in text
    )
    assert "57 records, 44 subjects (counted by customer_id); categories telemetry" in text
    assert "crm.invoices[billing_name]: no time window (everything in scope); 1,175 records" in text
    assert "encrypted at rest, key held by us (platform team)" in text
    assert "Data subjects concerned: approximately 830 (distinct, counted by customer_id)" in text
    assert "Personal data records concerned: approximately 1,232" in text
    assert "Categories of personal data: billing, telemetry" in text
    assert "Categories of a high risk: billing" in text
    assert "Clients whose subjects are concerned: acme (12 subjects)" in text
    # (b) the contact point, a role from the policy
    assert "Our data protection officer: [name and contact details]." in text
    # (c) likely consequences, from the kinds, the high-risk categories and the risk reasons
    assert "whoever obtained the data may read or misuse it" in text
    assert (
        "categories the policy marks high-risk was affected: billing (Invoices and billing" in text
    )
    assert "risk assessed as high: readable data of a high-risk category was affected" in text
    # (d) measures taken or proposed: the corrective actions
    assert "- Revoke the reporting account's access [taken; owner security, due 2026-12-02]" in text
    assert "- Encrypt the invoices table's backups [proposed; owner it-ops]" in text
    assert "- Replace the reporting tool [not pursued; owner it-ops] (retired next month)" in text
    # the timeline and the 72 h deadline
    assert "- detected: 2026-11-30 22:40 UTC" in text
    assert "- became aware: 2026-12-01 09:00 UTC" in text
    assert "- authority deadline: 2026-12-04 09:00 UTC" in text
    assert f"As reported: {SUMMARY}" in text
    assert "Reasons for the delay" not in text  # in time
    assert "$" not in text and "\n\n\n" not in text


def test_a_late_report_asks_for_the_reasons_of_the_delay(demo: LifecycleConfig) -> None:
    text = _draft(demo, "authority", now=AWARE + timedelta(hours=73))
    assert "more than 72 hours after we became aware of the breach (Art. 33(1))" in text
    assert "Reasons for the delay: [state them here]." in text


def test_the_subject_notice_is_plain_language_with_article_34_2_content(
    demo: LifecycleConfig,
) -> None:
    text = _draft(demo, "subjects")

    assert text.startswith("# Important information about your personal data")
    assert "Our reference: inc_0123456789abcdef" in text
    assert "- billing (Invoices and billing details)" in text  # the categories, described
    assert "- telemetry (Login events and IP addresses)" in text
    assert "whoever obtained the data may read or misuse it" in text
    assert "Revoke the reporting account's access [taken" in text
    assert "Contact our data protection officer, quoting the reference inc_0123456789abcdef" in text
    assert SUMMARY not in text  # the internal report stays internal
    assert "crm.invoices" not in text and "customer_id" not in text  # no system names


def test_a_client_notice_gives_its_own_subjects_and_deadline(demo: LifecycleConfig) -> None:
    text = _draft(demo, "client:acme")

    assert text.startswith("# Personal data breach notification to acme")
    assert "due under our agreement by 2026-12-02 09:00 UTC" in text
    assert "Your data subjects concerned: approximately 12" in text
    assert "Records concerned in total: approximately 1,232" in text


def test_before_the_assessment_the_figures_say_they_are_to_follow(demo: LifecycleConfig) -> None:
    text = _draft(demo, "authority", incident=_incident(assessed=False))

    assert f"Data subjects concerned: approximately {NOT_ASSESSED}" in text
    window = "2026-11-28 00:00 UTC to 2026-11-30 00:00 UTC by occurred_at"
    assert f"crm.login_events: {window}; {NOT_ASSESSED}" in text
    assert f"the risk is {NOT_ASSESSED}" in text


def test_the_config_folders_templates_win_and_a_missing_one_is_built_in(
    tmp_path: Path, demo: LifecycleConfig
) -> None:
    folder = tmp_path / "config"
    shutil.copytree(DEMO, folder)
    templates = folder / "incident_templates"
    (templates / "authority.md").write_text(
        "To $authority about $incident_id: $subjects; $$5 fee\n"
    )
    (templates / "subjects.md").unlink()
    config = load_config(folder)

    authority = render_draft(config, _incident(), NOTICES, ACTIONS, "authority", now=NOW)
    assert (
        authority.text == "To lead supervisory authority about inc_0123456789abcdef: 830; $5 fee\n"
    )
    assert authority.template == str(templates / "authority.md")
    subjects = render_draft(config, _incident(), NOTICES, ACTIONS, "subjects", now=NOW)
    assert subjects.template == "built-in subjects.md"
    assert (
        subjects.text == render_draft(demo, _incident(), NOTICES, ACTIONS, "subjects", now=NOW).text
    )


def test_a_template_can_only_place_values_never_run_code(tmp_path: Path) -> None:
    hostile = (
        "${incident_id} $summary.__class__ {0.__globals__} ${__import__('os').system('x')} "
        "$nobody ${also_nobody} $ 5 %(risk)s {risk}\n"
    )
    values = {"incident_id": "inc_0123456789abcdef", "summary": "S", "risk": "high"}

    text, unfilled = render(hostile, values)

    assert text == (
        "inc_0123456789abcdef S.__class__ {0.__globals__} ${__import__('os').system('x')} "
        "$nobody ${also_nobody} $ 5 %(risk)s {risk}\n"
    )
    assert unfilled == ("also_nobody", "nobody")


def test_the_shipped_templates_use_only_known_values(demo: LifecycleConfig) -> None:
    known = set(draft_values(demo, _incident(), NOTICES, ACTIONS, "client:acme", now=NOW))
    for name, filename in TEMPLATE_FILES.items():
        for text in (BUILT_IN[name], (DEMO / "incident_templates" / filename).read_text()):
            _, unfilled = render(text, dict.fromkeys(known, ""))
            assert unfilled == (), (name, unfilled)


@pytest.mark.parametrize("good", ["authority", "subjects", "client:acme", "client:Globex Ltd."])
def test_audiences_are_authority_subjects_or_a_client(good: str) -> None:
    assert check_audience(good) == good


@pytest.mark.parametrize("bad", ["Authority", "client:", "client:robin@example.com", "dpo", ""])
def test_other_audiences_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_audience(bad)
    assert refused.value.message.startswith("--to: give authority, subjects or client:NAME")
    assert "robin" not in refused.value.message
