"""Object Lock and policy legal holds: what an erasure defers, with reasons and dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from connectors.base import Action, StorePlan
from connectors.s3.planning import GOVERNANCE_BYPASS
from tests.connectors.s3.conftest import (
    SUBJECT,
    ConnectorFactory,
    create_bucket,
    ignore,
    listing,
    make_policy,
    make_store,
    seed,
    under,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "contracts-eu"
TODAY = datetime.now(UTC).date().isoformat()
UNTIL = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)


def _locked_bucket(s3: S3Client) -> None:
    """One object per lock kind, under the subject's prefix, plus one unlocked."""
    create_bucket(s3, BUCKET, lock=True)
    seed(
        s3,
        BUCKET,
        ["c/1/compliance.pdf"],
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=UNTIL,
    )
    seed(
        s3,
        BUCKET,
        ["c/1/governance.pdf"],
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=UNTIL,
    )
    seed(s3, BUCKET, ["c/1/held.pdf"], ObjectLockLegalHoldStatus="ON")
    seed(s3, BUCKET, ["c/1/free.pdf"], versions=2)
    seed(s3, BUCKET, ["c/2/other.pdf"])


def _steps(plan: StorePlan) -> dict[tuple[Action, str | None], set[str]]:
    out: dict[tuple[Action, str | None], set[str]] = {}
    for s in plan.steps:
        out.setdefault((s.action, s.reason), set()).update(str(k[0]) for k in s.keys)
    return out


def _store(**bucket: Any) -> Any:
    return make_store({"name": BUCKET, "key_templates": ["c/{customer_id}/"], **bucket})


def test_object_lock_defers_compliance_governance_and_legal_hold(
    s3: S3Client, connector: ConnectorFactory
) -> None:
    _locked_bucket(s3)
    c = connector(_store())
    plan = c.plan_erasure(c.locate(SUBJECT), TODAY)
    assert _steps(plan) == {
        (Action.DELETE, None): {"c/1/free.pdf"},
        (Action.DEFER, "Object Lock COMPLIANCE retention"): {"c/1/compliance.pdf"},
        (
            Action.DEFER,
            "Object Lock GOVERNANCE retention (bucket has no allow_governance_bypass)",
        ): {"c/1/governance.pdf"},
        (Action.DEFER, "object legal hold (Object Lock)"): {"c/1/held.pdf"},
    }
    until = {s.reason: s.until for s in plan.steps if s.action is Action.DEFER}
    assert until["Object Lock COMPLIANCE retention"] == UNTIL.date().isoformat()
    assert until["object legal hold (Object Lock)"] is None
    c.execute(plan, ignore)
    left = {str(k[0]) for k in under(listing(s3, BUCKET), "c/1/")}
    assert left == {"c/1/compliance.pdf", "c/1/governance.pdf", "c/1/held.pdf"}
    result = c.verify(SUBJECT, plan)
    assert result.clean and result.deferred == {BUCKET: 3}


def test_governance_bypass_only_with_the_policys_permission(
    s3: S3Client, connector: ConnectorFactory
) -> None:
    _locked_bucket(s3)
    c = connector(_store(allow_governance_bypass=True))
    plan = c.plan_erasure(c.locate(SUBJECT), TODAY)
    assert _steps(plan)[(Action.DELETE, GOVERNANCE_BYPASS)] == {"c/1/governance.pdf"}
    c.execute(plan, ignore)
    left = {str(k[0]) for k in under(listing(s3, BUCKET), "c/1/")}
    assert left == {"c/1/compliance.pdf", "c/1/held.pdf"}  # COMPLIANCE is never bypassed
    assert {str(k[0]) for k in listing(s3, BUCKET)} >= {"c/2/other.pdf"}


def test_retention_in_force_now_defers_even_for_a_later_day(
    s3: S3Client, connector: ConnectorFactory
) -> None:
    _locked_bucket(s3)
    c = connector(_store())
    later = (UNTIL + timedelta(days=1)).date().isoformat()
    findings = c.locate(SUBJECT)
    plan = c.plan_erasure(findings, later)  # only "today" moves: now is still locked
    assert (Action.DEFER, "Object Lock COMPLIANCE retention") in _steps(plan)


def test_policy_legal_holds_on_bucket_and_prefix(s3: S3Client, connector: ConnectorFactory) -> None:
    create_bucket(s3, BUCKET)
    seed(s3, BUCKET, ["c/1/dispute/a.pdf", "c/1/other/b.pdf"], versions=2)
    base = {"reason": "litigation", "starts": "2025-01-01"}
    prefix_hold = {
        **base,
        "id": "dispute-17",
        "ends": "2099-12-31",
        "scope": {"bucket": BUCKET, "prefix": "c/1/dispute/"},
    }
    expired = {**base, "id": "old", "ends": "2025-02-01", "scope": {"bucket": BUCKET}}
    c = connector(_store(), make_policy([prefix_hold, expired]))
    plan = c.plan_erasure(c.locate(SUBJECT), TODAY)
    assert _steps(plan) == {
        (Action.DELETE, None): {"c/1/other/b.pdf"},
        (Action.DEFER, "legal hold dispute-17: litigation"): {"c/1/dispute/a.pdf"},
    }
    assert next(s.until for s in plan.steps if s.action is Action.DEFER) == "2099-12-31"
    whole = {**base, "id": "all", "scope": {"store": "files", "bucket": BUCKET}}
    c = connector(_store(), make_policy([whole]))
    plan = c.plan_erasure(c.locate(SUBJECT), TODAY)
    assert [s.action for s in plan.steps] == [Action.DEFER] and plan.steps[0].count == 4
    c.execute(plan, ignore)
    assert len(under(listing(s3, BUCKET), "c/1/")) == 4


def test_tag_scoped_hold(s3: S3Client, connector: ConnectorFactory) -> None:
    create_bucket(s3, BUCKET)
    seed(s3, BUCKET, ["c/1/a.pdf"], Tagging="case=17")
    seed(s3, BUCKET, ["c/1/b.pdf"], Tagging="case=18")
    hold = {
        "id": "case-17",
        "reason": "case 17",
        "starts": "2025-01-01",
        "scope": {"bucket": BUCKET, "tag": {"case": "17"}},
    }
    c = connector(_store(), make_policy([hold]))
    plan = c.plan_erasure(c.locate(SUBJECT), TODAY)
    assert _steps(plan) == {
        (Action.DELETE, None): {"c/1/b.pdf"},
        (Action.DEFER, "legal hold case-17: case 17"): {"c/1/a.pdf"},
    }
