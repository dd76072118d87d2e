"""Risk levels and required notifications from an assessment (GDPR Art. 33 and 34), no store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from config.schema.incidents import IncidentPolicy, RiskCondition, RiskRule
from incidents.assessment import Assessment, AtRestFact, PartAssessment
from incidents.rules import (
    AUTHORITY,
    EXEMPT,
    NOT_REQUIRED,
    REQUIRED,
    SUBJECTS,
    NotificationDue,
    judge_risk,
    notifications,
)

AWARE = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
ASSESSED = AWARE + timedelta(hours=5)


def _assessment(
    *,
    subjects: int = 10,
    records: int = 40,
    high: tuple[str, ...] = (),
    unintelligible: bool = False,
    clients: dict[str, int] | None = None,
) -> Assessment:
    part = PartAssessment(
        label="crm.orders",
        store="crm",
        records=records,
        subjects=subjects,
        identity="customer_id",
        categories=("contact", *high),
        region="eu-central-1",
        at_rest=AtRestFact(encrypted=unintelligible),
    )
    return Assessment(
        parts=(part,),
        records=records,
        subjects=subjects,
        subjects_by=("customer_id",),
        categories=("contact", *high),
        high_risk_categories=high,
        regions=("eu-central-1",),
        clients=clients or {},
        key_compromised=False if unintelligible else None,
        unintelligible=unintelligible,
    )


def _due(
    policy: IncidentPolicy, a: Assessment, kinds: tuple[str, ...] = ("confidentiality",)
) -> tuple[Assessment, dict[str, NotificationDue]]:
    judged = judge_risk(policy, a, kinds)
    return judged, {n.audience: n for n in notifications(policy, judged, AWARE, ASSESSED)}


def test_no_subject_affected_is_low_risk_and_needs_no_notification() -> None:
    judged, due = _due(IncidentPolicy(), _assessment(subjects=0, records=3))
    assert judged.risk == "low"
    assert due[AUTHORITY].status == NOT_REQUIRED and due[AUTHORITY].due_at is None
    assert due[SUBJECTS].status == NOT_REQUIRED


def test_the_authority_is_due_72_hours_after_awareness() -> None:
    judged, due = _due(IncidentPolicy(), _assessment())
    assert judged.risk == "medium"
    assert due[AUTHORITY].status == REQUIRED
    assert due[AUTHORITY].due_at == AWARE + timedelta(hours=72)
    assert due[SUBJECTS].status == NOT_REQUIRED  # Art. 34 only for high risk


def test_readable_high_risk_data_requires_telling_the_subjects() -> None:
    judged, due = _due(IncidentPolicy(subjects_hours=24), _assessment(high=("billing",)))
    assert judged.risk == "high"
    assert "high-risk" in judged.reasons[0]
    assert due[SUBJECTS].status == REQUIRED
    assert due[SUBJECTS].due_at == ASSESSED + timedelta(hours=24)


def test_encrypted_data_with_an_uncompromised_key_exempts_the_subject_notice() -> None:
    policy = IncidentPolicy(
        risk_rules=(RiskRule(level="high", when=RiskCondition(min_subjects=1), reason="any"),)
    )
    judged, due = _due(policy, _assessment(high=("billing",), unintelligible=True))
    assert judged.risk == "high"
    assert due[SUBJECTS].status == EXEMPT and "34(3)(a)" in due[SUBJECTS].because
    assert due[AUTHORITY].status == REQUIRED  # the authority is still told
    # ... unless the policy refuses that exemption
    strict = policy.model_copy(update={"subjects_exempt_when_unintelligible": False})
    _, due = _due(strict, _assessment(high=("billing",), unintelligible=True))
    assert due[SUBJECTS].status == REQUIRED


def test_the_highest_matching_rule_wins_and_conditions_all_hold() -> None:
    policy = IncidentPolicy(
        risk_rules=(
            RiskRule(level="medium", when=RiskCondition(min_records=1), reason="records"),
            RiskRule(
                level="high",
                when=RiskCondition(kinds=("integrity",), min_subjects=5),
                reason="tampered",
            ),
        )
    )
    assert judge_risk(policy, _assessment(), ("confidentiality",)).risk == "medium"
    assert judge_risk(policy, _assessment(), ("integrity",)).risk == "high"
    assert judge_risk(policy, _assessment(subjects=4), ("integrity",)).risk == "medium"


def test_each_affected_client_is_due_by_its_contract() -> None:
    policy = IncidentPolicy(client_hours=48, clients={"acme": 24})
    clients = {"acme": 3, "globex": 2, "initech": 0, "unassigned": 7}
    _, due = _due(policy, _assessment(clients=clients))
    assert due["client:acme"].due_at == AWARE + timedelta(hours=24)
    assert due["client:globex"].due_at == AWARE + timedelta(hours=48)
    assert "client:initech" not in due  # no affected subject: nothing owed
    assert "client:unassigned" not in due  # rows of no client: no one to tell


def test_an_authority_deadline_past_72_hours_is_refused() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 72"):
        IncidentPolicy(authority_hours=96)


def test_an_assessment_survives_its_json_form() -> None:
    a = judge_risk(IncidentPolicy(), _assessment(clients={"acme": 2}), ("confidentiality",))
    assert Assessment.from_json(a.to_json()) == a
    assert replace(a, risk="low") != a


def test_a_prefix_holding_an_address_is_labelled_by_a_digest() -> None:
    # Labels reach errors, output and the ledger: a subject's folder never shows as typed.
    from incidents.scope import ScopePart

    label = ScopePart(store="files", bucket="mail-archive", prefix="mail/jane@example.com/").label
    assert "jane" not in label and label.startswith("files:s3://mail-archive/<prefix sha256:")
    assert ScopePart(store="files", bucket="mail-archive", prefix="tickets/").label == (
        "files:s3://mail-archive/tickets/"
    )
