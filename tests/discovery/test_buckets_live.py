"""``--bucket``: a bounded listing proposes key templates the reviewed draft validates with.

Moto in-process (``mock_aws``) models ListObjectsV2 with MaxKeys; the draft's S3 store
reads its endpoint from LIFECYCLE_S3_ENDPOINT (unset here: the AWS default, mocked).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from moto import mock_aws

from config.loader import load_config
from connectors.s3.config import S3Store
from core.engines import make_engine
from discovery.buckets import MAX_KEYS
from discovery.pipeline import draft_inventory
from tests.discovery.helpers import confirm_todos, write_config
from tests.discovery.shop import email, seed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "eu-central-1"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Client]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LIFECYCLE_S3_ENDPOINT", raising=False)
    with mock_aws():
        client: S3Client = boto3.client("s3", region_name=REGION)
        yield client


def _bucket(s3: S3Client, name: str, keys: list[str]) -> None:
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})  # type: ignore[typeddict-item]
    for key in keys:
        s3.put_object(Bucket=name, Key=key, Body=b"x")


def test_buckets_get_key_templates_and_the_draft_validates(s3: S3Client, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.sqlite'}"
    engine = make_engine(url)
    seed(engine)
    engine.dispose()
    _bucket(
        s3, "shop-invoices", [f"invoices/{i}/2026-{n}.pdf" for i in range(1, 11) for n in (1, 2)]
    )
    _bucket(s3, "shop-mail", [f"inbox/{email(i)}/m.eml" for i in range(1, 6)])
    _bucket(s3, "shop-assets", ["logo.png", "css/site.css", "css/print.css"])
    result = draft_inventory(url, buckets=["shop-invoices", "shop-mail", "shop-assets"])
    text = result.text
    assert not [email(i) for i in range(1, 6) if email(i) in text]
    assert "- {column: id, as: customer_id}" in text
    assert 'key_templates: ["invoices/{customer_id}/"]' in text
    assert 'key_templates: ["inbox/{email}/"]' in text
    assert "keys_contain_personal_data: true   # the keys hold e-mail addresses" in text
    assert result.buckets == (("shop-invoices", 20, 1), ("shop-mail", 5, 1), ("shop-assets", 3, 0))
    config = load_config(write_config(tmp_path / "cfg", confirm_todos(text)))
    files = config.inventory.stores[1]
    assert isinstance(files, S3Store)
    assert files.bucket("shop-invoices").key_templates == ("invoices/{customer_id}/",)


def test_a_listing_is_bounded_to_one_page(s3: S3Client) -> None:
    from discovery.buckets import list_keys

    _bucket(s3, "shop-many", [f"k/{i}/x" for i in range(12)])
    assert len(list_keys(s3, "shop-many", limit=5)) == 5
    assert MAX_KEYS == 1000
