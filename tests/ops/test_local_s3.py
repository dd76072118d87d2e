"""``python -m ops.local_s3``, the served demo's S3: HTTPS with its own CA, and the buckets set
up as the demo's transfer check expects, so a check on a fresh ``make serve`` passes while
seeding and erasures keep working under the TLS-only policy."""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

import boto3
import pytest
from botocore.config import Config

from config.loader import load_config
from connectors.s3.config import S3Store
from connectors.s3.posture import store_facts
from demo.s3_server import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY
from demo.seed_s3 import DEMO_BUCKETS, TICKETS_BUCKET, seed_s3, tls_only_policy
from ops import demo_setup, local_s3, procs
from transfers.evaluate import evaluate

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef


def _free_port() -> int:
    rng = random.Random()
    while not procs.port_free("127.0.0.1", port := rng.randrange(20000, 32000)):
        pass
    return port


def _client(endpoint: str, ca: Path) -> S3Client:
    session = boto3.session.Session(
        aws_access_key_id=DUMMY_ACCESS_KEY,
        aws_secret_access_key=DUMMY_SECRET_KEY,
        region_name="eu-central-1",
    )
    client: S3Client = session.client(
        "s3", endpoint_url=endpoint, verify=str(ca), config=Config(s3={"addressing_style": "path"})
    )
    return client


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """The served local S3 as ``lifecycle server start`` runs it: endpoint, CA, log."""
    port = _free_port()
    folder = local_s3.tls_dir(tmp_path / "serve")
    log = tmp_path / "s3.log"
    args = local_s3.command(sys.executable, port, folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    child = procs.spawn(args, env, tmp_path, log, tmp_path / "s3.pid")
    endpoint = local_s3.endpoint(port)
    try:
        deadline = time.monotonic() + 120
        while not local_s3.ready(endpoint, ca=local_s3.ca_file(folder)):
            assert child.poll() is None, procs.tail(log)
            assert time.monotonic() < deadline, procs.tail(log)
            time.sleep(0.2)
        yield endpoint, local_s3.ca_file(folder), log
    finally:
        procs.terminate(child.pid, grace=30)
        child.wait(timeout=60)


def test_served_s3_is_tls_only_and_a_transfer_check_passes(
    served: tuple[str, Path, Path],
) -> None:
    endpoint, ca, log = served
    assert endpoint.startswith("https://127.0.0.1:")
    assert not local_s3.ready(endpoint)  # without the CA it is not trusted
    assert local_s3.ready(endpoint.replace("https://", "http://"), ca=ca) is False  # TLS only
    client = _client(endpoint, ca)
    for bucket in DEMO_BUCKETS:
        policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
        assert policy == json.loads(tls_only_policy(bucket))

    config = load_config(demo_setup.DEMO_CONFIG_DIR)
    files = cast(S3Store, config.store("files"))
    facts = store_facts(client, files, config, all_buckets=True)
    findings = evaluate(facts, config.policy.transfers, datetime.now(UTC).date())
    assert [(f.severity, f.rule) for f in findings] == []

    # Seeding (and so erasing: DeleteObjects by version) work under the policy.
    data = seed_s3(client, customer_ids=list(range(1, 9)), subject_customer_id=3)
    assert data.buckets[TICKETS_BUCKET].versions > 0
    key = data.subject_keys[TICKETS_BUCKET][0]
    versions = client.list_object_versions(Bucket=TICKETS_BUCKET, Prefix=key)
    ids: list[ObjectIdentifierTypeDef] = [
        {"Key": key, "VersionId": v["VersionId"]} for v in versions.get("Versions", [])
    ]
    deleted = client.delete_objects(Bucket=TICKETS_BUCKET, Delete={"Objects": ids})
    assert not deleted.get("Errors") and len(deleted["Deleted"]) == len(ids)
    client.close()
    text = log.read_text()
    assert "starting python -m ops.local_s3 =====" in text  # spawn's start marker
    assert f"local S3 serving on {endpoint}" in text and "TLS only" in text


def test_demo_setup_hands_flow_runs_the_ca(tmp_path: Path) -> None:
    ca = local_s3.ca_file(local_s3.tls_dir(tmp_path))
    env = demo_setup.s3_env("https://127.0.0.1:4566", ca)
    assert env["AWS_CA_BUNDLE"] == str(ca) == str(tmp_path / "s3-tls" / "ca.pem")
    assert env["LIFECYCLE_S3_ENDPOINT"] == env["AWS_ENDPOINT_URL_S3"] == "https://127.0.0.1:4566"
    assert "AWS_CA_BUNDLE" not in demo_setup.s3_env("http://127.0.0.1:4566")
    assert local_s3.command("py", 4566, None) == ["py", "-m", "ops.local_s3", "--port", "4566"]
    state = local_s3.state_dir(tmp_path)
    assert state == tmp_path / "s3-state"
    assert local_s3.command("py", 1, tmp_path, state)[-4:] == [
        "--tls-dir",
        str(tmp_path),
        "--state-dir",
        str(state),
    ]


def test_listing_the_buckets_is_not_ready_until_their_setup_is_done(tmp_path: Path) -> None:
    """The buckets are listed before their policies are put: readiness waits for the marker
    the server writes after its setup (a transfer check in between saw no TLS-only policy)."""
    from demo.s3_server import LocalS3
    from demo.seed_s3 import ensure_bucket

    folder = local_s3.tls_dir(tmp_path)
    with LocalS3(tls_dir=folder) as s3:
        client = s3.client()
        for bucket, object_lock in DEMO_BUCKETS.items():
            ensure_bucket(client, bucket, s3.region, object_lock=object_lock)
        client.close()
        ca = local_s3.ca_file(folder)
        assert not local_s3.ready(s3.endpoint_url, ca=ca)  # listed, but not set up
        local_s3.setup_marker(folder).write_text("https://127.0.0.1:1\n")
        assert not local_s3.ready(s3.endpoint_url, ca=ca)  # another server's marker
        local_s3.setup_marker(folder).write_text(s3.endpoint_url + "\n")
        assert local_s3.ready(s3.endpoint_url, ca=ca)
