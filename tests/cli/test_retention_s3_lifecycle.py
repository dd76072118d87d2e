"""``lifecycle retention s3-lifecycle`` through the real CLI app, against S3 over HTTP.

``local_s3`` is moto's server holding the demo buckets with no lifecycle configuration.
moto stores lifecycle rules and returns them as AWS does but never runs them: these tests
cover rendering, drift and apply, not expiry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from audit.ledger import Ledger
from cli.main import app
from config.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from demo.s3_server import LocalS3

runner = CliRunner()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
TICKETS = "demo-ticket-attachments"
ARCHIVE = "demo-legal-archive"
COMMAND = ["retention", "s3-lifecycle"]
RULE_IDS = ["lifecycle-ticket-attachments-2y", "lifecycle-ticket-attachments-2y-markers"]
ARCHIVE_RULE = """
  - id: legal-archive-10y
    store: files
    bucket: demo-legal-archive
    age: 10y
    action: delete
"""


def _plain(text: str) -> str:
    return _ANSI.sub("", text)


def _row(out: str, rule_id: str) -> list[str]:
    """The cells of the table line naming ``rule_id``."""
    [line] = [line for line in out.splitlines() if f" {rule_id} " in line]
    return [cell.strip() for cell in line.strip("│ ").split("│")]


def _invoke(*args: str) -> Any:
    return runner.invoke(app, [*COMMAND, *args])


@pytest.fixture
def s3(local_s3: LocalS3) -> Iterator[S3Client]:
    client = local_s3.client()
    yield client
    client.close()


@pytest.fixture
def archive_rule_config(tmp_path: Path) -> Path:
    """The demo configuration plus a 10-year rule on the legal archive (HOLD-2026-001)."""
    folder = tmp_path / "cfg"
    folder.mkdir()
    demo = PROJECT_ROOT / "config" / "demo"
    (folder / "inventory.yaml").write_text((demo / "inventory.yaml").read_text("utf-8"), "utf-8")
    policy = (demo / "policy.yaml").read_text("utf-8")
    anchor = "\nlegal_holds:"
    assert policy.count(anchor) == 1
    (folder / "policy.yaml").write_text(policy.replace(anchor, ARCHIVE_RULE + anchor), "utf-8")
    return folder


def _rule_ids(s3: S3Client, bucket: str) -> list[str]:
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    return sorted(str(r.get("ID")) for r in rules)


def test_drift_exits_3_then_apply_writes_the_rules_and_exits_0(
    s3: S3Client, isolated_settings: Path
) -> None:
    result = _invoke()
    assert result.exit_code == 3, result.output
    out = _plain(result.stdout)
    assert f"files/{TICKETS}: drift: 2 to add, 0 to change, 0 to remove" in out
    assert f"files/{ARCHIVE}: in sync" in out
    assert [_row(out, rule_id)[0] for rule_id in RULE_IDS] == ["add", "add"]
    assert "run again with --apply" in out

    applied = _invoke("--apply")
    assert applied.exit_code == 0, applied.output
    assert "applied (2 rules written); read back: in sync" in _plain(applied.stdout)
    assert _rule_ids(s3, TICKETS) == RULE_IDS

    again = _invoke()
    assert again.exit_code == 0, again.output
    assert f"files/{TICKETS}: in sync" in _plain(again.stdout)

    events = list(Ledger.open().events(kinds=["retention.lifecycle_applied"]))
    assert [(e.connector, e.target, e.status.value, dict(e.counts)) for e in events] == [
        (
            "files",  # the store's name, as in every other event (not its type)
            f"files/{TICKETS}",
            "succeeded",
            {"added": 2, "changed": 0, "removed": 0, "unmanaged_kept": 0},
        )
    ]


def test_json_shape(s3: S3Client) -> None:
    result = _invoke("--json", "--bucket", TICKETS)
    assert result.exit_code == 3, result.output
    payload = json.loads(result.stdout)
    assert payload["in_sync"] is False
    assert payload["applied"] is False
    [bucket] = payload["buckets"]
    assert set(bucket) == {
        "store",
        "bucket",
        "in_sync",
        "add",
        "change",
        "remove",
        "unmanaged",
        "unchanged",
        "desired",
        "left_to_sweep",
        "applied",
        "in_sync_after",
    }
    assert (bucket["store"], bucket["bucket"], bucket["in_sync"]) == ("files", TICKETS, False)
    assert bucket["add"][0] == {
        "ID": "lifecycle-ticket-attachments-2y",
        "Prefix": "tickets/",
        "Status": "Enabled",
        "ExpirationDays": 731,
        "ExpiredObjectDeleteMarker": False,
        "NoncurrentDays": 731,
        "Other": [],
    }
    assert [r["ID"] for r in bucket["desired"]] == RULE_IDS

    applied = json.loads(_invoke("--json", "--apply").stdout)
    assert applied["in_sync"] is True
    assert applied["applied"] is True
    by_bucket = {b["bucket"]: b for b in applied["buckets"]}
    assert by_bucket[TICKETS]["in_sync_after"] is True
    assert by_bucket[ARCHIVE]["applied"] is False  # it was in sync: nothing written


def test_held_bucket_stays_with_the_sweep_and_loses_our_stale_rules(
    s3: S3Client, archive_rule_config: Path
) -> None:
    # A rule of ours from before the hold, next to someone else's: ours must go, theirs stay.
    stale: Any = {
        "Rules": [
            {
                "ID": "lifecycle-legal-archive-10y",
                "Filter": {"Prefix": ""},
                "Status": "Enabled",
                "Expiration": {"Days": 3653},
            },
            {
                "ID": "tmp-cleanup",
                "Filter": {"Prefix": "tmp/"},
                "Status": "Enabled",
                "Expiration": {"Days": 1},
            },
        ]
    }
    s3.put_bucket_lifecycle_configuration(Bucket=ARCHIVE, LifecycleConfiguration=stale)
    config = ["--config", str(archive_rule_config), "--bucket", ARCHIVE]

    result = _invoke(*config)
    assert result.exit_code == 3, result.output
    out = _plain(result.stdout)
    assert "left to the nightly sweep: * (whole bucket): held by HOLD-2026-001" in out
    assert _row(out, "lifecycle-legal-archive-10y")[:2] == ["remove", "lifecycle-legal-archive-10y"]
    assert _row(out, "tmp-cleanup")[:2] == ["unmanaged", "tmp-cleanup"]

    assert _invoke(*config, "--apply").exit_code == 0
    assert _rule_ids(s3, ARCHIVE) == ["tmp-cleanup"]


def test_unknown_store_or_bucket_exits_2(local_s3: LocalS3) -> None:
    store = _invoke("--store", "crm")
    assert store.exit_code == 2
    assert "no S3 store named 'crm' (S3 stores: files)" in _plain(store.stderr)
    bucket = _invoke("--bucket", "nope")
    assert bucket.exit_code == 2
    assert "no bucket named 'nope'" in _plain(bucket.stderr)


def test_invalid_configuration_exits_2(tmp_path: Path) -> None:
    result = _invoke("--config", str(tmp_path))
    assert result.exit_code == 2
    assert "has no inventory.yaml" in _plain(result.stderr)


def test_help_documents_the_exit_codes() -> None:
    result = _invoke("--help")
    assert result.exit_code == 0
    text = " ".join(_plain(result.stdout).split())
    assert "3 drift found and --apply not given" in text
