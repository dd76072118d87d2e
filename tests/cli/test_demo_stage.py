"""A stage of ``lifecycle demo`` that fails is one line (the stage, why, what to do next)
and the log file holding its traceback; invalid configuration still exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from cli.demo_cmd import _stage
from core.errors import ConfigError, TerminalError


@pytest.mark.parametrize(
    ("error", "why"),
    [
        (TerminalError("store 'crm' is unreachable: connection refused"), "store 'crm' is "),
        (RuntimeError("a message quoting a stored value"), "unexpected error (RuntimeError)"),
        (FileNotFoundError(2, "No such file or directory", "/x/y"), "No such file or "),
    ],
)
def test_a_failing_stage_is_one_line_and_a_log_file(
    error: Exception, why: str, isolated_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exited, _stage("running the retention sweep"):
        raise error
    assert exited.value.exit_code == 1
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    first, details = err.splitlines()
    assert first.startswith(f"error: demo failed while running the retention sweep: {why}")
    assert first.endswith("; once that is fixed, run `lifecycle demo` again")
    log = Path(details.removeprefix("details: "))
    log = log if log.is_absolute() else Path.cwd() / log
    assert log.parent == isolated_settings / "logs"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert "a message quoting a stored value" not in text  # withheld: not a product error


def test_invalid_configuration_passes_through_to_exit_2() -> None:
    with pytest.raises(ConfigError), _stage("opening the audit ledger"):
        raise ConfigError("policy.yaml: invalid")
