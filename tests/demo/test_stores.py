"""``demo.stores``: what the demo commands ask of the demo inventory's concrete stores."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.loader import load_config
from core.errors import ConfigError
from demo import stores

DEMO_DIR = Path(__file__).resolve().parents[2] / "config" / "demo"


def test_the_demo_crm_url_and_the_local_s3(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(DEMO_DIR)

    assert stores.crm_url(config) == f"sqlite:///{isolated_settings}/crm.db"
    assert stores.require_crm_url(config) == stores.crm_url(config)
    assert stores.needs_local_s3(config)  # the S3 store has no endpoint of its own

    monkeypatch.setenv("LIFECYCLE_S3_ENDPOINT", "https://127.0.0.1:4566")
    assert not stores.needs_local_s3(load_config(DEMO_DIR))


def test_an_inventory_without_the_sql_crm_is_refused(tmp_path: Path) -> None:
    for name in ("inventory.yaml", "policy.yaml"):  # the same stores, the CRM renamed
        text = (DEMO_DIR / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace("crm", "shop"), encoding="utf-8")
    config = load_config(tmp_path)

    assert stores.crm_url(config) is None
    with pytest.raises(ConfigError, match="the demo needs the SQL store 'crm'"):
        stores.require_crm_url(config)


def test_the_lifecycle_rules_of_the_demo_policy() -> None:
    rules = stores.lifecycle_rules(load_config(DEMO_DIR), datetime.now(UTC))

    assert {bucket: [r["ID"] for r in rules[bucket]] for bucket in rules} == {
        "demo-ticket-attachments": [
            "lifecycle-ticket-attachments-2y",
            "lifecycle-ticket-attachments-2y-markers",
        ]
    }
