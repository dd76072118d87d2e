"""``lifecycle request list|status|extend`` through the real CLI app, on the default audit DB."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from cli.main import app
from config.settings import PROJECT_ROOT, get_settings
from state.register import RequestKind, RequestRegister, RequestStatus

runner = CliRunner()
ENV = {"COLUMNS": "200"}  # wide enough that rich never folds an id
IDENTITY = {"email": "casey.wren@example.com", "name": "Casey Wren"}


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo configuration with its own request deadlines (20 days, at most 40)."""
    target = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config" / "demo", target)
    policy = target / "policy.yaml"
    text = policy.read_text()
    text = text.replace("deadline_days: 30", "deadline_days: 20", 1)
    text = text.replace("max_deadline_days: 90", "max_deadline_days: 40", 1)
    policy.write_text(text)
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(target))
    get_settings.cache_clear()
    return target


@pytest.fixture
def register(config_dir: Path) -> Iterator[RequestRegister]:
    """A register on the audit database the CLI will open (settings' default SQLite)."""
    keys = keyring_from_settings()
    ledger = Ledger.open(keys=keys)
    yield RequestRegister(ledger, keys, deadline_days=20, max_deadline_days=40)
    ledger.engine.dispose()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["request", *args], env=ENV)
    return result.exit_code, result.stdout, result.stderr


def test_list_shows_deadlines_and_overdue_filter(register: RequestRegister) -> None:
    now = datetime.now(UTC)
    late = register.register(
        RequestKind.ERASURE, IDENTITY, requested_by="op", received_at=now - timedelta(days=25)
    )
    fresh = register.register(RequestKind.ACCESS, {"email": "lee@example.com"}, requested_by="op")

    code, out, _ = invoke("list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["id"] for r in rows] == [late.id, fresh.id]
    by_id = {r["id"]: r for r in rows}
    # Due 5 days and a moment ago: a started day counts, as in RequestRecord.days_left.
    assert by_id[late.id]["days_left"] == -6 and by_id[late.id]["overdue"] is True
    assert by_id[fresh.id]["days_left"] == 19 and by_id[fresh.id]["extended"] is False
    assert set(rows[0]) >= {"id", "kind", "status", "received", "due", "days_left", "extended"}
    assert datetime.fromisoformat(by_id[fresh.id]["due"]) == fresh.due_at

    code, out, _ = invoke("list", "--overdue", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [late.id]
    code, out, _ = invoke("list", "--status", "planned", "--json")
    assert code == 0 and json.loads(out) == []

    code, out, _ = invoke("list")
    assert code == 0
    assert late.id in out and fresh.id in out and "-6" in out
    assert "casey" not in out.lower() and "lee@" not in out


def test_status_shows_the_request_and_its_history(register: RequestRegister) -> None:
    rec = register.register(RequestKind.ERASURE, IDENTITY, requested_by="intake")
    register.transition(rec.id, RequestStatus.PLANNED, actor="planner", note="2 stores")

    code, out, _ = invoke("status", rec.id, "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["request"]["id"] == rec.id
    assert payload["request"]["status"] == "planned"
    assert payload["request"]["subject"] == rec.subject
    assert payload["request"]["identity_destroyed"] is False
    assert [(h["action"], h["from"], h["to"], h["actor"]) for h in payload["history"]] == [
        ("received", None, "received", "intake"),
        ("status_changed", "received", "planned", "planner"),
    ]
    assert payload["history"][1]["note"] == "2 stores"

    code, out, _ = invoke("status", rec.id)
    assert code == 0 and rec.id in out and "planner" in out and "status_changed" in out
    assert "casey" not in out.lower()


def test_extend_uses_the_policy_maximum_once(register: RequestRegister) -> None:
    rec = register.register(RequestKind.ACCESS, IDENTITY, requested_by="op")

    code, _, err = invoke("extend", rec.id, "--days", "21", "--reason", "many stores")
    assert code == 2  # a value the policy does not allow: a validation error
    assert "at most 20 days" in err and "Traceback" not in err
    assert register.get(rec.id) == rec

    code, out, _ = invoke("extend", rec.id, "--days", "20", "--reason", "many stores", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["extended"] is True and payload["extension_reason"] == "many stores"
    after = register.get(rec.id)
    assert after.due_at == rec.received_at + timedelta(days=40)
    assert register.history(rec.id)[-1].actor == get_settings().actor

    code, _, err = invoke("extend", rec.id, "--days", "1", "--reason", "again")
    assert code == 1 and "already extended" in err
    assert register.get(rec.id) == after


def test_errors_are_one_clean_line(register: RequestRegister) -> None:
    code, out, err = invoke("status", "req_00000000000000aa")
    assert code == 1 and out == ""
    assert err.strip() == "error: request req_00000000000000aa not found"

    code, _, err = invoke("status", "casey.wren@example.com")
    assert code == 1 and "not a request id" in err and "casey" not in err

    code, _, err = invoke("extend", "req_00000000000000aa", "--days", "0", "--reason", "x")
    assert code == 2  # usage error from the option's minimum, before anything is opened


def test_invalid_policy_is_reported_with_exit_code_2(config_dir: Path) -> None:
    policy = config_dir / "policy.yaml"
    policy.write_text(policy.read_text().replace("deadline_days: 20", "deadline_days: 0", 1))
    code, out, err = invoke("list", "--json")
    assert code == 2 and out == ""
    assert "policy.yaml" in err and "deadline_days" in err


@pytest.mark.parametrize(
    ("reason", "found"),
    [
        ("subject asked from casey.wren@example.com", "an e-mail address"),
        ("subject called, +44 20 7946 0000", "a phone number"),
    ],
)
def test_extend_refuses_a_reason_holding_personal_data(
    register: RequestRegister, reason: str, found: str
) -> None:
    rec = register.register(RequestKind.ACCESS, IDENTITY, requested_by="op")

    code, out, err = invoke("extend", rec.id, "--days", "5", "--reason", reason)

    assert code == 2
    assert err.strip() == f"error: --reason: holds {found}; notes must not contain personal data"
    assert "casey" not in out + err and "7946" not in out + err
    assert register.get(rec.id) == rec
    assert [h.action for h in register.history(rec.id)] == ["received"]
