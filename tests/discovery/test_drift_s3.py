"""S3 drift on moto (in-process ``mock_aws``): undeclared buckets and prefixes, vanished ones.

Models AWS's ListObjectsV2 with ``Delimiter="/"`` (top-level prefixes as CommonPrefixes,
top-level objects as Contents) and ListBuckets (every bucket of the account). Keys are
sampled and classified, never reported: a prefix whose keys are named after e-mail
addresses is high, one whose own name is an address is counted without its name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from moto import mock_aws

from config.loader import load_config
from config.schema.model import LifecycleConfig
from config.settings import get_settings
from connectors.s3.config import S3Ignore, S3Store
from discovery.drift import StoreDrift
from discovery.drift_s3 import (
    BucketListing,
    KeySample,
    covered,
    heads,
    ignores,
    read_drift,
    s3_findings,
    segments_by_depth,
    static_prefix,
)
from tests.discovery.drift_helpers import leaked, sql_store_yaml, write_config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "eu-central-1"
TICKETS, ARCHIVE = "acme-tickets", "acme-archive"

STORE = f"""\
  - name: files
    type: s3
    region: {REGION}
    buckets:
      - name: {TICKETS}
        categories: [support]
        key_templates: ["tickets/{{customer_id}}/"]
      - name: {ARCHIVE}
        categories: [contact]
        key_templates: ["contracts/{{customer_id}}/"]
"""


def test_static_prefixes_and_what_they_cover() -> None:
    assert static_prefix("tickets/{customer_id}/") == "tickets/"
    assert static_prefix("exports/2024/{id}/doc-{id}.pdf") == "exports/2024/"
    assert static_prefix("{customer_id}/") == ""
    assert covered("tickets/", ["tickets/"]) and covered("exports/", ["exports/2024/"])
    assert not covered("misc/", ["tickets/"]) and not covered("", ["tickets/"])
    assert covered("misc/", [""]) and covered("", [""])  # a template starting with a placeholder
    bucket = S3Store.model_validate(
        {
            "type": "s3",
            "name": "f",
            "region": REGION,
            "buckets": [{"name": "by-tag", "categories": ["x"], "subject_tag": "subject"}],
        }
    ).buckets[0]
    assert heads(bucket) == ("",)  # found by tag: the whole bucket is declared


def test_key_segments_by_depth_without_extensions() -> None:
    keys = ["exports/a@example.com.csv", "exports/2024/b@example.com", "exports/c.JSON"]
    assert segments_by_depth(keys, "exports/") == {
        0: ["a@example.com", "2024", "c"],
        1: ["b@example.com"],
    }


def test_ignore_matching() -> None:
    entries = (
        S3Ignore(bucket="stray", reason="r"),
        S3Ignore(bucket="bkt", prefix="tmp/", reason="r"),
        S3Ignore(prefix="cache/", reason="r"),
    )
    assert ignores(entries, "stray", None) and ignores(entries, "stray", "x/")
    assert ignores(entries, "bkt", "tmp/") and not ignores(entries, "bkt", "x/")
    assert ignores(entries, "bkt", "tmp/sub/") and not ignores(entries, "bkt", None)
    assert ignores(entries, "other", "cache/") and not ignores(entries, "other", None)


def test_findings_from_listings() -> None:
    store = S3Store.model_validate(
        {
            "type": "s3",
            "name": "files",
            "region": REGION,
            "buckets": [
                {"name": TICKETS, "categories": ["support"]},
                {"name": ARCHIVE, "categories": ["contact"]},
            ],
            "ignore": [{"prefix": "cache/", "reason": "rebuilt nightly, holds nothing personal"}],
        }
    )
    listings = [
        BucketListing(
            TICKETS,
            True,
            ("tickets/", "misc/", "cache/"),
            {"misc/": KeySample(3), "cache/": KeySample(9)},
            personal_names=2,
        ),
        BucketListing(ARCHIVE, False),
    ]
    found, ignored = s3_findings(
        store, listings, {"stray": KeySample(0, unreadable="AccessDenied")}
    )
    assert ignored == 1
    assert {(f.rule, f.severity, f.resource) for f in found} == {
        ("s3.undeclared-prefix", "medium", f"s3://{TICKETS}/misc/"),
        ("s3.personal-prefix-names", "high", f"s3://{TICKETS}/*"),
        ("s3.bucket-vanished", "high", f"s3://{ARCHIVE}"),
        ("s3.undeclared-bucket", "medium", "s3://stray"),
    }
    [stray] = [f for f in found if f.resource == "s3://stray"]
    assert "could not be listed (AccessDenied)" in stray.evidence


# -- on moto -----------------------------------------------------------------------------


def _put(s3: S3Client, bucket: str, *keys: str) -> None:
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"planted")


def _bucket(s3: S3Client, name: str) -> None:
    s3.create_bucket(
        Bucket=name, CreateBucketConfiguration=cast(Any, {"LocationConstraint": REGION})
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Client]:
    monkeypatch.delenv("LIFECYCLE_S3_ENDPOINT", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        s3: S3Client = boto3.client("s3", region_name=REGION)
        for name in (TICKETS, ARCHIVE):
            _bucket(s3, name)
        _put(s3, TICKETS, "tickets/1/planted-1.pdf", "tickets/2/planted-2.pdf")
        _put(s3, ARCHIVE, "contracts/1/planted.pdf")
        yield s3


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ignore: str = "") -> LifecycleConfig:
    # The SQL store derives customer_id, the key templates' placeholder; it is not read.
    stores = sql_store_yaml(f"sqlite:///{tmp_path / 'shop.db'}") + STORE
    stores += f"    ignore:\n{ignore}" if ignore else ""
    folder = write_config(tmp_path / "cfg", stores)
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(folder))
    get_settings.cache_clear()
    return load_config(folder)


def _drift(config: LifecycleConfig) -> StoreDrift:
    return read_drift(config, config.store("files"), account_wide=True, sample_rows=100)


def _rules(drift: StoreDrift) -> set[tuple[str, str, str]]:
    return {(f.rule, f.severity, f.resource) for f in drift.findings}


def test_undeclared_buckets_and_prefixes_on_moto(
    aws: S3Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, monkeypatch)
    clean = _drift(config)
    assert clean.findings == ()
    assert clean.counts == {"buckets": 2, "prefixes": 2}

    _put(aws, TICKETS, *(f"exports/planted{i}@example.com.csv" for i in range(12)))
    _put(aws, TICKETS, "misc/readme-planted.txt", "planted-notes.txt")
    _put(aws, TICKETS, "planted.someone@example.com/file.pdf")
    _bucket(aws, "stray-uploads")
    _put(aws, "stray-uploads", *(f"u/planted{i}@example.com" for i in range(5)))
    _bucket(aws, "stray-logs")
    _put(aws, "stray-logs", "log-planted-1.txt")
    aws.delete_objects(Bucket=ARCHIVE, Delete={"Objects": [{"Key": "contracts/1/planted.pdf"}]})
    aws.delete_bucket(Bucket=ARCHIVE)

    drifted = _drift(config)
    assert _rules(drifted) == {
        ("s3.undeclared-personal-prefix", "high", f"s3://{TICKETS}/exports/"),
        ("s3.undeclared-prefix", "medium", f"s3://{TICKETS}/misc/"),
        ("s3.undeclared-prefix", "medium", f"s3://{TICKETS}/"),
        ("s3.personal-prefix-names", "high", f"s3://{TICKETS}/*"),
        ("s3.undeclared-personal-bucket", "high", "s3://stray-uploads"),
        ("s3.undeclared-bucket", "medium", "s3://stray-logs"),
        ("s3.bucket-vanished", "high", f"s3://{ARCHIVE}"),
    }
    text = json.dumps([f.to_json() for f in drifted.findings])
    assert not leaked(text) and "example.com" not in text, "a key reached a finding"
    [exports] = [f for f in drifted.findings if f.resource.endswith("/exports/")]
    assert exports.categories == ("contact",) and "e-mail addresses" in exports.evidence

    reviewed = _config(
        tmp_path / "again",
        monkeypatch,
        ignore=f"      - {{bucket: {TICKETS}, prefix: exports/, reason: moved out nightly}}\n"
        "      - {bucket: stray-uploads, reason: owned by the marketing account}\n"
        "      - {prefix: misc/, reason: readme files only}\n",
    )
    left = _drift(reviewed)
    assert left.ignored == 3
    assert {f.rule for f in left.findings} == {
        "s3.undeclared-prefix",
        "s3.personal-prefix-names",
        "s3.undeclared-bucket",
        "s3.bucket-vanished",
    }


def test_only_the_first_store_lists_the_account(
    aws: S3Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bucket(aws, "stray-logs")
    config = _config(tmp_path, monkeypatch)
    drift = read_drift(config, config.store("files"), account_wide=False, sample_rows=10)
    assert drift.findings == ()


def test_another_s3_stores_ignore_covers_an_undeclared_bucket() -> None:
    # Undeclared buckets are reported by the first S3 store (it lists the account); an
    # entry of any S3 store may exclude one, but not another store's declared bucket.
    store = S3Store.model_validate(
        {
            "type": "s3",
            "name": "files",
            "region": REGION,
            "buckets": [{"name": TICKETS, "categories": ["support"]}],
        }
    )
    elsewhere = (
        S3Ignore(bucket="stray", reason="the marketing team's"),
        S3Ignore(bucket=TICKETS, reason="not for another store to say"),
    )
    listings = [BucketListing(TICKETS, False)]
    found, ignored = s3_findings(store, listings, {"stray": KeySample(2)}, elsewhere)
    assert ignored == 1
    assert [f.rule for f in found] == ["s3.bucket-vanished"]
