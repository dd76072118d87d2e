"""Retention rules and legal holds resolved into sweep targets, and ``explain``: no store.

Every configuration here is built from plain dicts through the pydantic models and then
put through the same cross-reference checks ``load_config`` runs, so the tests only ever
resolve configurations a user could actually load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from config.crossref import check
from config.durations import Duration
from config.problems import LineMap, Problem, Reporter
from config.schema import LifecycleConfig
from core.errors import NotFoundError
from retention.explain import explain
from retention.targets import Clock, SweepTarget, resolve_targets

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
TODAY = date(2026, 3, 15)
SUBJECT = "psn_" + "ab" * 16

TABLES: list[dict[str, Any]] = [
    {
        "name": "customers",
        "identity": [{"column": "email", "kind": "email"}],
        "derives": [{"column": "id", "as": "customer_id"}],
        "fields": {
            "email": ["contact"],
            "full_name": ["contact"],
            "phone": ["contact"],
            "contract_ended_at": ["contract"],
        },
        "timestamps": {"created": "created_at"},
    },
    {
        "name": "orders",
        "fields": {"shipping_address": ["contact", "order_history"]},
        "timestamps": {"created": "ordered_at"},
    },
    {
        "name": "support_tickets",
        "references": [{"columns": ["customer_id"], "table": "customers", "to_columns": ["id"]}],
        "fields": {"subject": ["support"], "body": ["support"]},
        "timestamps": {"created": "created_at"},
    },
    {
        "name": "login_events",
        "fields": {"ip_address": ["telemetry"], "occurred_at": ["telemetry"]},
        "timestamps": {"created": "occurred_at"},
    },
    {"name": "invoices", "fields": {"billing_name": ["billing"]}},
]

BUCKETS: list[dict[str, Any]] = [
    {"name": "tickets-eu", "categories": ["support"], "key_templates": ["tickets/{customer_id}/"]},
    {"name": "archive-eu", "categories": ["billing"], "subject_tag": "subject"},
]


def make_config(
    rules: Sequence[Mapping[str, Any]] = (), holds: Sequence[Mapping[str, Any]] = ()
) -> LifecycleConfig:
    """A CRM store and a file store with ``rules`` and ``holds``, checked as on load."""
    raw = {
        "inventory": {
            "stores": [
                {
                    "type": "sql",
                    "name": "crm",
                    "url": "sqlite:///unused.db",
                    "region": "eu-central-1",
                    "tables": TABLES,
                },
                {"type": "s3", "name": "files", "region": "eu-central-1", "buckets": BUCKETS},
            ]
        },
        "policy": {
            "categories": [
                {"name": n}
                for n in ("contact", "order_history", "support", "telemetry", "billing", "contract")
            ],
            "requests": {"approval": {"approvers": ["privacy-officer"], "unverified_ui": True}},
            "retention": list(rules),
            "legal_holds": list(holds),
        },
    }
    config = LifecycleConfig.model_validate(raw)
    problems: list[Problem] = []
    check(
        config.inventory,
        config.policy,
        Reporter("inventory.yaml", LineMap({}), problems),
        Reporter("policy.yaml", LineMap({}), problems),
    )
    assert not problems, [str(p) for p in problems]
    return config


def table_rule(
    rule_id: str, table: str, age: str, action: str = "delete", **extra: Any
) -> dict[str, Any]:
    return {"id": rule_id, "store": "crm", "table": table, "age": age, "action": action, **extra}


def bucket_rule(rule_id: str, age: str, prefix: str | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": rule_id,
        "store": "files",
        "bucket": "tickets-eu",
        "age": age,
        "action": "delete",
    }
    if prefix is not None:
        rule["prefix"] = prefix
    return rule


def hold(
    hold_id: str, scope: Mapping[str, Any], starts: date, ends: date | None = None
) -> dict[str, Any]:
    return {
        "id": hold_id,
        "reason": "litigation",
        "scope": dict(scope),
        "starts": starts,
        "ends": ends,
    }


def by_id(targets: Sequence[SweepTarget]) -> dict[str, SweepTarget]:
    return {t.id: t for t in targets}


def cutoff(age: str, now: datetime = NOW) -> datetime:
    return Duration.parse(age).before(now).astimezone(UTC).replace(tzinfo=None)


def rule_set(target: SweepTarget) -> set[str]:
    return {c.rule_id for c in target.conditions}


# --- SQL tables -------------------------------------------------------------------------


def test_table_delete_rule_gives_one_delete_target_cut_off_at_its_age_before_now() -> None:
    config = make_config(
        [table_rule("logins-90d", "login_events", "90d", measured_from={"column": "occurred_at"})]
    )

    [target] = resolve_targets(config, NOW)

    assert (target.id, target.kind, target.store, target.table) == (
        "crm.login_events:delete",
        "sql",
        "crm",
        "login_events",
    )
    assert target.action == "delete"
    assert target.fields == ()
    [cond] = target.conditions
    assert cond.rule_id == "logins-90d"
    assert cond.age == "90d"
    assert cond.clock == Clock("occurred_at")
    assert cond.cutoff == datetime(2025, 12, 15, 12, 0)  # naive UTC
    assert cond.cutoff.tzinfo is None
    assert cond.cutoff == cutoff("90d")
    assert target.label == "crm.login_events"
    assert not target.held
    assert target.holds == ()
    assert target.partial_holds == ()


def test_cutoff_of_an_aware_non_utc_now_is_naive_utc() -> None:
    config = make_config([table_rule("logins-90d", "login_events", "90d")])
    now = datetime(2026, 3, 15, 14, 0, tzinfo=timezone(timedelta(hours=2)))

    [target] = resolve_targets(config, now)

    assert target.conditions[0].cutoff == datetime(2025, 12, 15, 12, 0)


def test_calendar_years_step_back_whole_years_clamping_leap_days() -> None:
    config = make_config([table_rule("tickets-1y", "support_tickets", "1y")])

    [target] = resolve_targets(config, datetime(2028, 2, 29, 8, 0, tzinfo=UTC))

    assert target.conditions[0].cutoff == datetime(2027, 2, 28, 8, 0)


def test_table_rule_without_measured_from_runs_from_timestamps_created() -> None:
    config = make_config([table_rule("tickets-2y", "support_tickets", "2y")])

    [target] = resolve_targets(config, NOW)

    assert target.conditions[0].clock == Clock("created_at")
    assert target.conditions[0].clock.describe() == "created_at"


def test_clock_through_references_is_carried_and_described() -> None:
    via = [{"columns": ["customer_id"], "table": "customers", "to_columns": ["id"]}]
    config = make_config(
        [
            table_rule(
                "tickets-after-contract",
                "support_tickets",
                "3y",
                measured_from={"column": "contract_ended_at", "via": via},
            )
        ]
    )

    [target] = resolve_targets(config, NOW)

    clock = target.conditions[0].clock
    assert clock.column == "contract_ended_at"
    assert [(r.columns, r.table, r.to_columns) for r in clock.via] == [
        (("customer_id",), "customers", ("id",))
    ]
    assert clock.describe() == "customers.contract_ended_at (via customer_id->customers)"


@pytest.mark.parametrize("order", ["short-first", "long-first"])
def test_overlapping_delete_rules_make_one_target_governed_by_the_longest(order: str) -> None:
    rules = [
        table_rule("tickets-2y", "support_tickets", "2y"),
        table_rule("tickets-7y", "support_tickets", "7y"),
    ]
    if order == "long-first":
        rules.reverse()
    config = make_config(rules)

    [target] = resolve_targets(config, NOW)

    assert target.id == "crm.support_tickets:delete"
    assert rule_set(target) == {"tickets-2y", "tickets-7y"}
    assert target.governing.rule_id == "tickets-7y"
    assert target.governing.cutoff == cutoff("7y")
    # Rows go only once every condition holds: the 7-year cut-off is the earlier one.
    assert max(c.cutoff for c in target.conditions) == cutoff("2y")
    assert min(c.cutoff for c in target.conditions) == target.governing.cutoff
    assert target.rule_ids == ("tickets-7y", "tickets-2y")


def test_category_delete_on_a_table_holding_only_that_category_deletes_rows() -> None:
    config = make_config(
        [{"id": "telemetry-1y", "category": "telemetry", "age": "1y", "action": "delete"}]
    )

    targets = resolve_targets(config, NOW)

    assert [t.id for t in targets] == ["crm.login_events:delete"]
    [cond] = targets[0].conditions
    assert cond.clock == Clock("occurred_at")  # the table's timestamps.created
    assert cond.cutoff == cutoff("1y")


def test_category_delete_on_mixed_tables_anonymizes_only_that_categorys_fields() -> None:
    config = make_config(
        [{"id": "contact-5y", "category": "contact", "age": "5y", "action": "delete"}]
    )

    targets = by_id(resolve_targets(config, NOW))

    # customers also holds contract data, orders also order history: neither loses rows.
    assert set(targets) == {
        "crm.customers:anonymize:email,full_name,phone",
        "crm.orders:anonymize:shipping_address",
    }
    customers = targets["crm.customers:anonymize:email,full_name,phone"]
    assert customers.action == "anonymize"
    assert customers.fields == ("email", "full_name", "phone")  # not contract_ended_at
    assert customers.conditions[0].clock == Clock("created_at")
    orders = targets["crm.orders:anonymize:shipping_address"]
    assert orders.fields == ("shipping_address",)
    assert orders.conditions[0].clock == Clock("ordered_at")


def test_category_rule_reaches_tables_and_tagged_buckets() -> None:
    config = make_config(
        [{"id": "support-3y", "category": "support", "age": "3y", "action": "delete"}]
    )

    targets = by_id(resolve_targets(config, NOW))

    assert set(targets) == {"crm.support_tickets:delete", "files/tickets-eu/"}
    bucket = targets["files/tickets-eu/"]
    assert (bucket.kind, bucket.bucket, bucket.prefix) == ("s3", "tickets-eu", None)
    assert bucket.conditions[0].clock == Clock(None)
    assert bucket.conditions[0].clock.describe() == "LastModified"


def test_category_and_table_delete_rules_on_one_table_combine() -> None:
    config = make_config(
        [
            {"id": "telemetry-1y", "category": "telemetry", "age": "1y", "action": "delete"},
            table_rule("logins-90d", "login_events", "90d"),
        ]
    )

    [target] = resolve_targets(config, NOW)

    assert rule_set(target) == {"telemetry-1y", "logins-90d"}
    assert target.governing.rule_id == "telemetry-1y"


def test_anonymize_rules_on_overlapping_fields_are_grouped_per_field_set() -> None:
    ended = {"column": "contract_ended_at"}
    config = make_config(
        [
            table_rule(
                "anon-3y",
                "customers",
                "3y",
                "anonymize",
                fields=["email", "phone"],
                measured_from=ended,
            ),
            table_rule(
                "anon-5y",
                "customers",
                "5y",
                "anonymize",
                fields=["phone", "full_name"],
                measured_from=ended,
            ),
        ]
    )

    targets = by_id(resolve_targets(config, NOW))

    assert set(targets) == {
        "crm.customers:anonymize:email",
        "crm.customers:anonymize:full_name",
        "crm.customers:anonymize:phone",
    }
    assert rule_set(targets["crm.customers:anonymize:email"]) == {"anon-3y"}
    assert rule_set(targets["crm.customers:anonymize:full_name"]) == {"anon-5y"}
    phone = targets["crm.customers:anonymize:phone"]
    assert phone.fields == ("phone",)
    assert rule_set(phone) == {"anon-3y", "anon-5y"}  # a field waits for every rule on it
    assert phone.governing.rule_id == "anon-5y"
    assert all(
        c.clock == Clock("contract_ended_at") for t in targets.values() for c in t.conditions
    )


def test_anonymize_rules_on_the_same_fields_make_one_target() -> None:
    config = make_config(
        [
            table_rule("anon-3y", "customers", "3y", "anonymize", fields=["phone", "email"]),
            table_rule("anon-4y", "customers", "4y", "anonymize", fields=["email", "phone"]),
        ]
    )

    [target] = resolve_targets(config, NOW)

    assert target.id == "crm.customers:anonymize:email,phone"
    assert target.fields == ("email", "phone")
    assert rule_set(target) == {"anon-3y", "anon-4y"}


def test_delete_and_anonymize_on_one_table_stay_separate_stages() -> None:
    config = make_config(
        [
            table_rule("anon-3y", "customers", "3y", "anonymize", fields=["email"]),
            table_rule("delete-10y", "customers", "10y"),
        ]
    )

    targets = by_id(resolve_targets(config, NOW))

    assert rule_set(targets["crm.customers:delete"]) == {"delete-10y"}
    assert rule_set(targets["crm.customers:anonymize:email"]) == {"anon-3y"}


def test_tables_without_rules_get_no_target() -> None:
    assert resolve_targets(make_config(), NOW) == []


# --- S3 prefixes ------------------------------------------------------------------------


def test_nested_prefixes_narrower_targets_take_the_wider_conditions_and_are_excluded() -> None:
    config = make_config(
        [
            bucket_rule("bucket-5y", "5y"),
            bucket_rule("tickets-2y", "2y", "tickets/"),
            bucket_rule("legal-10y", "10y", "tickets/legal/"),
        ]
    )

    targets = by_id(resolve_targets(config, NOW))

    assert set(targets) == {
        "files/tickets-eu/",
        "files/tickets-eu/tickets/",
        "files/tickets-eu/tickets/legal/",
    }
    whole = targets["files/tickets-eu/"]
    assert whole.prefix is None
    assert rule_set(whole) == {"bucket-5y"}
    assert set(whole.exclude_prefixes) == {"tickets/", "tickets/legal/"}

    tickets = targets["files/tickets-eu/tickets/"]
    assert tickets.prefix == "tickets/"
    assert rule_set(tickets) == {"bucket-5y", "tickets-2y"}
    assert tickets.governing.rule_id == "bucket-5y"  # the wider, longer rule still applies
    assert tickets.exclude_prefixes == ("tickets/legal/",)

    legal = targets["files/tickets-eu/tickets/legal/"]
    assert rule_set(legal) == {"bucket-5y", "tickets-2y", "legal-10y"}
    assert legal.governing.rule_id == "legal-10y"
    assert legal.exclude_prefixes == ()
    assert all(t.action == "delete" and t.kind == "s3" for t in targets.values())


def test_sibling_prefixes_do_not_share_conditions() -> None:
    config = make_config([bucket_rule("a-1y", "1y", "a/"), bucket_rule("b-2y", "2y", "b/")])

    targets = by_id(resolve_targets(config, NOW))

    assert set(targets) == {"files/tickets-eu/a/", "files/tickets-eu/b/"}
    assert rule_set(targets["files/tickets-eu/a/"]) == {"a-1y"}
    assert targets["files/tickets-eu/a/"].exclude_prefixes == ()
    assert rule_set(targets["files/tickets-eu/b/"]) == {"b-2y"}


def test_a_bucket_rule_and_a_category_rule_on_the_bucket_combine() -> None:
    config = make_config(
        [
            {"id": "support-3y", "category": "support", "age": "3y", "action": "delete"},
            bucket_rule("bucket-1y", "1y"),
        ]
    )

    targets = by_id(resolve_targets(config, NOW))

    assert rule_set(targets["files/tickets-eu/"]) == {"support-3y", "bucket-1y"}
    assert targets["files/tickets-eu/"].governing.rule_id == "support-3y"


# --- legal holds ------------------------------------------------------------------------

TICKETS_2Y = table_rule("tickets-2y", "support_tickets", "2y")
BEFORE = date(2026, 1, 1)


def tickets_with(*holds: Mapping[str, Any]) -> SweepTarget:
    [target] = resolve_targets(make_config([TICKETS_2Y], holds), NOW)
    return target


def test_hold_on_the_table_covers_the_whole_target() -> None:
    target = tickets_with(hold("H-TABLE", {"store": "crm", "table": "support_tickets"}, BEFORE))

    assert target.holds == ("H-TABLE",)
    assert target.held
    assert target.partial_holds == ()


def test_hold_on_the_whole_store_covers_every_target_in_it() -> None:
    target = tickets_with(hold("H-STORE", {"store": "crm"}, BEFORE))

    assert target.holds == ("H-STORE",)


def test_subject_hold_is_partial() -> None:
    subject_hold = hold("H-SUBJ", {"subject": SUBJECT}, BEFORE)

    target = tickets_with(subject_hold)

    assert target.holds == ()
    assert not target.held
    assert [h.id for h in target.partial_holds] == ["H-SUBJ"]
    assert [h.scope.subject for h in target.subject_holds] == [SUBJECT]


def test_subject_hold_scoped_to_the_table_is_partial() -> None:
    target = tickets_with(
        hold("H-SUBJ", {"store": "crm", "table": "support_tickets", "subject": SUBJECT}, BEFORE)
    )

    assert target.holds == ()
    assert [h.id for h in target.partial_holds] == ["H-SUBJ"]


@pytest.mark.parametrize(
    "scope",
    [
        {"store": "crm", "table": "invoices"},
        {"store": "crm", "table": "invoices", "subject": SUBJECT},
        {"store": "files"},
        {"store": "files", "bucket": "tickets-eu"},
        {"store": "files", "bucket": "tickets-eu", "tag": {"case": "42"}},
    ],
    ids=["other-table", "subject-on-other-table", "other-store", "bucket", "tag"],
)
def test_hold_elsewhere_does_not_reach_the_table(scope: dict[str, Any]) -> None:
    target = tickets_with(hold("H-ELSE", scope, BEFORE))

    assert target.holds == ()
    assert target.partial_holds == ()


@pytest.mark.parametrize(
    ("starts", "ends", "in_force"),
    [
        (date(2025, 1, 1), date(2026, 3, 14), False),  # ended yesterday
        (date(2025, 1, 1), TODAY, True),  # ends today: both ends inclusive
        (TODAY, None, True),  # starts today
        (date(2026, 3, 16), None, False),  # starts tomorrow
        (date(2026, 4, 1), date(2026, 5, 1), False),
    ],
    ids=["expired", "ends-today", "starts-today", "starts-tomorrow", "future"],
)
def test_only_holds_in_force_today_apply(starts: date, ends: date | None, in_force: bool) -> None:
    scope = {"store": "crm", "table": "support_tickets"}
    partial_scope = {"subject": SUBJECT}

    target = tickets_with(
        hold("H-1", scope, starts, ends), hold("H-2", partial_scope, starts, ends)
    )

    assert target.holds == (("H-1",) if in_force else ())
    assert [h.id for h in target.partial_holds] == (["H-2"] if in_force else [])


def test_today_is_the_utc_date_of_now() -> None:
    late = datetime(2026, 3, 15, 23, 30, tzinfo=timezone(timedelta(hours=-5)))  # Mar 16 UTC
    holds = [hold("H-1", {"store": "crm"}, date(2026, 3, 16))]

    [target] = resolve_targets(make_config([TICKETS_2Y], holds), late)

    assert target.holds == ("H-1",)


def test_several_whole_holds_are_all_listed_sorted() -> None:
    target = tickets_with(
        hold("H-B", {"store": "crm"}, BEFORE),
        hold("H-A", {"store": "crm", "table": "support_tickets"}, BEFORE),
    )

    assert target.holds == ("H-A", "H-B")


S3_RULES = [bucket_rule("bucket-5y", "5y"), bucket_rule("prefix-2y", "2y", "tickets/")]


def s3_targets_with(*holds: Mapping[str, Any]) -> dict[str, SweepTarget]:
    return by_id(resolve_targets(make_config(S3_RULES, holds), NOW))


def test_bucket_hold_covers_every_prefix_of_the_bucket() -> None:
    targets = s3_targets_with(hold("H-B", {"store": "files", "bucket": "tickets-eu"}, BEFORE))

    assert all(t.holds == ("H-B",) for t in targets.values())


def test_prefix_hold_covering_a_target_is_whole_inside_it_partial() -> None:
    targets = s3_targets_with(
        hold("H-P", {"store": "files", "bucket": "tickets-eu", "prefix": "tickets/"}, BEFORE)
    )

    assert targets["files/tickets-eu/tickets/"].holds == ("H-P",)
    whole_bucket = targets["files/tickets-eu/"]
    assert whole_bucket.holds == ()
    assert [h.id for h in whole_bucket.partial_holds] == ["H-P"]


def test_prefix_hold_elsewhere_and_tag_holds() -> None:
    targets = s3_targets_with(
        hold("H-OUT", {"store": "files", "bucket": "tickets-eu", "prefix": "exports/"}, BEFORE),
        hold("H-TAG", {"store": "files", "bucket": "tickets-eu", "tag": {"case": "42"}}, BEFORE),
        hold("H-OTHER", {"store": "files", "bucket": "archive-eu"}, BEFORE),
        hold("H-SQL", {"store": "crm", "table": "support_tickets"}, BEFORE),
    )

    tickets = targets["files/tickets-eu/tickets/"]
    assert tickets.holds == ()
    assert [h.id for h in tickets.partial_holds] == ["H-TAG"]
    whole_bucket = targets["files/tickets-eu/"]
    assert whole_bucket.holds == ()
    assert [h.id for h in whole_bucket.partial_holds] == ["H-OUT", "H-TAG"]


# --- narrowing by rule ------------------------------------------------------------------


def test_rule_ids_narrow_targets_but_keep_other_rules_on_the_same_data() -> None:
    config = make_config(
        [
            table_rule("tickets-2y", "support_tickets", "2y"),
            table_rule("tickets-7y", "support_tickets", "7y"),
            table_rule("logins-90d", "login_events", "90d"),
        ]
    )

    [target] = resolve_targets(config, NOW, ["tickets-2y"])

    assert target.id == "crm.support_tickets:delete"
    assert rule_set(target) == {"tickets-2y", "tickets-7y"}  # never earlier than a full sweep
    assert target.governing.rule_id == "tickets-7y"


def test_rule_ids_narrow_anonymize_and_prefix_targets_alike() -> None:
    config = make_config(
        [
            table_rule("anon-3y", "customers", "3y", "anonymize", fields=["email", "phone"]),
            table_rule("anon-5y", "customers", "5y", "anonymize", fields=["phone", "full_name"]),
            *S3_RULES,
        ]
    )

    narrowed = by_id(resolve_targets(config, NOW, ["anon-3y", "prefix-2y"]))

    assert set(narrowed) == {
        "crm.customers:anonymize:email",
        "crm.customers:anonymize:phone",
        "files/tickets-eu/tickets/",
    }
    assert rule_set(narrowed["crm.customers:anonymize:phone"]) == {"anon-3y", "anon-5y"}
    assert rule_set(narrowed["files/tickets-eu/tickets/"]) == {"bucket-5y", "prefix-2y"}


def test_narrowed_targets_equal_the_full_resolution_of_those_targets() -> None:
    config = make_config(
        [
            table_rule("tickets-2y", "support_tickets", "2y"),
            table_rule("tickets-7y", "support_tickets", "7y"),
            *S3_RULES,
        ],
        [hold("H-SUBJ", {"subject": SUBJECT}, BEFORE)],
    )
    full = by_id(resolve_targets(config, NOW))

    for rule in ("tickets-2y", "tickets-7y", "bucket-5y", "prefix-2y"):
        for target in resolve_targets(config, NOW, [rule]):
            assert target == full[target.id]
            assert target.partial_holds == full[target.id].partial_holds


def test_unknown_rule_id_is_refused_naming_it() -> None:
    config = make_config([TICKETS_2Y])

    with pytest.raises(NotFoundError) as err:
        resolve_targets(config, NOW, ["tickets-2y", "no-such-rule"])

    message = str(err.value)
    assert "'no-such-rule'" in message
    assert "'tickets-2y'" not in message.split("(known", maxsplit=1)[0]
    assert "known: tickets-2y" in message


# --- explain ----------------------------------------------------------------------------


def test_explain_table_names_the_governing_rule_and_the_overlap() -> None:
    config = make_config(
        [
            table_rule("tickets-2y", "support_tickets", "2y"),
            table_rule("tickets-7y", "support_tickets", "7y"),
        ]
    )

    answer = explain(config, "crm.support_tickets", NOW)

    assert answer["subject"] == "crm.support_tickets"
    assert answer["as_of"] == "2026-03-15T12:00:00"
    [view] = answer["targets"]
    assert view["target"] == "crm.support_tickets:delete"
    assert view["action"] == "delete"
    assert [(r["id"], r["governing"]) for r in view["rules"]] == [
        ("tickets-7y", True),
        ("tickets-2y", False),
    ]
    assert view["rules"][0]["cutoff"] == cutoff("7y").isoformat()
    assert view["rules"][0]["clock"] == "created_at"
    verdict = view["verdict"]
    assert "rule tickets-7y" in verdict
    assert "older than 7y" in verdict
    assert "tickets-2y" in verdict
    assert view["holds"] == []


def test_explain_whole_hold_in_force_says_nothing_is_removed() -> None:
    config = make_config(
        [TICKETS_2Y],
        [hold("H-TABLE", {"store": "crm", "table": "support_tickets"}, BEFORE)],
    )

    [view] = explain(config, "crm.support_tickets", NOW)["targets"]

    assert view["verdict"].startswith("nothing is removed while H-TABLE is in force")
    assert "rule tickets-2y" in view["verdict"]
    assert view["holds"] == [
        {
            "id": "H-TABLE",
            "reason": "litigation",
            "covers": "whole",
            "in_force": True,
            "starts": "2026-01-01",
            "ends": None,
        }
    ]


def test_explain_partial_hold_says_its_data_is_kept() -> None:
    config = make_config([TICKETS_2Y], [hold("H-SUBJ", {"subject": SUBJECT}, BEFORE)])

    [view] = explain(config, "crm.support_tickets", NOW)["targets"]

    assert "rule tickets-2y" in view["verdict"]
    assert "data within the scope of H-SUBJ is kept" in view["verdict"]
    assert [(h["id"], h["covers"], h["in_force"]) for h in view["holds"]] == [
        ("H-SUBJ", "part", True)
    ]


def test_explain_lists_expired_holds_as_not_in_force_without_changing_the_verdict() -> None:
    config = make_config(
        [TICKETS_2Y],
        [
            hold(
                "H-OLD",
                {"store": "crm", "table": "support_tickets"},
                date(2025, 1, 1),
                date(2025, 6, 30),
            )
        ],
    )

    [view] = explain(config, "crm.support_tickets", NOW)["targets"]

    assert [(h["id"], h["in_force"], h["ends"]) for h in view["holds"]] == [
        ("H-OLD", False, "2025-06-30")
    ]
    assert "H-OLD" not in view["verdict"]
    assert view["verdict"].startswith("rows are deleted once created_at is older than 2y")


def test_explain_column_shows_only_targets_touching_it() -> None:
    config = make_config(
        [
            table_rule("anon-3y", "customers", "3y", "anonymize", fields=["email", "phone"]),
            table_rule("anon-5y", "customers", "5y", "anonymize", fields=["phone", "full_name"]),
            table_rule("delete-10y", "customers", "10y"),
        ]
    )

    email = explain(config, "crm.customers.email", NOW)["targets"]
    table = explain(config, "crm.customers", NOW)["targets"]

    assert [v["target"] for v in email] == [
        "crm.customers:delete",
        "crm.customers:anonymize:email",
    ]
    assert email[1]["verdict"].startswith("email are anonymized once created_at is older than 3y")
    assert len(table) == 4


def test_explain_s3_key_is_answered_by_the_narrowest_prefix_holding_it() -> None:
    config = make_config(
        [*S3_RULES, bucket_rule("legal-10y", "10y", "tickets/legal/")],
        [
            hold(
                "H-P",
                {"store": "files", "bucket": "tickets-eu", "prefix": "tickets/legal/"},
                BEFORE,
            )
        ],
    )

    legal = explain(config, "files/tickets-eu/tickets/legal/case-1.pdf", NOW)["targets"]
    other = explain(config, "files/tickets-eu/exports/x.csv", NOW)["targets"]
    bucket = explain(config, "files/tickets-eu", NOW)["targets"]

    assert [v["target"] for v in legal] == ["files/tickets-eu/tickets/legal/"]
    assert "rule legal-10y" in legal[0]["verdict"]
    assert legal[0]["verdict"].startswith("nothing is removed while H-P is in force")
    assert [v["target"] for v in other] == ["files/tickets-eu/"]
    assert other[0]["verdict"].startswith(
        "objects (every version) are deleted once LastModified is older than 5y"
    )
    assert len(bucket) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nostore.customers", "no store named 'nostore'"),
        ("crm.nosuch", "no table 'nosuch' in store 'crm'"),
        ("crm.customers.nosuch", "'nosuch' is not a declared field of crm.customers"),
        ("files/nobucket/key", "no bucket 'nobucket' in store 'files'"),
        ("nostore/bucket/key", "no store named 'nostore'"),
        ("crm/customers", "store 'crm' is not an S3 store"),
        ("files.tickets", "store 'files' is not a SQL store"),
        ("crm", "'crm' is not a target"),
        ("crm.customers.email.x", "is not a target"),
    ],
)
def test_explain_parse_errors_name_what_is_wrong(text: str, expected: str) -> None:
    config = make_config([TICKETS_2Y])

    with pytest.raises(NotFoundError) as err:
        explain(config, text, NOW)

    assert expected in str(err.value)


def test_explain_unknown_table_lists_the_known_ones() -> None:
    with pytest.raises(NotFoundError) as err:
        explain(make_config(), "crm.custmers", NOW)

    assert "known: customers, invoices, login_events, orders, support_tickets" in str(err.value)


def test_explain_a_table_without_rules_has_no_targets() -> None:
    answer = explain(make_config([TICKETS_2Y]), "crm.invoices", NOW)

    assert answer["targets"] == []
