"""What ``lifecycle request submit`` and ``status`` tell an operator (issue 15).

Per store and table: found, deleted, masked (and why), kept, deferred (reason, until) and
left, the same in the table and in ``--json``, from both commands. A failing store is one
line (store, step, reason, how to resume) and the log file holding the traceback, never a
traceback on the terminal, also in a real process where Prefect's own logs would print.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests import forked_cli
from tests.flows.support import SUBJECT_EMAIL, set_failure, subprocess_env

Configure = Callable[..., Path]
ENV = {"COLUMNS": "200"}


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # submit sets Prefect's log level in os.environ; undo it after each test.
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["request", *args], env=ENV)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def erase(*extra: str) -> tuple[int, str, str]:
    return invoke("submit", "--kind", "erasure", "--identity", f"email={SUBJECT_EMAIL}", *extra)


def _by_table(tables: list[dict[str, object]]) -> dict[tuple[object, object], dict[str, object]]:
    return {(t["store"], t["target"]): t for t in tables}


def test_erasure_reports_every_table_in_the_table_and_in_json(
    prefect_server: None, configure: Configure
) -> None:
    configure(auto_approve=True, hold=True)
    code, out, err = erase("--json")
    assert code == 4, err
    submitted = json.loads(out)
    tables = _by_table(submitted["tables"])

    deleted = tables[("crm", "orders")]
    assert (deleted["found"], deleted["deleted"], deleted["masked"], deleted["remaining"]) == (
        3,
        3,
        0,
        0,
    )
    invoice = tables[("crm", "invoices")]  # kept by tax law, its personal fields masked
    assert (invoice["found"], invoice["deleted"], invoice["masked"]) == (1, 0, 1)
    assert invoice["masked_reason"] == "invoices kept 10 years (tax law)"
    held = tables[("shop", "wishlists")]  # under a legal hold: deferred, with why and until
    assert (held["found"], held["deleted"], held["deferred"]) == (1, 0, 1)
    assert held["deferred_reason"] == "Litigation hold: wishlist dispute"
    assert held["deferred_until"] == "2099-12-31"
    skipped = tables[("files", "*")]
    assert skipped["phase"] == "skipped" and "no connector" in str(skipped["note"])

    rid = submitted["request_id"]
    code, out, _ = invoke("status", rid, "--json")
    assert code == 0
    assert json.loads(out)["tables"] == submitted["tables"]  # the same facts, both commands

    code, shown, _ = invoke("status", rid)
    assert code == 0
    lines = shown.splitlines()
    invoices = next(x for x in lines if "│ invoices" in x)
    assert "masked: invoices kept 10 years (tax law)" in invoices
    wishlists = next(x for x in lines if "│ wishlists" in x)
    assert "deferred: Litigation hold: wishlist dispute until 2099-12-31" in wishlists
    assert f"Request {rid} (erasure), per table" in shown
    assert "robin" not in (out + shown).lower()


def test_a_failing_store_is_one_line_and_a_log_file(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    configure(auto_approve=True)
    set_failure(isolated_settings, "shop", "execute", "index corrupted")
    code, out, err = erase("--json")

    assert code == 1
    payload = json.loads(out)
    rid = payload["request_id"]
    failure = payload["failure"]
    assert failure["stores"] == ["shop"] and failure["step"] == "executing"
    assert failure["resume"] == f"lifecycle request submit --resume {rid}"
    lines = [x for x in err.splitlines() if x.strip()]
    error_line = next(x for x in lines if x.startswith("error:"))
    assert error_line == (
        f"error: request {rid} failed in store 'shop' while executing: index corrupted; "
        f"resume: lifecycle request submit --resume {rid}"
    )
    details = next(x for x in lines if x.startswith("details: "))
    log = Path(details.removeprefix("details: "))
    log = log if log.is_absolute() else Path.cwd() / log
    assert log == Path(failure["log"]) and log.parent == isolated_settings / "logs"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "index corrupted" in text
    assert "robin" not in text.lower()
    assert "Traceback" not in out + err

    code, out, _ = invoke("status", rid, "--json")
    shop = _by_table(json.loads(out)["tables"])[("shop", "carts")]
    assert shop["deleted"] == 0 and shop["planned"] == {"delete": 1}


def test_a_real_process_prints_no_prefect_traceback(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    """The real CLI, whose Prefect logs would print "Traceback" and "Finished in state
    Failed": its store is unreachable (a closed port), and it says so in one line."""
    folder = configure(auto_approve=True)
    inventory = folder / "inventory.yaml"
    url = '"sqlite:///${LIFECYCLE_DATA_DIR}/stores/crm.db"'
    inventory.write_text(
        inventory.read_text().replace(url, '"postgresql+psycopg://lc@127.0.0.1:9/none"', 1)
    )
    args = ["request", "submit", "--kind", "erasure", "--identity", f"email={SUBJECT_EMAIL}"]
    done = forked_cli.run("cli.main", args, env=subprocess_env(), timeout=240)

    assert done.returncode == 1, done.stderr[-3000:]
    terminal = done.stdout + done.stderr
    for noise in ("Traceback", "Finished in state", "Encountered exception"):
        assert noise not in terminal, terminal[-3000:]
    [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert "failed in store 'crm' while locating: unreachable: connection refused" in line
    assert "check that the database is running and the store's url" in line
    assert "resume: lifecycle request submit --resume req_" in line
    [details] = [x for x in done.stderr.splitlines() if x.startswith("details: ")]
    log = isolated_settings / "logs" / Path(details.removeprefix("details: ")).name
    assert "Finished in state Failed" in log.read_text()  # Prefect's logs went there
