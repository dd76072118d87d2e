"""``lifecycle request submit|status|keygen`` in-process against the test Prefect server."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.package import read_package
from engine.request_support import request_context
from tests.flows.support import (
    APPROVER,
    SUBJECT_EMAIL,
    events,
    key_file,
    kinds,
    set_failure,
    store_rows,
)

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


def test_submit_erasure_prints_id_and_status(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    configure(auto_approve=True)
    code, out, err = erase("--json")

    assert code == 0, err
    payload = json.loads(out)
    assert payload["status"] == "completed" and payload["exit_code"] == 0
    assert payload["request_id"].startswith("req_")
    assert [c["id"] for c in store_rows(isolated_settings, "crm")["customers"]] == [2]
    assert "robin" not in (out + err).lower()

    code, out, _ = invoke("status", payload["request_id"], "--json")
    assert code == 0
    status = json.loads(out)
    assert status["request"]["status"] == "completed"
    assert [(p["store"], p["phase"], p["found"]) for p in status["progress"]] == [
        ("crm", "verified", 5),
        ("shop", "verified", 2),
        ("files", "skipped", 0),
    ]
    assert status["history"][-1]["to"] == "completed"


def test_deferrals_exit_with_code_4(prefect_server: None, configure: Configure) -> None:
    configure(auto_approve=True, hold=True)
    code, out, _ = erase()
    assert code == 4
    assert "deferred: shop.wishlists (1): Litigation hold: wishlist dispute until 2099-12-31" in out
    assert ": completed" in out


def test_approval_needed_without_a_server_is_refused_up_front(
    prefect_server: None, configure: Configure
) -> None:
    configure(auto_approve=False)
    code, out, err = erase()
    assert code == 1 and out == ""
    assert "need approval" in err and "--approve --reviewer NAME --signing-key FILE" in err
    assert request_context().register.list() == []


def test_pre_approval_is_signed_and_follows_four_eyes(
    prefect_server: None, configure: Configure, tmp_path: Path
) -> None:
    configure(auto_approve=False)
    dpo, officer = key_file(tmp_path, "dpo"), key_file(tmp_path, APPROVER)
    code, _, err = erase("--approve", "--reviewer", "dpo", "--requested-by", "DPO")
    assert code == 2 and "not signed" in err  # a typed name alone proves nothing
    code, _, err = erase(
        "--approve", "--reviewer", "dpo", "--signing-key", str(dpo), "--requested-by", "DPO"
    )
    assert code == 2 and "four-eyes" in err
    code, _, err = erase("--approve", "--reviewer", APPROVER, "--signing-key", str(dpo))
    assert code == 2 and f"is not {APPROVER}'s key" in err
    assert request_context().register.list() == []

    code, out, err = erase(
        "--approve", "--reviewer", APPROVER, "--signing-key", str(officer), "--json"
    )
    assert code == 0, err
    rid = json.loads(out)["request_id"]
    [decided] = [e for e in events(rid) if e.kind == "approval.decided"]
    assert decided.detail["source"] == "pre-approved"
    assert decided.detail["verification"] == "verified"


def test_access_with_passphrase_file(
    prefect_server: None, configure: Configure, tmp_path: Path
) -> None:
    configure()
    secret = tmp_path / "passphrase.txt"
    secret.write_text("subject passphrase\n")
    code, out, err = invoke(
        "submit",
        "--kind",
        "access",
        "--identity",
        "customer_number=C-1001",
        "--passphrase-file",
        str(secret),
    )
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("package: "))
    path = Path(line.removeprefix("package: ").strip())
    manifest, records = read_package(path, "subject passphrase")
    assert manifest["records"] == 7 and len(list(records)) == 7


def test_rectification_with_set(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    configure()
    code, _, err = invoke(
        "submit",
        "--kind",
        "rectification",
        "--identity",
        f"email={SUBJECT_EMAIL}",
        "--set",
        "customers.full_name=Robin Q. Quill",
    )
    assert code == 0, err
    assert store_rows(isolated_settings, "crm")["customers"][0]["full_name"] == "Robin Q. Quill"


def test_failure_exits_1_and_resume_finishes(
    prefect_server: None, configure: Configure, isolated_settings: Path
) -> None:
    configure(auto_approve=True)
    set_failure(isolated_settings, "shop", "verify", "index corrupted")
    code, out, err = erase("--json")
    assert code == 1
    payload = json.loads(out)
    assert payload["status"] == "failed" and "index corrupted" in payload["error"]
    assert "index corrupted" in err

    set_failure(isolated_settings, "shop", "verify", None)
    code, out, err = invoke("submit", "--resume", payload["request_id"], "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "completed"
    assert kinds(payload["request_id"]).count("request.completed") == 1


def test_usage_errors_do_not_echo_values(prefect_server: None, configure: Configure) -> None:
    configure(auto_approve=True)
    code, _, err = invoke("submit", "--kind", "erasure", "--identity", "robin.quill@example.com")
    assert code == 2 and "expected KIND=VALUE" in err and "robin" not in err
    code, _, err = invoke(
        "submit", "--kind", "erasure", "--identity", "nickname=robin.quill@example.com"
    )
    assert code == 2 and "'nickname'" in err and "robin" not in err
    code, _, err = invoke("submit", "--resume", "req_00000000000000aa")
    assert code == 1 and "not found" in err
    assert request_context().register.list() == []


def test_keygen_writes_a_key_pair(tmp_path: Path) -> None:
    code, out, _ = invoke("keygen", "--out", str(tmp_path / "subject.key"))
    assert code == 0
    assert stat.S_IMODE((tmp_path / "subject.key").stat().st_mode) == 0o600
    public = (tmp_path / "subject.key.pub").read_text().strip()
    assert public in out.replace("\n", "")
    code, _, err = invoke("keygen", "--out", str(tmp_path / "subject.key"))
    assert code == 1 and "already exists" in err
