"""The transfer-check flow and ``lifecycle transfers check`` on moto (in-process, several regions).

A compliant setup passes with no finding; a violation fails the run naming it (so a
Prefect automation on failed runs notifies) and is recorded in the ledger; once fixed,
the next run reports it as resolved.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from audit.ledger import Ledger
from cli.main import app
from config.loader import load_config
from config.settings import PROJECT_ROOT, get_settings
from core.errors import TerminalError
from flows.transfer_check import CheckParameters, transfer_check
from tests.connectors.s3.test_posture import harden, make_bucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

TICKETS = "demo-ticket-attachments"
ARCHIVE = "demo-legal-archive"


@pytest.fixture
def aws(
    isolated_settings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> Iterator[S3Client]:
    """The demo configuration on moto's in-process AWS, with both demo buckets compliant."""
    folder = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config" / "demo", folder)
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(folder))
    monkeypatch.delenv("LIFECYCLE_S3_ENDPOINT", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    get_settings.cache_clear()
    with mock_aws():
        s3: S3Client = boto3.client("s3", region_name="eu-central-1")
        for bucket in (TICKETS, ARCHIVE):
            make_bucket(bucket, "eu-central-1", versioned=True)
        _sync_lifecycle(s3)
        for bucket in (TICKETS, ARCHIVE):
            harden(s3, bucket)
        yield s3


def _sync_lifecycle(s3: S3Client) -> None:
    from datetime import UTC, datetime

    from connectors.s3.lifecycle import apply, current_rules, desired_rules
    from retention.targets import resolve_targets

    config = load_config()
    plan = desired_rules(resolve_targets(config, datetime.now(UTC)))
    for bucket in (TICKETS, ARCHIVE):
        apply(s3, bucket, plan.rules.get(bucket, []), current_rules(s3, bucket))


def events(kind: str) -> list[Any]:
    return list(Ledger.open().events(kinds=[kind]))


def test_compliant_setup_passes_then_a_violation_fails_and_its_fix_resolves(
    aws: S3Client,
) -> None:
    first = transfer_check(params=CheckParameters(all_buckets=True))
    assert first["findings"] == []

    aws.delete_bucket_encryption(Bucket=TICKETS)
    make_bucket("stray-uploads", "us-west-2")  # exists, but no inventory declares it
    with pytest.raises(TerminalError) as failed:
        transfer_check(params=CheckParameters(all_buckets=True))
    assert "s3.encryption-missing s3://demo-ticket-attachments" in failed.value.message
    found = events("transfer.finding")
    assert {(e.detail["rule"], e.target, e.detail["state"]) for e in found} == {
        ("s3.encryption-missing", f"s3://{TICKETS}", "new"),
        ("s3.unclassified-bucket", "s3://stray-uploads", "new"),
    }

    harden(aws, TICKETS)
    third = transfer_check(params=CheckParameters(all_buckets=False))
    assert {(r["rule"], r["state"]) for r in third["findings"]} == {
        ("s3.encryption-missing", "resolved"),
        ("s3.unclassified-bucket", "resolved"),
    }
    resolved = events("transfer.resolved")
    assert {e.detail["rule"] for e in resolved} == {
        "s3.encryption-missing",
        "s3.unclassified-bucket",
    }
    checked = events("transfer.checked")
    assert [e.counts["high"] for e in checked] == [0, 1, 0]
    assert Ledger.open().verify().ok


def test_cli_exits_3_on_a_high_finding_and_0_when_clean(aws: S3Client) -> None:
    runner = CliRunner()
    clean = runner.invoke(app, ["transfers", "check", "--json"], env={"COLUMNS": "200"})
    assert clean.exit_code == 0, clean.stderr
    assert json.loads(clean.stdout)["findings"] == []

    aws.delete_public_access_block(Bucket=ARCHIVE)
    bad = runner.invoke(app, ["transfers", "check", "--json"], env={"COLUMNS": "200"})

    assert bad.exit_code == 3, bad.stderr
    payload = json.loads(bad.stdout)
    assert payload["high"] == 1
    (finding,) = payload["findings"]
    assert finding["rule"] == "s3.public-access-not-blocked"
    assert finding["resource"] == f"s3://{ARCHIVE}" and finding["state"] == "new"
    assert finding["categories"] == "contract"
