"""S3 lifecycle rules from the retention policy: rendering, diff, apply (moto ``mock_aws``).

moto stores lifecycle configurations and returns them as AWS does, but never runs them
(no object ever expires): these tests model AWS's configuration API only, not expiry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from config.loader import load_config
from config.schema import LifecycleConfig
from config.schema.policy import LegalHold, RetentionRule
from connectors.s3.lifecycle import (
    LeftToSweep,
    current_rules,
    desired_rules,
    diff,
    drift,
    expiration_days,
    normalise,
)
from connectors.s3.lifecycle import apply as apply_rules
from core.errors import TerminalError
from retention.targets import Clock, Condition, resolve_targets
from tests.connectors.s3.conftest import create_bucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

NOW = datetime(2026, 3, 1, tzinfo=UTC)  # HOLD-2026-001 (the legal archive) is in force
TICKETS = "demo-ticket-attachments"
ARCHIVE = "demo-legal-archive"
TICKET_RULES: list[dict[str, Any]] = [
    {
        "ID": "lifecycle-ticket-attachments-2y",
        "Filter": {"Prefix": "tickets/"},
        "Status": "Enabled",
        "Expiration": {"Days": 731},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 731},
    },
    {
        "ID": "lifecycle-ticket-attachments-2y-markers",
        "Filter": {"Prefix": "tickets/"},
        "Status": "Enabled",
        "Expiration": {"ExpiredObjectDeleteMarker": True},
    },
]
FOREIGN: dict[str, Any] = {
    "ID": "archive-old-logs",
    "Filter": {"And": {"Prefix": "logs/", "Tags": [{"Key": "kind", "Value": "log"}]}},
    "Status": "Enabled",
    "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}],
    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
}


def _with(
    config: LifecycleConfig,
    rules: tuple[dict[str, Any], ...] = (),
    holds: tuple[dict[str, Any], ...] = (),
    keep_holds: bool = True,
) -> LifecycleConfig:
    """The demo configuration with extra retention rules and legal holds."""
    policy = config.policy.model_copy(
        update={
            "retention": (
                *config.policy.retention,
                *(RetentionRule.model_validate(r) for r in rules),
            ),
            "legal_holds": (
                *(config.policy.legal_holds if keep_holds else ()),
                *(LegalHold.model_validate(h) for h in holds),
            ),
        }
    )
    return config.model_copy(update={"policy": policy})


ARCHIVE_RULE = {
    "id": "legal-archive-10y",
    "store": "files",
    "bucket": ARCHIVE,
    "age": "10y",
    "action": "delete",
}


@pytest.fixture
def demo() -> LifecycleConfig:
    return load_config()  # the demo config (isolated settings leave the default in place)


def _condition(age: str, approx_days: float) -> Condition:
    return Condition("r", age, approx_days, Clock(None), datetime(2020, 1, 1))


# -- rendering (pure) ----------------------------------------------------------------------


def test_demo_renders_the_ticket_attachment_rules_exactly(demo: LifecycleConfig) -> None:
    plan = desired_rules(resolve_targets(demo, NOW))
    # 2y: approx 730.485 days, and two calendar years span at most 731 (one leap day).
    assert plan.rules == {TICKETS: TICKET_RULES}
    assert plan.left_to_sweep == ()


def test_a_held_bucket_gets_no_rule_and_says_why(demo: LifecycleConfig) -> None:
    config = _with(demo, rules=(ARCHIVE_RULE,))
    plan = desired_rules(resolve_targets(config, NOW))
    assert plan.rules[ARCHIVE] == []  # present: a stale rule of ours there must be removed
    assert plan.left_to_sweep == (
        LeftToSweep(f"files/{ARCHIVE}/", "files", ARCHIVE, None, ("held by HOLD-2026-001",)),
    )
    # Without the hold the same target is enforceable.
    free = desired_rules(resolve_targets(_with(demo, (ARCHIVE_RULE,), keep_holds=False), NOW))
    assert [r["ID"] for r in free.rules[ARCHIVE]] == [
        "lifecycle-legal-archive-10y",
        "lifecycle-legal-archive-10y-markers",
    ]
    assert free.rules[ARCHIVE][0]["Filter"] == {"Prefix": ""}
    assert free.rules[ARCHIVE][0]["Expiration"] == {"Days": 3653}


def test_a_hold_that_has_not_started_already_blocks_the_rule(demo: LifecycleConfig) -> None:
    config = _with(demo, rules=(ARCHIVE_RULE,))
    before = datetime(2025, 12, 1, tzinfo=UTC)  # HOLD-2026-001 starts on 2026-01-01
    upcoming = [h for h in config.policy.legal_holds if h.starts > before.date()]
    plan = desired_rules(resolve_targets(config, before), upcoming)
    assert plan.rules[ARCHIVE] == []
    assert plan.left_to_sweep[0].reasons == ("hold HOLD-2026-001 from 2026-01-01",)


def test_partial_holds_and_narrower_prefixes_stay_with_the_sweep(demo: LifecycleConfig) -> None:
    config = _with(
        demo,
        rules=({"id": "support-5y", "category": "support", "age": "5y", "action": "delete"},),
        holds=(
            {
                "id": "HOLD-T-1",
                "reason": "one customer's dispute",
                "scope": {"store": "files", "bucket": TICKETS, "prefix": "tickets/42/"},
                "starts": "2026-01-01",
            },
        ),
    )
    plan = desired_rules(resolve_targets(config, NOW))
    assert plan.rules[TICKETS] == []
    reasons = {t.prefix: t.reasons for t in plan.left_to_sweep}
    assert reasons == {
        None: ("partial hold HOLD-T-1", "excluded prefixes tickets/"),
        "tickets/": ("partial hold HOLD-T-1",),
    }


def test_the_longest_condition_governs_days_and_id(demo: LifecycleConfig) -> None:
    # A 5-year category rule over the whole bucket also reaches tickets/ (2 years): objects
    # there go after 5 years. The whole-bucket target excludes tickets/, so the sweep has it.
    config = _with(
        demo, rules=({"id": "support-5y", "category": "support", "age": "5y", "action": "delete"},)
    )
    plan = desired_rules(resolve_targets(config, NOW))
    main = plan.rules[TICKETS][0]
    assert main["ID"] == "lifecycle-support-5y"
    assert main["Filter"] == {"Prefix": "tickets/"}
    assert main["Expiration"] == {"Days": 1827}  # 5 * 365 + 2 leap days at most
    assert main["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1827}
    assert [t.prefix for t in plan.left_to_sweep] == [None]


def test_one_rule_governing_two_prefixes_gets_distinct_stable_ids(demo: LifecycleConfig) -> None:
    config = _with(
        demo,
        rules=(
            {"id": "support-5y", "category": "support", "age": "5y", "action": "delete"},
            {
                "id": "notes-1y",
                "store": "files",
                "bucket": TICKETS,
                "prefix": "notes/",
                "age": "1y",
                "action": "delete",
            },
        ),
    )
    ids = [r["ID"] for r in desired_rules(resolve_targets(config, NOW)).rules[TICKETS]]
    again = [r["ID"] for r in desired_rules(resolve_targets(config, NOW)).rules[TICKETS]]
    assert ids == again
    assert len(set(ids)) == 4
    assert all(i.startswith("lifecycle-support-5y-") and len(i) <= 255 for i in ids)


@pytest.mark.parametrize(
    ("age", "approx", "days"),
    [
        ("90d", 90.0, 90),
        ("2y", 730.485, 731),
        ("1m", 30.436875, 31),
        ("6m", 182.62125, 184),  # Jan 1 back to Jul 1; ceil(approx_days) would say 183
        ("P1Y6M", 547.86375, 550),
    ],
)
def test_expiration_days_are_never_shorter_than_the_calendar(
    age: str, approx: float, days: int
) -> None:
    assert expiration_days(_condition(age, approx)) == days


# -- diff (pure) -----------------------------------------------------------------------------


def test_diff_reports_add_change_remove_and_unmanaged() -> None:
    changed = {**TICKET_RULES[0], "Expiration": {"Days": 700}, "Status": "Disabled"}
    stale = {**TICKET_RULES[1], "ID": "lifecycle-old-rule-markers"}
    result = diff(TICKET_RULES, [changed, stale, FOREIGN], bucket=TICKETS)
    assert not result.in_sync
    assert [r["ID"] for r in result.add] == ["lifecycle-ticket-attachments-2y-markers"]
    assert [(c.id, c.fields) for c in result.change] == [
        (
            "lifecycle-ticket-attachments-2y",
            {"Status": ("Disabled", "Enabled"), "ExpirationDays": (700, 731)},
        )
    ]
    assert [r["ID"] for r in result.remove] == ["lifecycle-old-rule-markers"]
    assert result.unmanaged == (normalise(FOREIGN),)
    assert normalise(FOREIGN)["Other"] == [
        "AbortIncompleteMultipartUpload.DaysAfterInitiation",
        "Filter.And",
        "Transitions",
    ]
    assert result.to_json()["change"] == [
        {
            "id": "lifecycle-ticket-attachments-2y",
            "fields": {
                "Status": {"before": "Disabled", "after": "Enabled"},
                "ExpirationDays": {"before": 700, "after": 731},
            },
        }
    ]


def test_extra_actions_on_a_managed_rule_are_a_change() -> None:
    tampered = {**TICKET_RULES[0], "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}
    result = diff(TICKET_RULES, [tampered, TICKET_RULES[1]])
    assert [(c.id, c.fields) for c in result.change] == [
        ("lifecycle-ticket-attachments-2y", {"Other": (["Transitions"], [])})
    ]


def test_equivalent_prefix_forms_are_in_sync() -> None:
    # A legacy top-level Prefix and an omitted ExpiredObjectDeleteMarker=False mean the same.
    legacy = {k: v for k, v in TICKET_RULES[0].items() if k != "Filter"} | {"Prefix": "tickets/"}
    assert diff(TICKET_RULES, [legacy, TICKET_RULES[1]]).in_sync


# -- against moto ----------------------------------------------------------------------------


def test_a_bucket_without_configuration_has_no_rules(s3: S3Client) -> None:
    create_bucket(s3, TICKETS)
    assert current_rules(s3, TICKETS) == []
    assert [r["ID"] for r in drift(s3, TICKETS, TICKET_RULES).add] == [
        r["ID"] for r in TICKET_RULES
    ]


def test_apply_then_drift_is_in_sync_and_unmanaged_rules_survive(s3: S3Client) -> None:
    create_bucket(s3, TICKETS)
    old = {**TICKET_RULES[0], "Expiration": {"Days": 30}}
    stale = {**TICKET_RULES[1], "ID": "lifecycle-gone"}
    legacy = {"ID": "legacy-tmp", "Prefix": "tmp/", "Status": "Enabled", "Expiration": {"Days": 1}}
    configuration: Any = {"Rules": [old, stale, FOREIGN]}
    s3.put_bucket_lifecycle_configuration(Bucket=TICKETS, LifecycleConfiguration=configuration)
    before = drift(s3, TICKETS, TICKET_RULES)
    assert (len(before.add), len(before.change), len(before.remove)) == (1, 1, 1)

    put = apply_rules(s3, TICKETS, TICKET_RULES, [*current_rules(s3, TICKETS), legacy])

    after = drift(s3, TICKETS, TICKET_RULES)
    assert after.in_sync
    assert after.unchanged == tuple(r["ID"] for r in TICKET_RULES)
    assert sorted(r["ID"] for r in put) == sorted(
        ["archive-old-logs", "legacy-tmp", *(r["ID"] for r in TICKET_RULES)]
    )
    stored = {r["ID"]: r for r in current_rules(s3, TICKETS)}
    assert stored["archive-old-logs"] == FOREIGN  # kept field for field
    assert stored["legacy-tmp"]["Filter"] == {"Prefix": "tmp/"}  # same meaning, Filter form
    assert "lifecycle-gone" not in stored


def test_apply_with_nothing_left_deletes_the_configuration(s3: S3Client) -> None:
    create_bucket(s3, ARCHIVE, lock=True)
    apply_rules(s3, ARCHIVE, TICKET_RULES, [])
    assert len(current_rules(s3, ARCHIVE)) == 2
    # A hold now covers the bucket: our rules must go, and nothing else was there.
    assert apply_rules(s3, ARCHIVE, [], current_rules(s3, ARCHIVE)) == []
    assert current_rules(s3, ARCHIVE) == []
    assert drift(s3, ARCHIVE, []).in_sync


def test_s3_errors_are_translated(s3: S3Client) -> None:
    with pytest.raises(TerminalError) as caught:
        current_rules(s3, "no-such-bucket-here", store="files")
    assert caught.value.fields["code"] == "NoSuchBucket"
    assert caught.value.message == (
        "store 'files', bucket 'no-such-bucket-here': GetBucketLifecycleConfiguration failed "
        "(NoSuchBucket)"
    )
