"""Locating a subject's versions: templates, delete markers, pagination, tags."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connectors.s3.locate import expand_templates, subject_pseudonyms
from tests.connectors.s3.conftest import (
    KEYS,
    SUBJECT,
    ConnectorFactory,
    create_bucket,
    listing,
    make_store,
    seed,
    under,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "tickets-eu"


def _seed_versioned(s3: S3Client) -> None:
    create_bucket(s3, BUCKET)
    seed(s3, BUCKET, [f"tickets/1/{n}.txt" for n in range(3)], versions=3)
    s3.delete_object(Bucket=BUCKET, Key="tickets/1/0.txt")  # a delete marker
    seed(s3, BUCKET, ["tickets/12/a.txt", "tickets/2/b.txt"], versions=2)


def test_finds_every_version_and_delete_marker(s3: S3Client, connector: ConnectorFactory) -> None:
    _seed_versioned(s3)
    store = make_store({"name": BUCKET, "key_templates": ["tickets/{customer_id}/"]})
    findings = connector(store).locate(SUBJECT)
    (target,) = findings.targets
    assert target.target == BUCKET and target.categories == ("support",)
    assert set(target.keys) == under(listing(s3, BUCKET), "tickets/1/")
    assert len(target.keys) == 10  # 3 keys x 3 versions + 1 delete marker
    assert sum(1 for k in target.keys if k[2]) == 1
    assert findings.warnings == ()


def test_template_without_identity_value_is_skipped(
    s3: S3Client, connector: ConnectorFactory
) -> None:
    _seed_versioned(s3)
    store = make_store(
        {"name": BUCKET, "key_templates": ["tickets/{customer_id}/", "phones/{phone}/"]}
    )
    assert expand_templates(store.buckets[0], SUBJECT) == ["tickets/1/"]
    assert connector(store).locate(SUBJECT).total == 10
    assert connector(store).locate({"email": frozenset({"alice@example.com"})}).total == 0


def test_open_ended_template_does_not_match_longer_ids(
    s3: S3Client, connector: ConnectorFactory
) -> None:
    _seed_versioned(s3)
    store = make_store({"name": BUCKET, "key_templates": ["tickets/{customer_id}"]})
    keys = connector(store).locate(SUBJECT).targets[0].keys
    assert keys and all(str(k[0]).startswith("tickets/1/") for k in keys)  # not tickets/12/


def test_pagination_with_small_pages(s3: S3Client, connector: ConnectorFactory) -> None:
    _seed_versioned(s3)
    calls: list[dict[str, Any]] = []
    s3.meta.events.register(
        "before-call.s3.ListObjectVersions", lambda params, **_: calls.append(params)
    )
    store = make_store({"name": BUCKET, "key_templates": ["tickets/{customer_id}/"]})
    findings = connector(store, page_size=2).locate(SUBJECT)
    assert set(findings.targets[0].keys) == under(listing(s3, BUCKET), "tickets/1/")
    assert len(calls) >= 5  # 10 entries in pages of 2


def test_subject_tag_finds_tagged_objects(s3: S3Client, connector: ConnectorFactory) -> None:
    create_bucket(s3, BUCKET)
    (pseudonym,) = subject_pseudonyms(KEYS.pseudonym_hmac, {"email": SUBJECT["email"]})
    seed(s3, BUCKET, ["scans/x.pdf"], versions=2, Tagging=f"subject={pseudonym}")
    seed(s3, BUCKET, ["scans/y.pdf"], Tagging="subject=psn_" + "0" * 32)
    store = make_store(
        {"name": BUCKET, "key_templates": ["tickets/{customer_id}/"], "subject_tag": "subject"}
    )
    keys = connector(store).locate(SUBJECT).targets[0].keys
    assert {k[0] for k in keys} == {"scans/x.pdf"} and len(keys) == 2


def test_an_open_ended_template_leaves_a_folder_template_of_its_bucket_whole(
    s3: S3Client, connector: ConnectorFactory
) -> None:
    # The exact-segment rule of `archive/{customer_id}` once applied to every template of
    # the bucket, so `tickets/{customer_id}/` found nothing under tickets/1/: an erasure
    # missed those objects. It is decided per template now.
    _seed_versioned(s3)
    seed(s3, BUCKET, ["archive/1", "archive/1/old.txt", "archive/12"], versions=1)
    store = make_store(
        {"name": BUCKET, "key_templates": ["tickets/{customer_id}/", "archive/{customer_id}"]}
    )
    (target,) = connector(store).locate(SUBJECT).targets
    keys = {k[0] for k in target.keys}
    assert keys == {"tickets/1/0.txt", "tickets/1/1.txt", "tickets/1/2.txt"} | {
        "archive/1",
        "archive/1/old.txt",
    }
    assert "archive/12" not in keys and "tickets/12/a.txt" not in keys  # other subjects
