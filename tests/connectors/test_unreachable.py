"""A store that cannot be reached says which, why, and how to fix it (issue 15)."""

from __future__ import annotations

import socket

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cli.request_submit import demo_hint
from connectors.s3.client import translate


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _s3_error(endpoint: str, monkeypatch: pytest.MonkeyPatch, creds: bool = True) -> Exception:
    if creds:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    else:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.session.Session().client(
        "s3",
        region_name="eu-central-1",
        endpoint_url=endpoint,
        config=Config(retries={"max_attempts": 1}, connect_timeout=5),
    )
    try:
        client.list_object_versions(Bucket="attachments", Prefix="tickets/jane@example.com/")
    except (BotoCoreError, ClientError) as e:
        return e
    finally:
        client.close()
    raise AssertionError("the call succeeded")


def test_s3_connection_refused_names_store_address_and_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = _closed_port()
    error = translate(
        _s3_error(f"http://127.0.0.1:{port}", monkeypatch), "files", "locate", "attachments"
    )
    assert error.message.startswith(
        f"store 'files' is unreachable: connection refused at 127.0.0.1:{port} "
        "(locate of bucket 'attachments'); check that the S3 endpoint is running"
    )
    assert "LIFECYCLE_S3_ENDPOINT" in error.message
    assert "jane" not in error.message and "tickets" not in error.message  # no key, no prefix
    assert error.fields["unreachable"] is True


def test_s3_without_credentials_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    error = translate(
        _s3_error(f"http://127.0.0.1:{_closed_port()}", monkeypatch, creds=False),
        "files",
        "locate",
        "attachments",
    )
    assert "store 'files' is unreachable: no AWS credentials were found" in error.message
    assert "AWS_ACCESS_KEY_ID" in error.message


def test_the_demo_s3_store_says_how_to_start_its_local_s3() -> None:
    reason = "store 'files' is unreachable: connection refused at 127.0.0.1:9000 (locate)"
    hint = demo_hint(["files"], reason)  # the default configuration is the demo's
    assert hint is not None
    assert "the demo's local S3 and provider are not running" in hint
    assert "`make serve` starts them" in hint and "LIFECYCLE_S3_ENDPOINT" in hint
    secret = "store 'newsletter': environment variable LIFECYCLE_NEWSLETTER_SECRET is not set"
    assert demo_hint(["newsletter"], secret) == hint  # the provider, likewise
    assert demo_hint(["crm"], reason.replace("files", "crm")) is None
    assert demo_hint(["files"], "store 'files': locate failed (AccessDenied)") is None
