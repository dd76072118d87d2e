"""policy.yaml ``incidents``: who is notified of a breach, by when, and how risk is judged.

GDPR Art. 33(1): the supervisory authority within 72 hours of becoming aware of a breach,
unless it is unlikely to result in a risk (risk level ``low``); Art. 34: the subjects
without undue delay when the risk is high, unless the data was unintelligible to whoever
got it (encrypted, key not compromised: Art. 34(3)(a)); clients as their contracts say.
The risk level is the highest level of the ``risk_rules`` whose conditions all hold.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from config.schema.common import Name, NonEmpty, Strict, shaped

RiskLevel = Literal["low", "medium", "high"]
BreachKind = Literal["confidentiality", "integrity", "availability"]
RISK_ORDER: dict[str, int] = {"low": 0, "medium": 1, "high": 2}
AUTHORITY_MAX_HOURS = 72  # GDPR Art. 33(1)

ClientName = Annotated[
    str,
    shaped(
        r"^[A-Za-z0-9][A-Za-z0-9._ -]*$",
        "must be a client's value of the client column: letters, digits, '.', '_', '-', spaces",
    ),
]


class RiskCondition(Strict):
    """Conditions of a risk rule; every one given must hold (an empty one always holds)."""

    kinds: tuple[BreachKind, ...] = Field(default=(), description="Any of these breach kinds.")
    categories: tuple[Name, ...] = Field(
        default=(), description="Any of these data categories is affected."
    )
    high_risk_categories: bool | None = Field(
        default=None, description="true: a category marked high_risk is affected."
    )
    min_subjects: int | None = Field(default=None, ge=0)
    min_records: int | None = Field(default=None, ge=0)
    unintelligible: bool | None = Field(
        default=None,
        description="true: every affected store is encrypted at rest and the key was not "
        "compromised; false: some affected data was readable.",
    )


class RiskRule(Strict):
    """``level`` applies when every condition in ``when`` holds."""

    level: RiskLevel
    when: RiskCondition = RiskCondition()
    reason: str = Field(min_length=1, description="Why: shown in the assessment and ledger.")


DEFAULT_RULES: tuple[RiskRule, ...] = (
    RiskRule(
        level="medium",
        when=RiskCondition(min_subjects=1),
        reason="personal data of identifiable subjects was affected",
    ),
    RiskRule(
        level="high",
        when=RiskCondition(high_risk_categories=True, min_subjects=1, unintelligible=False),
        reason="readable data of a high-risk category was affected",
    ),
    RiskRule(
        level="high",
        when=RiskCondition(kinds=("confidentiality",), min_subjects=1000, unintelligible=False),
        reason="readable personal data of 1,000 or more subjects was disclosed",
    ),
)


class IncidentPolicy(Strict):
    """Notification deadlines and risk rules for personal data breaches."""

    authority: str = Field(
        default="supervisory authority",
        min_length=1,
        max_length=120,
        description="Who the authority report goes to (a role or institution, no person).",
    )
    contact: str = Field(
        default="data protection officer",
        min_length=1,
        max_length=120,
        description="The contact point notifications name for more information (Art. 33(3)(b), "
        "34(2)): a role, no person's details.",
    )
    authority_hours: int = Field(
        default=AUTHORITY_MAX_HOURS,
        ge=1,
        le=AUTHORITY_MAX_HOURS,
        description="Hours from awareness to notify the authority (GDPR Art. 33(1): 72 at most).",
    )
    subjects_hours: int = Field(
        default=72,
        ge=1,
        description="Hours from the assessment to tell subjects ('without undue delay').",
    )
    client_hours: int = Field(
        default=48, ge=1, description="Hours from awareness to notify a client, by contract."
    )
    clients: dict[ClientName, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, description="Contract terms per client: hours to notify them."
    )
    warn_hours: int = Field(
        default=12, ge=1, description="A deadline this close is 'near' (event and automation)."
    )
    subjects_exempt_when_unintelligible: bool = Field(
        default=True,
        description="Art. 34(3)(a): no subject notice when every affected store is encrypted "
        "at rest and the key was not compromised.",
    )
    risk_rules: Annotated[tuple[RiskRule, ...], NonEmpty] = DEFAULT_RULES
    templates: str = Field(
        default="incident_templates",
        description="Folder of notification templates, relative to the config folder.",
    )
    report_roles: tuple[Name, ...] = Field(
        default=(), description="Roles a concern may be reported by (empty: any role name)."
    )

    def client_hours_for(self, client: str) -> int:
        """Hours to notify ``client`` under its contract (the default terms otherwise)."""
        return self.clients.get(client, self.client_hours)
