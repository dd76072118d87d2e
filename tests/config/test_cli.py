"""``lifecycle config validate`` and ``show`` through the real CLI app."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from config.settings import get_settings
from tests.config.conftest import DEMO_DIR, MakeConfig, line_of

runner = CliRunner()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
PASSWORD = "Pa55-w0rd-cli"
SUMMARY = (
    "3 stores (1 sql, 1 s3, 1 processor), 6 tables, 2 buckets, 4 retention rules, 2 legal holds"
)


def _plain(text: str) -> str:
    return _ANSI.sub("", text)


def test_validate_demo_prints_a_summary() -> None:
    result = runner.invoke(app, ["config", "validate", "--config", str(DEMO_DIR)])
    assert result.exit_code == 0, result.output
    assert _plain(result.stdout) == (
        f"config OK ({DEMO_DIR}): {SUMMARY}\n"
        "next: lifecycle config validate --live (or lifecycle doctor) checks the inventory "
        "against the databases\n"
    )
    assert result.stderr == ""


def test_validate_uses_the_config_dir_setting(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = make_config(("policy.yaml", "age: 90d", "age: soon"))
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(config_dir))
    get_settings.cache_clear()
    result = runner.invoke(app, ["config", "validate"])
    assert result.exit_code == 2
    assert "retention[0].age: invalid duration 'soon'" in _plain(result.stderr)


def test_validate_prints_every_problem_and_exits_2(make_config: MakeConfig) -> None:
    config_dir = make_config(
        ("policy.yaml", "age: 90d", "age: 90 dayz"),
        ("inventory.yaml", "kind: customer_number}", "kind: customer_number, typo: 1}"),
        # A key that looks like rich markup must be printed literally.
        ("policy.yaml", "transfers.\ncategories:\n", 'transfers.\n"[red]": 1\ncategories:\n'),
    )
    result = runner.invoke(app, ["config", "validate", "--config", str(config_dir)])
    assert result.exit_code == 2
    assert result.stdout == ""
    inventory = (config_dir / "inventory.yaml").read_text(encoding="utf-8")
    policy = (config_dir / "policy.yaml").read_text(encoding="utf-8")
    lines = _plain(result.stderr).splitlines()
    assert lines[0] == (
        f"error: inventory.yaml:{line_of(inventory, 'typo: 1')} "
        "stores[0].tables[0].identity[1].typo: unknown field (expected one of: column, kind, "
        "case_insensitive, format)"
    )
    assert lines[1].startswith(
        f"error: policy.yaml:{line_of(policy, '[red]')} [red]: unknown field"
    )
    assert lines[2].startswith(
        f"error: policy.yaml:{line_of(policy, '90 dayz')} retention[0].age: invalid duration"
    )
    assert len(lines) == 3
    assert "Traceback" not in result.output


def test_validate_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    result = runner.invoke(app, ["config", "validate", "--config", str(missing)])
    assert result.exit_code == 2
    assert _plain(result.stderr) == f"error: config dir {missing} does not exist\n"


def _config_with_password(make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LC_TEST_DB_PASSWORD", PASSWORD)
    return make_config(
        (
            "inventory.yaml",
            '"sqlite:///${LIFECYCLE_DATA_DIR}/crm.db"',
            '"mysql://app:${LC_TEST_DB_PASSWORD}@db.example.com:3306/crm"',
        )
    )


def test_show_yaml_masks_secrets(make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir = _config_with_password(make_config, monkeypatch)
    result = runner.invoke(app, ["config", "show", "--config", str(config_dir)])
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    shown = yaml.safe_load(result.stdout)
    crm = shown["inventory"]["stores"][0]
    assert crm["url"] == "mysql+pymysql://app:***@db.example.com:3306/crm"
    rules = shown["policy"]["retention"]
    assert rules[0]["age"] == "90d"
    assert shown["inventory"]["stores"][0]["tables"][0]["derives"] == [
        {"column": "id", "as": "customer_id"}
    ]


def test_show_json(make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir = _config_with_password(make_config, monkeypatch)
    result = runner.invoke(app, ["config", "show", "--json", "--config", str(config_dir)])
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    shown = json.loads(result.stdout)
    assert shown["inventory"]["stores"][0]["url"].endswith("app:***@db.example.com:3306/crm")
    assert shown["policy"]["legal_holds"][1]["starts"] == "2026-01-01"
    assert shown["policy"]["retention"][2]["age"] == "3y"


def test_show_reports_problems_like_validate(make_config: MakeConfig) -> None:
    config_dir = make_config(("policy.yaml", "age: 90d", "age: 90 dayz"))
    result = runner.invoke(app, ["config", "show", "--config", str(config_dir)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "retention[0].age: invalid duration '90 dayz'" in _plain(result.stderr)


@pytest.mark.parametrize("as_json", [False, True])
def test_show_masks_passwords_in_url_query_parameters(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    monkeypatch.setenv("LC_TEST_DB_PASSWORD", PASSWORD)
    config_dir = make_config(
        (
            "inventory.yaml",
            '"sqlite:///${LIFECYCLE_DATA_DIR}/crm.db"',
            '"postgresql://app:${LC_TEST_DB_PASSWORD}@db.example.com/crm'
            '?sslmode=require&password=${LC_TEST_DB_PASSWORD}&sslpassword=${LC_TEST_DB_PASSWORD}"',
        )
    )
    args = ["config", "show", "--config", str(config_dir)] + (["--json"] if as_json else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    shown = (json.loads if as_json else yaml.safe_load)(result.stdout)
    assert shown["inventory"]["stores"][0]["url"] == (
        "postgresql+psycopg://app:***@db.example.com/crm"
        "?password=***&sslmode=require&sslpassword=***"
    )
