"""What the commands that run a flow tell an operator (``cli.flow_commands``).

``--verbose`` shows Prefect's own log records on stderr, which otherwise go to the log
file only. A flow that fails (a store that cannot be reached) is one line on stderr
saying what failed, where and what to do next, and a ``details:`` line naming the log
file that holds the traceback; never a traceback on the terminal, not even with
``--verbose``; exit 1.

The flows run in-process against the session's Prefect test server, on the demo
configuration; the stores' posture hooks are fakes (``fake_posture``), so the transfer
check reaches nothing outside.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from typer.testing import CliRunner, Result

from cli import logfile
from cli.main import app
from config.schema.model import LifecycleConfig
from config.schema.stores import StoreConfig
from config.settings import PROJECT_ROOT, get_settings
from connectors import catalog
from connectors.s3.client import translate

UNREACHABLE: set[str] = set()
"""The stores ``fake_posture`` cannot reach (set by each test)."""
FAKE_POSTURE = "tests.cli.test_flow_commands:fake_posture"
ENV = {"COLUMNS": "200"}


def fake_posture(config: LifecycleConfig, store: StoreConfig, *, account_wide: bool) -> list[Any]:
    """A posture hook: no facts, or for a store in ``UNREACHABLE`` the error the S3 hook
    raises when its endpoint refuses the connection."""
    del config, account_wide
    if store.name in UNREACHABLE:
        refused = EndpointConnectionError(endpoint_url="https://127.0.0.1:9/")
        raise translate(refused, store.name, "reading the bucket encryption", None)
    return []


@pytest.fixture(autouse=True)
def _restore(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The commands set Prefect's log level (environment and logger) and may show its
    records on stderr: undone after each test."""
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    prefect_logger = logging.getLogger("prefect")
    level = prefect_logger.level
    UNREACHABLE.clear()
    yield
    logfile.show_prefect_logs(False)
    prefect_logger.setLevel(level)


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the demo configuration, every store type's posture hook the fake."""
    folder = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config" / "demo", folder)
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(folder))
    get_settings.cache_clear()
    specs = tuple(
        dataclasses.replace(spec, posture=FAKE_POSTURE if spec.posture else None)
        for spec in catalog.STORE_TYPES
    )
    monkeypatch.setattr(catalog, "STORE_TYPES", specs)
    return folder


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args), env=ENV)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _log_file(details: str) -> Path:
    log = Path(details.removeprefix("details: "))
    return log if log.is_absolute() else Path.cwd() / log


def one_line_and_a_log(result: Result, data_dir: Path) -> tuple[str, str]:
    """The failure's one line (without ``error:``) and the text of the log file it names,
    which holds the traceback; no traceback on the terminal."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    [error] = [x for x in lines if x.startswith("error:")]
    [details] = [x for x in lines if x.startswith("details: ")]
    log = _log_file(details)
    assert log.parent == data_dir / "logs"
    text = log.read_text()
    line = error.removeprefix("error: ")
    assert f"{line}\nTraceback (most recent call last)" in text  # the line heads its traceback
    return line, text


def test_verbose_shows_prefects_logs_on_stderr_and_they_still_go_to_the_log_file(
    prefect_server: None, config_dir: Path, isolated_settings: Path
) -> None:
    quiet = invoke("transfers", "check")
    assert quiet.exit_code == 0, quiet.stderr
    assert "prefect" not in quiet.stderr.lower()  # no record of Prefect's, no traceback
    assert "Finished in state" not in quiet.stdout + quiet.stderr

    verbose = invoke("transfers", "check", "--verbose")

    assert verbose.exit_code == 0, verbose.stderr
    shown = [x for x in verbose.stderr.splitlines() if " prefect.flow_runs - " in x]
    assert any("Finished in state Completed" in x for x in shown), verbose.stderr
    assert "Finished in state" not in verbose.stdout  # stdout carries the result alone
    [log] = (isolated_settings / "logs").iterdir()
    assert "prefect.flow_runs: Finished in state Completed" in log.read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["request", "submit", "--kind", "access", "--identity", "email=a@example.com"],
        ["sweep"],
        ["transfers", "check"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_every_command_with_verbose_shows_prefects_logs(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each command's --verbose reaches ``quiet_prefect``, before anything else can fail
    (here a configuration folder that does not exist: exit 2, nothing run)."""
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(tmp_path / "missing"))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # none is reached
    root = logging.getLogger()
    for verbose in (False, True, False):
        result = invoke(*args, *(["--verbose"] if verbose else []))
        assert result.exit_code == 2, result.output
        shown = any(isinstance(h, logfile._Verbose) for h in root.handlers)
        assert shown is verbose


def test_a_sweep_whose_store_cannot_be_reached_is_one_line_and_a_log_file(
    prefect_server: None,
    config_dir: Path,
    isolated_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks.sweep_tasks import plan_sweep_task

    monkeypatch.setattr(plan_sweep_task, "retry_delay_seconds", [0.0, 0.0])  # not 2 s, 10 s
    inventory = config_dir / "inventory.yaml"
    crm = "sqlite:///${LIFECYCLE_DATA_DIR}/crm.db"
    assert crm in inventory.read_text()
    refused = "postgresql+psycopg://lc@127.0.0.1:9/none"  # a closed port
    inventory.write_text(inventory.read_text().replace(crm, refused))

    result = invoke("sweep", "--rule", "login-events-90d")

    assert result.exit_code == 1, result.output
    line, text = one_line_and_a_log(result, isolated_settings)
    assert line.startswith("retention sweep failed: store 'crm' is unreachable: "), line
    assert line.endswith(
        "once that is fixed, run `lifecycle sweep` again (an unfinished sweep resumes where "
        "it stopped)"
    )
    assert "TransientError" in text  # the error's class and frames are in the log
    assert result.stdout == ""  # no sweep ran: no table


def test_a_transfer_check_whose_store_cannot_be_reached_is_one_line_and_a_log_file(
    prefect_server: None,
    config_dir: Path,
    isolated_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks.transfer_tasks import posture_facts_task

    monkeypatch.setattr(posture_facts_task, "retry_delay_seconds", [0.0, 0.0])
    UNREACHABLE.add("files")

    result = invoke("transfers", "check")

    assert result.exit_code == 1, result.output
    line, _ = one_line_and_a_log(result, isolated_settings)
    assert line.startswith("transfer check failed: store 'files' is unreachable: "), line
    assert "(reading the bucket encryption)" in line
    assert line.endswith("once that is fixed, run `lifecycle transfers check` again")

    as_json = invoke("transfers", "check", "--json")
    assert as_json.exit_code == 1
    payload = json.loads(as_json.stdout)
    json_line, _ = one_line_and_a_log(as_json, isolated_settings)
    assert payload["error"] == json_line
    assert Path(payload["log"]).parent == isolated_settings / "logs"

    # --verbose shows Prefect's records of the failure too, one line each, no traceback
    verbose = invoke("transfers", "check", "--verbose")
    assert verbose.exit_code == 1
    assert one_line_and_a_log(verbose, isolated_settings)[0] == line
    failed = [x for x in verbose.stderr.splitlines() if " prefect.flow_runs - " in x]
    assert any(x.endswith("(traceback in the log file)") for x in failed), verbose.stderr
