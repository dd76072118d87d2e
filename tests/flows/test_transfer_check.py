"""The transfer-check flow and ``lifecycle transfers check`` on moto (in-process, several regions).

A compliant setup passes with no finding; a violation fails the run naming it (so a
Prefect automation on failed runs notifies) and is recorded in the ledger; once fixed,
the next run reports it as resolved. A store type added to the catalog with a posture
hook is checked like the others; one without is listed as not checked.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

import config.loader as config_loader
import flows.transfer_check as transfer_check_flow
from audit.ledger import Ledger
from cli.main import app
from config.loader import load_config
from config.schema.inventory import Inventory
from config.schema.model import LifecycleConfig
from config.schema.stores import StoreConfig
from config.schema.transfers import TransferPolicy
from config.settings import PROJECT_ROOT, get_settings
from connectors import catalog
from connectors.catalog import StoreSpec
from core.errors import TerminalError
from flows.transfer_check import CheckParameters, transfer_check
from tests.connectors.s3.test_posture import harden, make_bucket
from transfers.evaluate import region_findings
from transfers.findings import Finding

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


# A third store type plugged in through the catalog alone: "processor" (a third-party
# provider; its posture facts are its region and its processing agreement's expiry) with a
# posture hook, and "tape" without one. Nothing in tasks/ or transfers/ names either.


class ProcessorStore(StoreConfig):
    type: Literal["processor"]
    region: str
    categories: tuple[str, ...]
    dpa_expires: date


class TapeStore(StoreConfig):
    type: Literal["tape"]


@dataclass(frozen=True)
class ProcessorFacts:
    store: str
    region: str
    categories: tuple[str, ...]
    dpa_expires: date

    @property
    def posture_key(self) -> str:
        return f"processor:{self.store}"

    @property
    def counted_as(self) -> str:
        return "processors"

    def findings(self, policy: TransferPolicy | None, today: date) -> list[Finding]:
        where = self.posture_key
        out = region_findings(
            policy,
            rule="processor.region",
            store=self.store,
            resource=where,
            region=self.region,
            categories=self.categories,
            today=today,
            what="processor",
        )
        if self.dpa_expires < today:
            out.append(
                Finding(
                    "processor.dpa-expired",
                    "medium",
                    self.store,
                    where,
                    f"the data processing agreement expired on {self.dpa_expires}",
                    self.categories,
                    "a data processing agreement in force",
                )
            )
        return out


GATHERED: list[tuple[str, bool]] = []


def processor_posture(
    config: LifecycleConfig, store: StoreConfig, *, account_wide: bool
) -> list[ProcessorFacts]:
    """The processor's posture hook, named in the catalog by reference."""
    assert isinstance(store, ProcessorStore)
    GATHERED.append((store.name, account_wide))
    return [ProcessorFacts(store.name, store.region, store.categories, store.dpa_expires)]


NO_POSTURE_TEXT = "no posture facts for this store type"
UNCHECKED = [{"store": "tapes", "type": "tape", "reason": NO_POSTURE_TEXT}]


@pytest.fixture
def plug_in(
    monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> Callable[..., LifecycleConfig]:
    """Register both fake types in the catalog; ``use(region, dpa_expires)`` makes the
    demo policy with a processor and a tape store the configuration every check loads."""
    hook = f"{__name__}:processor_posture"
    monkeypatch.setattr(
        catalog,
        "STORE_TYPES",
        (*catalog.STORE_TYPES, StoreSpec(ProcessorStore, posture=hook), StoreSpec(TapeStore)),
    )
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    GATHERED.clear()
    demo = load_config(PROJECT_ROOT / "config" / "demo")

    def use(region: str, dpa_expires: date) -> LifecycleConfig:
        mailer = ProcessorStore(
            type="processor",
            name="mailer",
            region=region,
            categories=("contact",),
            dpa_expires=dpa_expires,
        )
        tapes = TapeStore(type="tape", name="tapes")
        stores: Any = (mailer, tapes)  # the static union lists the built-in types only
        config = demo.model_copy(update={"inventory": Inventory.model_construct(stores=stores)})
        monkeypatch.setattr(transfer_check_flow, "check_context", lambda: config)
        monkeypatch.setattr(config_loader, "load_config", lambda *a, **k: config)
        return config

    return use


def test_a_new_store_type_plugs_in_with_its_posture_hook_alone(
    plug_in: Callable[..., LifecycleConfig],
) -> None:
    today = datetime.now(UTC).date()
    plug_in("us-west-2", today + timedelta(days=365))  # contact may not go to us-west-2
    with pytest.raises(TerminalError) as failed:
        transfer_check(params=CheckParameters(all_buckets=True))
    assert "processor.region processor:mailer" in failed.value.message
    assert GATHERED == [("mailer", True)]  # the type's first store reads account-wide facts
    (finding,) = events("transfer.finding")
    assert (finding.detail["rule"], finding.connector, finding.detail["state"]) == (
        "processor.region",
        "mailer",
        "new",
    )

    plug_in("eu-central-1", today - timedelta(days=1))  # moved home, agreement lapsed
    second = transfer_check(params=CheckParameters(all_buckets=True))
    assert {(r["rule"], r["state"]) for r in second["findings"]} == {
        ("processor.dpa-expired", "new"),
        ("processor.region", "resolved"),
    }
    assert second["unchecked"] == UNCHECKED

    checked = events("transfer.checked")
    assert [dict(e.counts) for e in checked] == [
        {"processors": 1, "findings": 1, "high": 1, "new": 1, "persisting": 0, "resolved": 0}
        | {"unchecked": 1},
        {"processors": 1, "findings": 1, "high": 0, "new": 1, "persisting": 0, "resolved": 1}
        | {"unchecked": 1},
    ]
    assert all(e.detail == {"unchecked": UNCHECKED} for e in checked)
    assert Ledger.open().verify().ok


def test_the_cli_lists_a_store_whose_type_has_no_posture_as_not_checked(
    plug_in: Callable[..., LifecycleConfig],
) -> None:
    plug_in("eu-central-1", datetime.now(UTC).date() + timedelta(days=30))
    runner = CliRunner()
    as_json = runner.invoke(app, ["transfers", "check", "--json"], env={"COLUMNS": "200"})
    assert as_json.exit_code == 0, as_json.stderr
    payload = json.loads(as_json.stdout)
    assert payload["findings"] == [] and payload["unchecked"] == UNCHECKED

    text = runner.invoke(app, ["transfers", "check"], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.stderr
    assert f"not checked: store 'tapes' (type tape): {NO_POSTURE_TEXT}" in text.stdout
