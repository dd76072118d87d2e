"""Posture facts of a processor (region against the transfer policy, the agreement) through
the catalog's hook, and its doctor hook (a signed ping; config only in manual mode)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from config.loader import load_config
from config.schema.transfers import TransferPolicy
from connectors import catalog
from connectors.doctor_report import run_doctor
from connectors.hooks import load_hook
from connectors.processor.config import ProcessorStore
from connectors.processor.posture import gather_posture
from demo.processor_server import StubProvider
from tests.config.conftest import DEMO_DIR
from tests.connectors.processor.conftest import SECRET_ENV, MakeStore, store_data

TODAY = date(2026, 11, 26)


@pytest.fixture(scope="module")
def transfers() -> TransferPolicy:
    policy = load_config(DEMO_DIR).policy.transfers
    assert policy is not None
    return policy


def _store(**overrides: Any) -> ProcessorStore:
    return ProcessorStore.model_validate(store_data(**overrides))


def _findings(store: ProcessorStore, transfers: TransferPolicy) -> list[tuple[str, str, str]]:
    demo = load_config(DEMO_DIR)
    hook = load_hook(catalog.spec_for(store).posture or "")
    assert hook is gather_posture
    (facts,) = gather_posture(demo, store, account_wide=True)
    assert (facts.posture_key, facts.counted_as) == ("store:mailer", "processors")
    return [(f.rule, f.severity, f.evidence) for f in facts.findings(transfers, TODAY)]


def test_a_processor_at_home_under_an_agreement_has_no_findings(
    transfers: TransferPolicy,
) -> None:
    assert _findings(_store(), transfers) == []


def test_an_expired_or_missing_agreement_is_a_finding(transfers: TransferPolicy) -> None:
    expired = _store(agreement={"reference": "DPA-2019-1", "expires": "2026-11-25"})
    assert _findings(expired, transfers) == [
        (
            "processor.dpa-expired",
            "high",
            "data processing agreement DPA-2019-1 with Example Mail expired on 2026-11-25",
        )
    ]
    missing = _store(agreement=None)
    assert _findings(missing, transfers) == [
        ("processor.dpa-missing", "high", "no data processing agreement declared for Example Mail")
    ]
    soon = _store(agreement={"reference": "DPA-2025-7", "expires": "2026-12-10"})
    assert [rule for rule, _, _ in _findings(soon, transfers)] == ["processor.dpa-expiring"]


def test_a_region_outside_the_policy_is_a_finding(transfers: TransferPolicy) -> None:
    far = _store(region="ap-southeast-2")
    assert _findings(far, transfers) == [
        (
            "processor.region",
            "high",
            "processor Example Mail is in ap-southeast-2, outside EEA with no route for contact",
        )
    ]
    # contact may go to us-east-1 under an SCC until 2027-06-30.
    assert _findings(_store(region="us-east-1"), transfers) == []


def test_the_hook_refuses_another_types_store() -> None:
    demo = load_config(DEMO_DIR)
    with pytest.raises(TypeError, match="store 'crm' is not a processor store"):
        gather_posture(demo, demo.store("crm"), account_wide=False)


def test_doctor_pings_the_provider(make_store: MakeStore, provider: StubProvider) -> None:
    report = run_doctor(make_store())
    assert report is not None
    assert (report.type, report.reachable, report.ok, report.problems) == (
        "processor",
        True,
        True,
        (),
    )
    assert [op for op, _ in provider.calls] == ["ping"]
    assert report.to_json()["mode"] == "api"


def test_doctor_reports_a_refused_signature(
    make_store: MakeStore, provider: StubProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "wrong")
    report = run_doctor(make_store())
    assert report is not None and report.reachable and not report.ok
    assert report.problems == (
        "mailer: store 'mailer': the provider refused ping (HTTP 401) "
        "(signature refused: check secret_env)",
    )


def test_doctor_of_a_manual_processor_checks_the_config_only() -> None:
    store = _store(
        mode="manual",
        endpoint=None,
        secret_env=None,
        agreement={"reference": "DPA-1", "expires": "2001-01-01"},
    )
    report = run_doctor(store)
    assert report is not None and report.ok and report.location == "manual"
    assert report.warnings == ("mailer: agreement: DPA-1 expired on 2001-01-01",)
