"""The local S3 server: starts on a free port, answers S3 over HTTP, stops cleanly."""

from __future__ import annotations

import os
import socket
import urllib.request
from typing import Final

import pytest

from demo.s3_server import LocalS3, applied, local_s3

REGION: Final = "eu-central-1"  # Final: typed as the literal boto3-stubs expects


def _port_is_open(endpoint: str) -> bool:
    host, port = endpoint.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, int(port))) == 0


def test_serves_s3_over_http_and_stops_cleanly() -> None:
    with LocalS3(region=REGION) as s3:
        endpoint = s3.endpoint_url
        assert endpoint.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{endpoint}/", timeout=5) as response:  # plain HTTP
            assert response.status == 200
        client = s3.client()
        client.create_bucket(
            Bucket="demo-server-check", CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        client.put_object(Bucket="demo-server-check", Key="hello.txt", Body=b"fictional")
        body = client.get_object(Bucket="demo-server-check", Key="hello.txt")["Body"].read()
        assert body == b"fictional"
        assert client.meta.endpoint_url == endpoint
    assert not s3.running
    assert not _port_is_open(endpoint)  # listening socket closed, not left to the GC
    with pytest.raises(RuntimeError, match="not running"):
        _ = s3.endpoint_url
    s3.stop()  # stopping twice is harmless


def test_two_servers_get_distinct_free_ports() -> None:
    with local_s3() as one, local_s3() as two:
        assert one.endpoint_url != two.endpoint_url


def test_state_is_per_process_and_a_fresh_server_starts_empty() -> None:
    # moto keeps buckets in module-level backends: a second server in the same process sees
    # them unless it resets on start (fresh=True, the default).
    with LocalS3() as s3:
        s3.client().create_bucket(
            Bucket="left-over-bucket", CreateBucketConfiguration={"LocationConstraint": REGION}
        )
    with LocalS3(fresh=False) as s3:
        assert [b["Name"] for b in s3.client().list_buckets()["Buckets"]] == ["left-over-bucket"]
    with LocalS3() as s3:
        assert s3.client().list_buckets()["Buckets"] == []


def test_env_is_returned_not_applied() -> None:
    with LocalS3() as s3:
        env = s3.env()
        assert env["LIFECYCLE_S3_ENDPOINT"] == s3.endpoint_url
        assert env["AWS_DEFAULT_REGION"] == REGION
        assert os.environ.get("LIFECYCLE_S3_ENDPOINT") != s3.endpoint_url
        before = os.environ.get("AWS_ACCESS_KEY_ID")
        with s3.applied_env():
            assert os.environ["LIFECYCLE_S3_ENDPOINT"] == s3.endpoint_url
            assert os.environ["AWS_ACCESS_KEY_ID"] == env["AWS_ACCESS_KEY_ID"]
        assert "LIFECYCLE_S3_ENDPOINT" not in os.environ
        assert os.environ.get("AWS_ACCESS_KEY_ID") == before


def test_applied_restores_previous_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("LIFECYCLE_S3_ENDPOINT", raising=False)
    with applied({"AWS_DEFAULT_REGION": REGION, "LIFECYCLE_S3_ENDPOINT": "http://127.0.0.1:1"}):
        assert os.environ["AWS_DEFAULT_REGION"] == REGION
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert "LIFECYCLE_S3_ENDPOINT" not in os.environ
