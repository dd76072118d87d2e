"""``lifecycle inventory draft`` errors: one line, exit 2 for usage, never a password."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["lifecycle", "inventory", "draft", *args])
    with pytest.raises(SystemExit) as done:
        main()
    code = done.value.code
    return code if isinstance(code, int) else 1


def test_a_missing_sqlite_file_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nothing.db"
    assert _run(monkeypatch, "--url", f"sqlite:///{missing}") == 2
    assert not missing.exists()  # opened read-only: never created
    err = capsys.readouterr().err
    assert "no SQLite database file" in err and len(err.strip().splitlines()) == 1


def test_a_bad_region_or_an_existing_out_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert _run(monkeypatch, "--url", url, "--region", "moon") == 2
    out = tmp_path / "inventory.yaml"
    out.write_text("keep me")
    assert _run(monkeypatch, "--url", url, "--out", str(out)) == 2
    assert out.read_text() == "keep me"
    assert "--force" in capsys.readouterr().err


def test_an_unreachable_database_fails_in_one_line_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://app:hunter2secret@127.0.0.1:1/none?connect_timeout=2"
    assert _run(monkeypatch, "--url", url) == 1
    captured = capsys.readouterr()
    assert "hunter2secret" not in captured.err + captured.out
    assert "unreachable" in captured.err and len(captured.err.strip().splitlines()) == 1


def test_help_imports_neither_prefect_nor_a_driver() -> None:
    code = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from cli.main import app\n"
        "r = CliRunner().invoke(app, ['inventory', 'draft', '--help'])\n"
        "heavy = [m for m in sys.modules if m.startswith(('prefect', 'sqlalchemy', 'boto3', "
        "'discovery', 'phonenumbers', 'stdnum'))]\n"
        "print(json.dumps([r.exit_code, heavy]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [0, []]
