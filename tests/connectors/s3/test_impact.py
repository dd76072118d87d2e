"""Incident impact of a bucket part, in-process (``mock_aws``), against a seeded truth.

One world is seeded per module (about 200 objects, in two groups a clock second apart) and
only read by the tests. The truth is the seed itself: every key is written with the
subject it was written for (or none), never parsed back. Object times are read from the
store: S3 (and moto) report ``LastModified`` to the second and it cannot be set, so the
second group is written once the clock has passed the first group's last second, and
windows are cut at the times the listing shows.

AWS behaviour modelled: ListObjectsV2 lists current versions only (an overwritten key
once, a key whose current version is a delete marker not at all), with ``LastModified``
to the second; a missing bucket answers NoSuchBucket; throttling answers SlowDown.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from connectors.base import ImpactCounting
from connectors.registry import supports
from connectors.s3.config import S3Store
from connectors.s3.connector import S3Connector
from connectors.s3.impact import KeyTemplate, part_identity
from connectors.s3.locate import Locator
from core.errors import InvalidInput, TerminalError, TransientError
from incidents.scope import ScopePart, TimeWindow
from tests.connectors.s3.conftest import KEYS, REGION, create_bucket, make_policy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET: Final = "inc-tickets"
TAGGED: Final = "inc-tagged"
ABSENT: Final = "inc-absent"  # declared, never created
TEMPLATES: Final = (
    "tickets/{customer_id}/",
    "archive/{customer_id}",  # open-ended: archive/7 and archive/7/..., never archive/77
    "orders/{customer_id}/{order_id}/",
    "mail/{email}/",
)
Subject = tuple[str, str]  # (identity, value) the key was written for


@dataclass(frozen=True)
class World:
    """The seeded bucket: each current key's subject and its LastModified as listed."""

    client: S3Client
    store: S3Store
    subjects: dict[str, Subject | None]  # current objects only
    times: dict[str, datetime]
    first: frozenset[str]  # keys written before the clock second changed
    second: frozenset[str]

    def connector(self, **kw: Any) -> S3Connector:
        return S3Connector(self.store, make_policy(), keys=KEYS, client=self.client, **kw)

    def truth(
        self,
        identity: str | None,
        prefix: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[set[str], set[str]]:
        """(keys, subject values of ``identity``) under ``prefix`` within [start, end)."""
        keys = {
            k
            for k, t in self.times.items()
            if k.startswith(prefix) and (start is None or start <= t) and (end is None or t < end)
        }
        values = {s[1] for k in keys if (s := self.subjects[k]) is not None and s[0] == identity}
        return keys, values


def _put(s3: S3Client, bucket: str, key: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")


def _seed(s3: S3Client, group: int) -> dict[str, Subject | None]:
    """The keys of one group and whom each was written for."""
    seeds: dict[str, Subject | None] = {}
    if group == 1:
        for c in range(1, 13):
            seeds |= {f"tickets/{c}/a-{n}.txt": ("customer_id", str(c)) for n in range(3)}
        for c in (7, 8, 9):
            seeds[f"archive/{c}"] = ("customer_id", str(c))
            seeds[f"archive/{c}/old.txt"] = ("customer_id", str(c))
        seeds |= {f"orders/{c}/{100 + c}/invoice.pdf": ("customer_id", str(c)) for c in range(3, 9)}
        seeds |= {
            f"mail/p{n}@example.com/msg.eml": ("email", f"p{n}@example.com") for n in range(5)
        }
        seeds |= {f"other/{c}/x.txt": None for c in range(1, 6)}  # no template
        seeds["tickets/readme.txt"] = None  # under the prefix, but no template's key
    else:
        for c in range(10, 61):
            seeds |= {f"tickets/{c}/b-{n}.txt": ("customer_id", str(c)) for n in range(3)}
        seeds["archive/77/new.txt"] = ("customer_id", "77")
        seeds["tickets/readme-2.txt"] = None
    for key in seeds:
        _put(s3, BUCKET, key)
    return seeds


def _listed_times(s3: S3Client, bucket: str) -> dict[str, datetime]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o["LastModified"] for p in pages for o in p.get("Contents", [])}


def _after_second_of(moment: datetime) -> None:
    """Wait until the clock is past ``moment``'s second (times are listed to the second)."""
    while datetime.now(UTC) < moment.replace(microsecond=0) + timedelta(seconds=1):
        time.sleep(0.05)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with mock_aws():
        s3: S3Client = boto3.client("s3", region_name=REGION)
        create_bucket(s3, BUCKET)
        create_bucket(s3, TAGGED, versioning=None)
        subjects = _seed(s3, 1)
        _put(s3, BUCKET, "tickets/1/a-0.txt")  # a second version: one current object
        _put(s3, BUCKET, "tickets/99/gone.txt")
        s3.delete_object(Bucket=BUCKET, Key="tickets/99/gone.txt")  # a delete marker on top
        for n in range(4):
            _put(s3, TAGGED, f"uploads/{n}.bin")
        first = _listed_times(s3, BUCKET)
        _after_second_of(max(first.values()))
        subjects |= _seed(s3, 2)
        times = _listed_times(s3, BUCKET)
        store = S3Store.model_validate(
            {
                "type": "s3",
                "name": "files",
                "region": REGION,
                "buckets": [
                    {
                        "name": BUCKET,
                        "categories": ["support", "contract"],
                        "key_templates": list(TEMPLATES),
                        "keys_contain_personal_data": True,
                    },
                    {
                        "name": TAGGED,
                        "region": "eu-west-1",
                        "categories": ["support"],
                        "subject_tag": "subject",
                    },
                    {"name": ABSENT, "categories": ["support"], "key_templates": TEMPLATES[:1]},
                ],
            }
        )
        yield World(
            s3,
            store,
            subjects,
            times,
            first=frozenset(first),
            second=frozenset(times) - frozenset(first),
        )


def part(bucket: str = BUCKET, prefix: str | None = None, **window: datetime) -> ScopePart:
    return ScopePart(
        store="files",
        bucket=bucket,
        prefix=prefix,
        window=TimeWindow(start=window["start"], end=window["end"]) if window else None,
    )


def test_s3_stores_count_impact(world: World) -> None:
    assert supports(world.connector(), ImpactCounting)


def test_the_world_is_what_the_truth_says(world: World) -> None:
    # Overwritten once, listed once; deleted (a delete marker on top), not listed at all.
    assert "tickets/1/a-0.txt" in world.times and "tickets/99/gone.txt" not in world.times
    assert set(world.times) == set(world.subjects)
    assert world.first and world.second
    assert max(world.times[k] for k in world.first) < min(world.times[k] for k in world.second)


@pytest.mark.parametrize("page_size", [1000, 7])
def test_a_prefix_without_window(world: World, page_size: int) -> None:
    conn = world.connector(page_size=page_size)
    got = conn.count_impact(part(prefix="tickets/"))
    keys, values = world.truth("customer_id", "tickets/")
    assert (got.records, got.subjects, got.identity) == (len(keys), len(values), "customer_id")
    assert (got.categories, got.region, dict(got.clients)) == (("support", "contract"), REGION, {})
    affected = list(conn.affected_keys(part(prefix="tickets/")))
    assert len(affected) == len(set(affected)) == got.subjects
    assert set(affected) == values
    assert "99" not in values and "readme.txt" not in affected


def test_the_whole_bucket(world: World) -> None:
    conn = world.connector()
    got = conn.count_impact(part())
    keys, values = world.truth("customer_id")
    # customer_id: three of the four templates; mail/{email}/ keys are records, no subjects.
    assert (got.records, got.subjects, got.identity) == (len(keys), len(values), "customer_id")
    assert {"7", "8", "9", "77", "3"} <= values
    assert set(conn.affected_keys(part())) == values


def test_a_prefix_takes_the_identity_of_the_templates_reaching_it(world: World) -> None:
    conn = world.connector()
    got = conn.count_impact(part(prefix="mail/"))
    keys, values = world.truth("email", "mail/")
    assert (
        (got.records, got.subjects, got.identity)
        == (5, 5, "email")
        == (
            len(keys),
            len(values),
            "email",
        )
    )
    assert set(conn.affected_keys(part(prefix="mail/"))) == values
    # A prefix inside a template's static part, and one narrowing it to one subject.
    assert conn.count_impact(part(prefix="tick")).identity == "customer_id"
    one = conn.count_impact(part(prefix="tickets/1/"))
    assert (one.records, one.subjects) == (3, 1)
    assert list(conn.affected_keys(part(prefix="tickets/1/"))) == ["1"]


def test_keys_no_template_reaches_are_records_only(world: World) -> None:
    conn = world.connector()
    got = conn.count_impact(part(prefix="other/"))
    assert (got.records, got.subjects, got.identity) == (5, 0, None)
    assert list(conn.affected_keys(part(prefix="other/"))) == []
    nothing = conn.count_impact(part(prefix="nothing-here/"))
    assert (nothing.records, nothing.subjects) == (0, 0)


def test_a_tagged_bucket_counts_objects_not_subjects(world: World) -> None:
    # Tags cost a request per object: the part's subjects are not counted (identity None).
    conn = world.connector()
    got = conn.count_impact(part(TAGGED))
    assert (got.records, got.subjects, got.identity, got.region) == (4, 0, None, "eu-west-1")
    assert list(conn.affected_keys(part(TAGGED))) == []


def _windows(world: World) -> dict[str, tuple[datetime, datetime]]:
    first = sorted(world.times[k] for k in world.first)
    second = sorted(world.times[k] for k in world.second)
    return {
        # end is exclusive: cut at the second group's first time, none of it is in.
        "first group": (first[0], second[0]),
        # start is inclusive: from the second group's first time, all of it is in.
        "second group": (second[0], second[-1] + timedelta(seconds=1)),
        # only objects listed at the very second the first group ended.
        "one second": (first[-1], first[-1] + timedelta(seconds=1)),
        "before anything": (first[0] - timedelta(days=1), first[0]),
    }


@pytest.mark.parametrize("name", ["first group", "second group", "one second", "before anything"])
@pytest.mark.parametrize("prefix", ["tickets/", None])
def test_a_window_on_last_modified(world: World, name: str, prefix: str | None) -> None:
    start, end = _windows(world)[name]
    conn = world.connector()
    scope = part(prefix=prefix, start=start, end=end)
    got = conn.count_impact(scope)
    keys, values = world.truth("customer_id", prefix or "", start, end)
    assert (got.records, got.subjects) == (len(keys), len(values))
    assert set(conn.affected_keys(scope)) == values
    if name == "first group":
        assert keys == {k for k in world.first if k.startswith(prefix or "")}
    if name == "second group":
        assert keys == {k for k in world.second if k.startswith(prefix or "")}
    if name == "before anything":
        assert got.records == 0


@pytest.mark.parametrize(
    "templates",
    [
        ("tickets/{customer_id}/", "orders/{customer_id}/{order_id}/"),
        # Apart: locate applies the exact-segment rule of an open-ended template to every
        # template of its bucket (see _within), so it is checked on a bucket of its own.
        ("archive/{customer_id}",),
    ],
)
def test_subjects_are_who_locate_finds(world: World, templates: tuple[str, ...]) -> None:
    """Each counted subject, searched as a data-subject request would, finds exactly the
    keys counted for it: parsing keys and expanding templates agree."""
    bucket = world.store.buckets[0].model_copy(update={"key_templates": templates})
    only = world.store.model_copy(update={"buckets": (bucket,)})
    conn = S3Connector(only, make_policy(), keys=KEYS, client=world.client)
    heads = tuple(t.split("{", 1)[0] for t in templates)
    attributed: dict[str, set[str]] = {}
    for key, subject in world.subjects.items():
        if subject is not None and subject[0] == "customer_id" and key.startswith(heads):
            attributed.setdefault(subject[1], set()).add(key)
    locator = Locator(world.client, only, KEYS.pseudonym_hmac, 1000)
    affected = list(conn.affected_keys(part()))
    assert set(affected) == set(attributed)
    for value in affected:
        order = str(100 + int(value))  # orders/{customer_id}/{order_id}/ needs both
        found = locator.locate({"customer_id": frozenset({value}), "order_id": frozenset({order})})
        current = {str(k[0]) for t in found.targets if t.target == BUCKET for k in t.keys}
        assert current & set(world.times) == attributed[value], value


def test_subject_identities_are_not_held_in_buckets(world: World) -> None:
    assert list(world.connector().subject_identities("customer_id", ["1", "2"])) == []


# --- refusals and errors ----------------------------------------------------------------


def test_scope_problems_are_judged_on_the_configuration(world: World) -> None:
    store = world.store
    assert store.scope_problems(part(prefix="tickets/")) == []
    assert store.scope_problems(part(ABSENT)) == []  # declared: S3 answers for the rest
    assert store.scope_problems(part("inc-undeclared", "tickets/")) == [
        "files:s3://inc-undeclared/tickets/: bucket: not declared in store 'files'"
    ]
    table = ScopePart(store="files", table="customers")
    assert store.scope_problems(table) == [
        "files.customers: table: store 'files' holds buckets, not tables; "
        "name a bucket (and a prefix)"
    ]
    other = ScopePart(store="crm", bucket=BUCKET)
    assert store.scope_problems(other) == [
        f"crm:s3://{BUCKET}/: store: the part names another store than 'files'"
    ]


def test_a_refused_part_is_invalid_input_before_any_call(world: World) -> None:
    conn = world.connector()
    with pytest.raises(InvalidInput, match="bucket: not declared"):
        conn.count_impact(part("inc-undeclared"))
    with pytest.raises(InvalidInput, match="table"):
        conn.affected_keys(ScopePart(store="files", table="customers"))  # refused at once


def test_a_missing_bucket_is_terminal_and_names_no_key(world: World) -> None:
    conn = world.connector()
    prefix = "tickets/p0@example.com/"
    with pytest.raises(TerminalError) as caught:
        conn.count_impact(part(ABSENT, prefix))
    assert caught.value.fields["code"] == "NoSuchBucket"
    assert str(caught.value) == (
        f"store 'files', bucket '{ABSENT}': count incident impact failed (NoSuchBucket)"
    )
    assert "example.com" not in repr(caught.value.fields)
    with pytest.raises(TerminalError):
        list(conn.affected_keys(part(ABSENT, prefix)))


class _Throttled:
    """A paginator whose pages are refused with SlowDown, the message echoing a key."""

    def paginate(self, **kw: Any) -> Iterator[dict[str, Any]]:
        error = {"Code": "SlowDown", "Message": "slow down on mail/p0@example.com/msg.eml"}
        raise ClientError(cast(Any, {"Error": error}), "ListObjectsV2")
        yield {}  # pragma: no cover - a generator, as botocore's pages are


def test_throttling_is_transient_and_names_no_key(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = world.connector()
    monkeypatch.setattr(world.client, "get_paginator", lambda _name: _Throttled())
    for call in (conn.count_impact, lambda p: list(conn.affected_keys(p))):
        with pytest.raises(TransientError) as caught:
            call(part(prefix="mail/"))
        assert "example.com" not in str(caught.value)
        assert "example.com" not in repr(caught.value.fields)
        assert isinstance(caught.value.__cause__, ClientError)


# --- key templates read backwards (no store) --------------------------------------------


@pytest.mark.parametrize(
    ("template", "key", "expected"),
    [
        ("tickets/{customer_id}/", "tickets/12/a/b.pdf", "12"),
        ("tickets/{customer_id}/", "tickets/12", None),  # not under tickets/12/
        ("tickets/{customer_id}/", "tickets//x", None),  # an empty value names no one
        ("archive/{customer_id}", "archive/7", "7"),
        ("archive/{customer_id}", "archive/7/x", "7"),
        ("archive/{customer_id}", "archive/7x", "7x"),
        ("archive/{customer_id}", "archived/7", None),
        ("exports/{email}_card.json", "exports/a.b@example.com_card.json", "a.b@example.com"),
        ("exports/{email}_card.json", "exports/a@example.com_card.json.gz", "a@example.com"),
        ("{customer_id}/{customer_id}/", "5/5/x", "5"),  # a repeated placeholder: one value
        ("{customer_id}/{customer_id}/", "5/6/x", None),
        ("odd{{x}}/{customer_id}/", "odd{x}/3/y", "3"),  # "{{" is a literal brace
    ],
)
def test_template_values(template: str, key: str, expected: str | None) -> None:
    assert KeyTemplate.of(template).value(
        key, "email" if "email" in template else "customer_id"
    ) == (expected)


def test_template_heads_and_reach() -> None:
    t = KeyTemplate.of("orders/{customer_id}/{order_id}/")
    assert (t.head, t.names) == ("orders/", ("customer_id", "order_id"))
    assert t.reaches("") and t.reaches("ord") and t.reaches("orders/3/") and not t.reaches("x/")
    assert KeyTemplate.of("odd{{x}}/{customer_id}/").head == "odd{x}/"


def test_the_identity_is_the_placeholder_most_templates_use() -> None:
    def of(*templates: str) -> str | None:
        return part_identity([KeyTemplate.of(t) for t in templates])

    assert of("orders/{customer_id}/{order_id}/", "tickets/{customer_id}/") == "customer_id"
    assert of("mail/{email}/", "tickets/{customer_id}/") == "email"  # a tie: the first
    assert of("orders/{order_id}/{customer_id}/") == "order_id"  # one template: its first
    assert of() is None
