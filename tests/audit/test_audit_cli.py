"""``lifecycle audit`` and ``lifecycle db`` through the real CLI app."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.database import dispose_engines
from audit.ledger import Ledger
from cli import audit_cmd
from cli.main import app
from tests.audit.ledger_support import edit, sample, unguard

runner = CliRunner()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(text: str) -> str:
    return _ANSI.sub("", text)


@pytest.fixture(autouse=True)
def _dispose() -> Iterator[None]:
    yield
    dispose_engines()


def _ledger_with(n: int) -> Ledger:
    ledger = Ledger.open(actor="tester")
    ledger.append_many([sample(i) for i in range(n)])
    return ledger


def test_db_upgrade_and_current() -> None:
    before = runner.invoke(app, ["db", "current"])
    assert before.exit_code == 0, before.output
    assert _plain(before.stdout).strip().endswith("revision none")
    upgraded = runner.invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    revision = _plain(upgraded.stdout).strip().rsplit(" ", 1)[-1]
    assert revision not in ("", "none")
    after = runner.invoke(app, ["db", "current"])
    assert _plain(after.stdout).strip().endswith(f"revision {revision}")
    again = runner.invoke(app, ["db", "upgrade"])
    assert again.exit_code == 0 and _plain(again.stdout) == _plain(upgraded.stdout)


def test_verify_intact_ledger_exits_0() -> None:
    _ledger_with(3).checkpoint()
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert _plain(result.stdout) == "intact: 3 events, 1 checkpoints\n"
    assert result.stderr == ""


def test_verify_broken_ledger_exits_1_naming_the_event() -> None:
    ledger = _ledger_with(4)
    unguard(ledger.engine)
    edit(ledger.engine, 2, target="public.elsewhere")
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1
    assert _plain(result.stdout) == "ledger broken at event 2: hash mismatch (event edited)\n"

    as_json = runner.invoke(app, ["audit", "verify", "--json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout) == {
        "ok": False,
        "events_checked": 1,
        "checkpoints_checked": 0,
        "first_bad_seq": 2,
        "problem": "hash mismatch (event edited)",
    }


def test_verify_shows_progress_for_large_ledgers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_cmd, "PROGRESS_MIN_EVENTS", 1)
    _ledger_with(5)
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert _plain(result.stdout) == "intact: 5 events, 0 checkpoints\n"


def test_checkpoint_export_and_verify_against_anchor(tmp_path: Path) -> None:
    _ledger_with(2)
    anchor = tmp_path / "anchor.json"
    result = runner.invoke(app, ["audit", "checkpoint", "--export", str(anchor)])
    assert result.exit_code == 0, result.output
    assert _plain(result.stdout).startswith("checkpoint at event 2 (head ")
    assert json.loads(anchor.read_text())["seq"] == 2
    verified = runner.invoke(app, ["audit", "verify", "--anchor", str(anchor)])
    assert verified.exit_code == 0, verified.output
    assert _plain(verified.stdout) == "intact: 2 events, 2 checkpoints\n"


def test_bad_anchor_gives_one_clean_error_line(tmp_path: Path) -> None:
    _ledger_with(1)
    missing = runner.invoke(app, ["audit", "verify", "--anchor", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2
    assert _plain(missing.stderr).count("\n") == 1 and "nope.json" in missing.stderr
    assert "Traceback" not in missing.output

    anchor = tmp_path / "anchor.json"
    assert runner.invoke(app, ["audit", "checkpoint", "--export", str(anchor)]).exit_code == 0
    anchor.write_text(anchor.read_text().replace('"count": 1', '"count": 9'))
    altered = runner.invoke(app, ["audit", "verify", "--anchor", str(anchor)])
    assert altered.exit_code == 1
    assert "anchor signature does not verify" in _plain(altered.stderr)


def test_show_json_lists_recent_events_oldest_first() -> None:
    _ledger_with(6)
    result = runner.invoke(app, ["audit", "show", "--json", "--limit", "4"])
    assert result.exit_code == 0, result.output
    events = json.loads(result.stdout)
    assert [e["seq"] for e in events] == [3, 4, 5, 6]
    first = events[0]
    assert first["kind"] == "connector.erase" and first["status"] == "succeeded"
    assert first["subject"].startswith("psn_")
    assert first["counts"] == {"batches": 1, "rows": 2}
    assert set(first) >= {"occurred_at", "prev_hash", "hash", "detail", "actor", "event_id"}
    assert "example.com" not in result.stdout


def test_show_filters() -> None:
    ledger = _ledger_with(6)
    ledger.append("approval.granted", status="approved", request_id="req-1")
    by_request = json.loads(
        runner.invoke(app, ["audit", "show", "--json", "--request", "req-1"]).stdout
    )
    assert {e["request_id"] for e in by_request} == {"req-1"} and len(by_request) == 3
    by_kind = json.loads(
        runner.invoke(app, ["audit", "show", "--json", "--kind", "approval.granted"]).stdout
    )
    assert [e["seq"] for e in by_kind] == [7]
    recent = json.loads(runner.invoke(app, ["audit", "show", "--json", "--since", "1d"]).stdout)
    assert len(recent) == 7
    future = json.loads(
        runner.invoke(app, ["audit", "show", "--json", "--since", "2999-01-01"]).stdout
    )
    assert future == []


def test_show_table_has_the_columns() -> None:
    _ledger_with(2)
    result = runner.invoke(app, ["audit", "show"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    header = _plain(result.stdout)
    for column in audit_cmd.SHOW_COLUMNS:
        assert column in header
    assert "rows=1" in header and "psn_" in header


def test_show_bad_since_is_a_clean_error() -> None:
    result = runner.invoke(app, ["audit", "show", "--since", "last tuesday"])
    assert result.exit_code == 2
    assert _plain(result.stderr).startswith("error: --since: 'last tuesday'")
    assert "Traceback" not in result.output
