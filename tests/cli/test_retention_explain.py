"""``lifecycle retention explain``: the rules, cut-offs and holds behind a table, field or key."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app


def explain(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["retention", "explain", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_a_table_names_its_governing_rule_and_cutoff() -> None:
    code, out, _ = explain("crm.login_events", "--json")
    assert code == 0
    (target,) = json.loads(out)["targets"]
    assert target["target"] == "crm.login_events:delete"
    assert [r["id"] for r in target["rules"]] == ["login-events-90d"]
    assert target["rules"][0]["governing"] is True
    assert "older than 90d" in target["verdict"]


def test_a_field_shows_the_anonymize_rule_and_an_unrelated_field_none() -> None:
    code, out, _ = explain("crm.customers.email", "--json")
    assert code == 0
    (target,) = json.loads(out)["targets"]
    assert target["action"] == "anonymize" and "email" in target["fields"]
    code, out, _ = explain("crm.customers.contract_ended_at", "--json")
    assert code == 0 and json.loads(out)["targets"] == []


def test_a_held_bucket_shows_the_hold_in_force_and_an_expired_hold_is_marked() -> None:
    code, out, _ = explain("files/demo-legal-archive/contracts/a.pdf")
    assert code == 0
    assert "HOLD-2026-001 (in force, covers whole" in out
    code, out, _ = explain("crm.invoices", "--json")
    holds = json.loads(out)["holds"]
    assert [(h["id"], h["in_force"]) for h in holds] == [("HOLD-2025-007", False)]


def test_an_unknown_table_is_a_clear_error() -> None:
    code, _, err = explain("crm.nope")
    assert code == 1
    assert "no table 'nope' in store 'crm'" in err
