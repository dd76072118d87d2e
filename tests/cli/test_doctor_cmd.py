"""``lifecycle doctor`` and ``config validate --live`` print what each type's doctor hook reports.

The commands know no store type: these tests give the demo inventory's types fake doctor
hooks (and take the SQL one away) through the catalog, the way a new type's line would.
The SQL hook itself is tested against real databases in tests/connectors/sql/test_doctor.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from config.loader import load_config
from connectors import catalog
from connectors.doctor_report import DoctorLine, DoctorReport, run_doctor

DEMO_DIR = Path(__file__).resolve().parents[2] / "config" / "demo"
runner = CliRunner()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

REPORTS: dict[str, DoctorReport | str] = {}
"""What ``fake_doctor`` returns, per store name (set by each test)."""


def fake_doctor(store: object) -> DoctorReport | str:
    """A doctor hook (``tests.cli.test_doctor_cmd:fake_doctor``)."""
    name = getattr(store, "name", "")
    return REPORTS[name]


def _hooks(monkeypatch: pytest.MonkeyPatch, **doctors: str | None) -> None:
    """Replace the catalog's doctor hooks: ``sql=None`` takes SQL's away. The processor's
    is taken away unless given: the demo's provider (store newsletter) does not run here."""
    doctors = {"processor": None, **doctors}
    specs = tuple(
        dataclasses.replace(spec, doctor=doctors[spec.name]) if spec.name in doctors else spec
        for spec in catalog.STORE_TYPES
    )
    monkeypatch.setattr(catalog, "STORE_TYPES", specs)


def _plain(text: str) -> str:
    return _ANSI.sub("", text)


FAKE = "tests.cli.test_doctor_cmd:fake_doctor"
FILES_REPORT = DoctorReport(
    store="files",
    type="s3",
    location="https://s3.example.test",
    reachable=True,
    ok=False,
    lines=(
        DoctorLine("bucket", "files/tickets: versioning is off", "problem"),
        DoctorLine("setting", "enable versioning", "advice", ("aws s3api put-bucket-versioning",)),
        DoctorLine("warning", "no lifecycle rules", "warning"),
        DoctorLine("note", "3 buckets listed"),
    ),
    problems=("files.tickets: versioning is off",),
    warnings=("store 'files': no lifecycle rules",),
    details={"buckets": ["tickets"]},
)


def test_doctor_prints_each_report_and_names_stores_without_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _hooks(monkeypatch, sql=None, s3=FAKE)
    monkeypatch.setitem(REPORTS, "files", FILES_REPORT)

    result = runner.invoke(app, ["doctor", "--config", str(DEMO_DIR)])

    assert result.exit_code == 1, result.output
    assert _plain(result.stdout).splitlines() == [
        "crm (sql): no checks for this store type",
        "files reachable https://s3.example.test: needs attention",
        "  bucket: files/tickets: versioning is off",
        "  setting: enable versioning",
        "    aws s3api put-bucket-versioning",
        "  warning: no lifecycle rules",
        "  note: 3 buckets listed",
        "newsletter (processor): no checks for this store type",
    ]


def test_doctor_json_lists_the_checked_stores_with_their_details(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _hooks(monkeypatch, sql=None, s3=FAKE)
    monkeypatch.setitem(REPORTS, "files", dataclasses.replace(FILES_REPORT, ok=True))

    result = runner.invoke(app, ["doctor", "--config", str(DEMO_DIR), "--json"])

    assert result.exit_code == 0, result.output  # nothing to fix; crm has no checks
    assert json.loads(result.stdout) == [
        {"store": "files", "type": "s3", "reachable": True, "ok": True, "buckets": ["tickets"]}
    ]


def test_doctor_with_no_checks_at_all_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    _hooks(monkeypatch, sql=None)

    text = runner.invoke(app, ["doctor", "--config", str(DEMO_DIR)])
    as_json = runner.invoke(app, ["doctor", "--config", str(DEMO_DIR), "--json"])

    assert text.exit_code == 0
    assert "files (s3): no checks for this store type" in _plain(text.stdout)
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == []


def test_validate_live_prints_located_problems_and_warnings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _hooks(monkeypatch, sql=None, s3=FAKE)
    monkeypatch.setitem(REPORTS, "files", FILES_REPORT)

    live = runner.invoke(app, ["config", "validate", "--live", "--config", str(DEMO_DIR)])

    assert live.exit_code == 2
    assert live.stdout == ""
    assert _plain(live.stderr).splitlines() == [
        "warning: store 'files': no lifecycle rules",
        "error: files.tickets: versioning is off",
    ]


def test_validate_summary_counts_per_type_and_the_types_checked_live(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _hooks(monkeypatch, sql=None, s3=FAKE)
    monkeypatch.setitem(REPORTS, "files", dataclasses.replace(FILES_REPORT, ok=True, problems=()))

    plain = runner.invoke(app, ["config", "validate", "--config", str(DEMO_DIR)])
    live = runner.invoke(app, ["config", "validate", "--live", "--config", str(DEMO_DIR)])

    summary = (
        "3 stores (1 sql, 1 s3, 1 processor), 6 tables, 2 buckets, 4 retention rules, 2 legal holds"
    )
    assert _plain(plain.stdout).splitlines()[0] == f"config OK ({DEMO_DIR}): {summary}"
    assert "next: lifecycle config validate --live" in _plain(plain.stdout)
    assert live.exit_code == 0, live.output
    assert _plain(live.stdout) == (
        f"config OK ({DEMO_DIR}): {summary}; schema of 1 s3 stores checked live\n"
    )

    _hooks(monkeypatch, sql=None, s3=None)
    unchecked = runner.invoke(app, ["config", "validate", "--config", str(DEMO_DIR)])
    assert _plain(unchecked.stdout) == f"config OK ({DEMO_DIR}): {summary}\n"  # no hint


def test_a_hook_returning_something_else_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _hooks(monkeypatch, s3=FAKE)
    monkeypatch.setitem(REPORTS, "files", "all good")
    files = load_config(DEMO_DIR).store("files")

    with pytest.raises(TypeError, match=r"store type 's3'.*returned str, not a DoctorReport"):
        run_doctor(files)


def test_details_may_not_redefine_the_generic_keys() -> None:
    with pytest.raises(ValueError, match="may not redefine ok, store"):
        DoctorReport("crm", "sql", "sqlite://", True, True, details={"ok": 1, "store": 2})
