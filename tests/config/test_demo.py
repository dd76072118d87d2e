"""The demo configuration loads, and the lookups later features rely on work."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from config.durations import Duration
from config.loader import load_config
from config.schema import LifecycleConfig
from connectors.processor.config import ProcessorStore
from connectors.s3.config import S3Store
from connectors.sql.config import SqlStore
from core.errors import NotFoundError
from tests.config.conftest import DEMO_DIR


@pytest.fixture
def demo() -> LifecycleConfig:
    return load_config(DEMO_DIR)


def test_default_config_dir_is_the_demo(isolated_settings: Path) -> None:
    loaded = load_config()
    assert loaded.source == DEMO_DIR
    crm = loaded.store("crm")
    assert isinstance(crm, SqlStore)
    # LIFECYCLE_DATA_DIR comes from the (isolated) environment.
    assert crm.url.get_secret_value() == f"sqlite:///{isolated_settings}/crm.db"


def test_data_dir_defaults_to_settings_when_not_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LIFECYCLE_DATA_DIR")
    from config.settings import get_settings

    get_settings.cache_clear()
    crm = load_config(DEMO_DIR).store("crm")
    assert isinstance(crm, SqlStore)
    assert crm.url.get_secret_value() == f"sqlite:///{get_settings().data_dir}/crm.db"


def test_stores_and_tables(demo: LifecycleConfig) -> None:
    assert [s.name for s in demo.stores_of(SqlStore)] == ["crm"]
    assert [s.name for s in demo.stores_of(S3Store)] == ["files"]
    crm = demo.stores_of(SqlStore)[0]
    assert [t.name for t in crm.tables] == [
        "customers",
        "orders",
        "order_items",
        "invoices",
        "support_tickets",
        "login_events",
    ]
    assert crm.region == "eu-central-1"
    assert crm.table("order_items").primary_key == ("order_id", "line_no")
    customers = crm.table("customers")
    assert [(i.column, i.kind, i.case_insensitive) for i in customers.identity] == [
        ("email", "email", True),
        ("customer_number", "customer_number", False),
    ]
    assert customers.fields_in("contact") == ("email", "full_name", "phone")
    tickets = crm.table("support_tickets")
    assert [(r.columns, r.table, r.to_columns) for r in tickets.references] == [
        (("customer_id",), "customers", ("id",))
    ]
    with pytest.raises(NotFoundError):
        crm.table("nope")


def test_buckets(demo: LifecycleConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    files = demo.store("files")
    assert isinstance(files, S3Store)
    assert files.endpoint_url is None  # LIFECYCLE_S3_ENDPOINT unset: the AWS default
    attachments = files.bucket("demo-ticket-attachments")
    assert attachments.categories == ("support",)
    assert attachments.key_templates == ("tickets/{customer_id}/",)
    assert files.bucket_region(attachments) == "eu-central-1"
    assert files.bucket("demo-legal-archive").key_templates == ("contracts/{customer_id}/",)
    monkeypatch.setenv("LIFECYCLE_S3_ENDPOINT", "http://127.0.0.1:9000")
    files = load_config(DEMO_DIR).store("files")
    assert isinstance(files, S3Store) and files.endpoint_url is not None
    assert files.endpoint_url.get_secret_value() == "http://127.0.0.1:9000"


def test_the_demo_declares_one_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFECYCLE_NEWSLETTER_ENDPOINT", raising=False)
    (newsletter,) = load_config(DEMO_DIR).stores_of(ProcessorStore)
    assert (newsletter.name, newsletter.provider, newsletter.mode) == (
        "newsletter",
        "Example Mail",
        "api",
    )
    assert newsletter.categories == ("contact",) and newsletter.identities == ("email",)
    assert newsletter.region == "eu-west-1"  # in the EEA: no transfer finding
    assert newsletter.agreement is not None and newsletter.agreement.expires > date.today()
    # Unset: the served demo's local provider (ops.serve_env.DEFAULT_PROVIDER_PORT).
    assert newsletter.endpoint == "http://127.0.0.1:4580"
    assert newsletter.secret_env == "LIFECYCLE_NEWSLETTER_SECRET"
    assert newsletter.poll_interval <= 1  # the stub confirms late: the demo polls briskly
    monkeypatch.setenv("LIFECYCLE_NEWSLETTER_ENDPOINT", "http://127.0.0.1:9999/")
    moved = load_config(DEMO_DIR).store("newsletter")
    assert isinstance(moved, ProcessorStore) and moved.endpoint == "http://127.0.0.1:9999"


def test_identities_and_categories(demo: LifecycleConfig) -> None:
    assert demo.identity_kinds() == {"email", "customer_number"}
    assert demo.derived_identity_names() == {"customer_id"}
    assert {c.name for c in demo.policy.categories} == {
        "contact",
        "order_history",
        "billing",
        "support",
        "telemetry",
        "contract",
    }
    assert demo.category("billing").personal is True
    with pytest.raises(NotFoundError):
        demo.category("health")
    with pytest.raises(NotFoundError):
        demo.store("warehouse")


def test_request_policy(demo: LifecycleConfig) -> None:
    requests = demo.policy.requests
    assert (requests.deadline_days, requests.max_deadline_days) == (30, 90)
    assert requests.approval.required_for == ("erasure",)
    assert requests.approval.auto_approve is True
    assert [a.name for a in requests.approval.approvers] == ["privacy-officer"]
    billing = requests.erasure.rule_for("billing")
    assert (billing.action, billing.mask) == ("mask", "redact")
    assert billing.reason is not None and "tax law" in billing.reason
    assert requests.erasure.rule_for("contact").action == "delete"


def test_retention_rules(demo: LifecycleConfig) -> None:
    rules = {r.id: r for r in demo.policy.retention}
    assert set(rules) == {
        "login-events-90d",
        "support-tickets-2y",
        "customers-anonymize-3y",
        "ticket-attachments-2y",
    }
    login = rules["login-events-90d"]
    assert (login.target_kind, login.table, login.age, login.action) == (
        "table",
        "login_events",
        Duration(days=90),
        "delete",
    )
    anonymize = rules["customers-anonymize-3y"]
    assert anonymize.action == "anonymize" and anonymize.age == Duration(years=3)
    assert anonymize.measured_from is not None
    assert anonymize.measured_from.column == "contract_ended_at"
    attachments = rules["ticket-attachments-2y"]
    assert attachments.target_kind == "bucket"
    assert attachments.measured_from is not None
    assert attachments.measured_from.s3 == "last_modified"


def test_legal_holds(demo: LifecycleConfig) -> None:
    expired, active = demo.policy.legal_holds
    today = date(2026, 6, 1)
    assert not expired.active_on(today)
    assert active.active_on(today)
    assert demo.policy.holds_active_on(today) == (active,)
    assert active.scope.bucket == "demo-legal-archive"


def test_transfers(demo: LifecycleConfig) -> None:
    transfers = demo.policy.transfers
    assert transfers is not None
    assert "eu-central-1" in transfers.home_regions()
    assert transfers.adequate_regions() == {"eu-central-2", "eu-west-2"}
    contact = transfers.routes_for("contact")
    assert [(r.destination, r.safeguard) for r in contact] == [
        ("EEA", "home"),
        ("us-east-1", "scc"),
    ]
    assert contact[1].expires == date(2027, 6, 30)
    assert transfers.routes_for("telemetry") == ()


def test_models_are_frozen(demo: LifecycleConfig) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        demo.policy.requests.deadline_days = 5  # type: ignore[misc]
