"""`lifecycle demo` runs on embedded defaults and leaves a verifiable ledger."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from audit.ledger import Ledger
from cli.main import app


def test_demo_runs_and_ledger_verifies(isolated_settings: Path) -> None:
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "intact" in result.output
    assert "demo.subject@example.com" not in result.output.lower()
    ledger = Ledger.open()
    assert ledger.verify().ok
    kinds = [e.kind for e in ledger.events()]
    assert kinds[0] == "request.received" and kinds[-1] == "request.closed"
    assert (isolated_settings / "anchors" / "demo-checkpoint.json").exists()
