"""Export of current objects; error translation at the boundary."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from connectors.s3.client import s3_errors
from core.errors import ConfigError, TerminalError, TransientError
from tests.connectors.s3.conftest import (
    KEYS,
    REGION,
    SUBJECT,
    ConnectorFactory,
    create_bucket,
    make_policy,
    make_store,
    seed,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "tickets-eu"


def test_export_returns_every_version_of_the_subjects_objects(
    s3: S3Client, connector: ConnectorFactory
) -> None:
    create_bucket(s3, BUCKET)
    seed(s3, BUCKET, ["tickets/1/a.txt"], versions=2, ContentType="text/plain")
    s3.put_object(
        Bucket=BUCKET, Key="tickets/1/big.bin", Body=b"x" * 2048, Metadata={"origin": "upload"}
    )
    seed(s3, BUCKET, ["tickets/1/gone.txt"])
    s3.delete_object(Bucket=BUCKET, Key="tickets/1/gone.txt")  # current: a delete marker
    seed(s3, BUCKET, ["tickets/2/other.txt"])
    store = make_store({"name": BUCKET, "key_templates": ["tickets/{customer_id}/"]})
    c = connector(store, export_max_bytes=1024)
    found = c.locate(SUBJECT)
    items = list(c.export(found))
    # Old versions and versions hidden behind a delete marker are still data held; the
    # marker itself is not. The count is what the flow checks the package against.
    assert len(items) == found.record_counts()[BUCKET] == 4
    assert sorted(i.data["key"] for i in items) == [
        "tickets/1/a.txt",
        "tickets/1/a.txt",
        "tickets/1/big.bin",
        "tickets/1/gone.txt",
    ]
    versions = [i for i in items if i.data["key"] == "tickets/1/a.txt"]
    assert len({v.data["version_id"] for v in versions}) == 2
    bodies = {base64.b64decode(v.data["body_base64"]) for v in versions}
    assert b"v1 of tickets/1/a.txt" in bodies and len(bodies) == 2
    small = versions[0]
    assert small.store == "files" and small.target == BUCKET and small.categories == ("support",)
    assert small.data["content_type"] == "text/plain" and small.data["last_modified"]
    (big,) = (i for i in items if i.data["key"] == "tickets/1/big.bin")
    assert "body_base64" not in big.data and "metadata only" in big.data["body_omitted"]
    assert big.data["size"] == 2048 and big.data["metadata"] == {"origin": "upload"}


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "about tickets/1/secret.txt"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "DeleteObjects")


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (_client_error("SlowDown", 503), TransientError),
        (_client_error("InternalError", 500), TransientError),
        (_client_error("AccessDenied", 403), TerminalError),
        (_client_error("NoSuchBucket", 404), TerminalError),
        (EndpointConnectionError(endpoint_url="https://s3.example.com"), TransientError),
    ],
)
def test_errors_are_translated_without_keys(error: Exception, kind: type[Exception]) -> None:
    with pytest.raises(kind) as info, s3_errors("files", "erasure", BUCKET):
        raise error
    assert info.value.__cause__ is error
    assert "tickets/1" not in str(info.value) and "files" in str(info.value)


def test_missing_bucket_is_a_terminal_error(s3: S3Client, connector: ConnectorFactory) -> None:
    store = make_store({"name": "no-such-bucket", "key_templates": ["tickets/{customer_id}/"]})
    with pytest.raises(TerminalError, match="bucket 'no-such-bucket': locate failed"):
        connector(store).locate(SUBJECT)


def test_rectification_is_unsupported(s3: S3Client, connector: ConnectorFactory) -> None:
    from connectors.base import Rectifying
    from connectors.registry import Unsupported, require, supports

    c = connector(make_store({"name": BUCKET, "key_templates": ["t/{customer_id}/"]}))
    assert not supports(c, Rectifying)
    with pytest.raises(Unsupported, match=r"store 'files' \(type s3\) does not support rectif"):
        require(c, Rectifying, "rectification")


def test_the_registry_builds_an_s3_connector_for_an_s3_store(s3: S3Client) -> None:
    from connectors.registry import CONNECTORS, connector_for
    from connectors.s3.connector import S3Connector

    create_bucket(s3, BUCKET)
    seed(s3, BUCKET, ["tickets/1/a.txt", "tickets/2/b.txt"])
    store = make_store({"name": BUCKET, "key_templates": ["tickets/{customer_id}/"]})
    c = connector_for(store, make_policy(), KEYS)
    assert isinstance(c, S3Connector)
    [target] = c.locate(SUBJECT).targets  # works against the (mocked) default client
    assert target.target == BUCKET and [k[0] for k in target.keys] == ["tickets/1/a.txt"]
    with pytest.raises(ConfigError, match="not an S3 store"):
        CONNECTORS["s3"](_sql_store(), make_policy(), KEYS)


def _sql_store() -> Any:
    from connectors.sql.config import SqlStore

    return SqlStore.model_validate(
        {
            "type": "sql",
            "name": "crm",
            "url": "sqlite://",
            "region": REGION,
            "tables": [{"name": "customers"}],
        }
    )
