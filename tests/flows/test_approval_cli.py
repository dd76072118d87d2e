"""Approving from the CLI: signed decisions, one per request, and a paused run resumed
rather than raced. One test runs a flow (and the CLI from another process); the others
refuse or race decisions without running any."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import typer
from typer.testing import CliRunner

from cli.main import app
from core.approver_keys import parse_token
from engine.intake import submit
from engine.request_support import request_context
from flows import approval_wait
from flows.subject_request import subject_request
from state.register import RequestStatus
from tasks.approval_tasks import record_review
from tests.flows.support import (
    APPROVER,
    REQUESTER,
    SUBJECT_EMAIL,
    answered_key,
    approver_key,
    events,
    key_file,
    kinds,
    run_cli,
    signed_token,
    store_rows,
    subprocess_env,
)

Configure = Callable[..., Path]


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # submit sets Prefect's log level in os.environ; undo it after each test.
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    yield


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    for name in ("privacy-officer", "dpo", "intruder"):
        key_file(folder, name)
    return folder


def _register(requested_by: str = REQUESTER) -> str:
    return submit(
        request_context(),
        kind="erasure",
        identity={"email": SUBJECT_EMAIL},
        requested_by=requested_by,
    ).id


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def approve(rid: str, reviewer: str, *extra: str) -> tuple[int, str, str]:
    return invoke("request", "submit", "--resume", rid, "--approve", "--reviewer", reviewer, *extra)


def test_cli_approval_resumes_the_paused_run_which_erases_once(
    configure: Configure,
    isolated_settings: Path,
    prefect_api_url: str,
    keys: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.flow_runs import resume_flow_run

    monkeypatch.setattr(approval_wait, "APPROVAL_POLL_SECONDS", 1)
    configure(auto_approve=False)
    rid = _register()
    shell: dict[str, Any] = {}

    def another_shell() -> None:  # once the run waits: approve from a separate process
        ctx = request_context()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            record = ctx.record(rid)
            if record.status is RequestStatus.AWAITING_APPROVAL:
                break
            time.sleep(0.2)
        signing_key = str(keys / f"{APPROVER}.key")
        shell["waiting"] = ctx.progress.runs.waiting_run(rid)
        shell["cli"] = run_cli(
            *("request", "submit", "--resume", rid, "--json"),
            *("--approve", "--reviewer", APPROVER, "--signing-key", signing_key),
            env=subprocess_env(PREFECT_API_URL=prefect_api_url),
        )

    approver = threading.Thread(target=another_shell, daemon=True)
    approver.start()
    outcome = subject_request(request_id=rid)  # pauses until the CLI resumes it
    approver.join(timeout=300)

    cli = shell["cli"]
    assert cli.returncode == 0, cli.stderr[-3000:]
    payload = json.loads(cli.stdout)
    waiting = shell["waiting"]
    assert payload["status"] == "completed" and payload["flow_run_id"] == waiting
    assert f"approved by {APPROVER} (signature verified)" in cli.stderr
    assert outcome.status == "completed"
    assert [c["id"] for c in store_rows(isolated_settings, "crm")["customers"]] == [2]
    seen = Counter(kinds(rid))
    assert seen["approval.decided"] == 1 and seen["request.completed"] == 1
    assert seen["erasure.executed"] == 2  # once per store: executed once, by one run
    assert {e.flow_run_id for e in events(rid) if e.flow_run_id} == {waiting}
    [decided] = [e for e in events(rid) if e.kind == "approval.decided"]
    assert decided.detail["source"] == "cli" and decided.detail["verification"] == "verified"
    assert decided.detail["key_fingerprint"].startswith("ed25519:")
    with get_client(sync_client=True) as client, pytest.raises(PrefectHTTPStatusError):
        client.read_flow_run_input(
            UUID(waiting), f"paused-{answered_key(UUID(waiting))}-response"
        )  # deleted

    # A rejection from the UI afterwards: Prefect no longer takes it, and our register,
    # if it were reached, refuses it and records the refusal.
    token = signed_token(rid, "dpo", "rejected")
    answer = {"decision": "reject", "reviewer": "dpo", "signature": token, "note": ""}
    with pytest.raises(Exception, match="isn't paused"):
        resume_flow_run(UUID(waiting), run_input=answer)
    assert record_review.fn(rid, "reject", "dpo", "", token) == "finished"
    [refused] = [e for e in events(rid) if e.kind == "approval.refused"]
    assert refused.detail["problem"] == f"request {rid} is completed; nothing left to decide"
    assert kinds(rid).count("approval.decided") == 1
    assert request_context().record(rid).status is RequestStatus.COMPLETED


def _nothing_approved(rid: str) -> None:
    ctx = request_context()
    assert ctx.progress.runs.run(rid).approval is None
    assert "approval.decided" not in kinds(rid)
    assert ctx.record(rid).status is RequestStatus.RECEIVED


def test_unsigned_forged_and_wrong_key_decisions_exit_2(configure: Configure, keys: Path) -> None:
    configure(auto_approve=False)
    rid = _register()

    code, _, err = approve(rid, "dpo")  # no key: a typed name proves nothing
    assert code == 2 and "the decision is not signed" in err
    code, _, err = approve(rid, "dpo", "--signing-key", str(keys / "intruder.key"))
    assert code == 2 and "does not verify with dpo's public key" in err
    code, _, err = approve(rid, "intern", "--signing-key", str(keys / "dpo.key"))
    assert code == 2 and "not one of the policy's approvers" in err
    junk = keys / "junk.key"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    code, _, err = approve(rid, "dpo", "--signing-key", str(junk))
    assert code == 2 and "not an unencrypted PEM private key" in err

    _nothing_approved(rid)
    problems = [e.detail["problem"] for e in events(rid) if e.kind == "approval.refused"]
    assert len(problems) == 2  # the signed attempts; a missing or unreadable key is usage


def test_the_requester_signing_is_refused(configure: Configure, keys: Path) -> None:
    configure(auto_approve=False)
    rid = _register(requested_by="DPO")
    code, _, err = approve(rid, "dpo", "--signing-key", str(keys / "dpo.key"))
    assert code == 2 and "dpo requested this request; four-eyes needs someone else" in err
    _nothing_approved(rid)
    [refused] = [e for e in events(rid) if e.kind == "approval.refused"]
    assert refused.detail["key_fingerprint"].startswith("ed25519:")  # verified, then refused

    code, _, err = invoke(
        *("request", "submit", "--kind", "erasure", "--identity", f"email={SUBJECT_EMAIL}"),
        *("--requested-by", "dpo", "--approve", "--reviewer", "dpo"),
        *("--signing-key", str(keys / "dpo.key")),
    )
    assert code == 2 and "four-eyes" in err
    assert len(request_context().register.list()) == 1  # refused before registering


def test_two_cli_decisions_at_once_one_wins_the_other_is_told(
    configure: Configure, keys: Path
) -> None:
    from cli.request_approval import decide

    configure(auto_approve=False)
    rid = _register()
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def decide_as(name: str) -> None:
        ctx = request_context()
        barrier.wait()
        try:
            results[name] = decide(ctx, rid, name, keys / f"{name}.key")
        except typer.Exit as e:
            results[name] = e.exit_code

    threads = [threading.Thread(target=decide_as, args=(n,)) for n in (APPROVER, "dpo")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    [winner] = [n for n, r in results.items() if isinstance(r, dict)]
    [loser] = [n for n, r in results.items() if r == 1]
    assert parse_token(results[winner]["signature"]).approver == winner
    [refused] = [e for e in events(rid) if e.kind == "approval.refused"]
    assert f"already decided: approved by {winner} (cli)" in refused.detail["problem"]
    assert refused.detail["approver"] == loser
    assert kinds(rid).count("approval.decided") == 1

    code, _, err = approve(rid, loser, "--signing-key", str(keys / f"{loser}.key"))
    assert code == 1 and f"already decided: approved by {winner} (cli)" in err
    assert kinds(rid).count("approval.refused") == 2


def test_approver_keygen_list_and_sign(configure: Configure, tmp_path: Path, keys: Path) -> None:
    configure(auto_approve=False)
    code, out, _ = invoke("approver", "keygen", "--out", str(tmp_path / "new.key"), "--name", "x")
    assert code == 0 and '- {name: x, public_key: "' in out and "fingerprint: ed25519:" in out

    code, out, _ = invoke("approver", "list", "--json")
    listed = json.loads(out)
    assert [a["name"] for a in listed["approvers"]] == ["privacy-officer", "dpo"]
    assert all(a["key"].startswith("ed25519:") for a in listed["approvers"])

    rid = _register()
    code, _, err = invoke("approver", "sign", rid, "--key", str(keys / "dpo.key"))
    assert code == 1 and "has no plans yet" in err
    ctx = request_context()
    ctx.register.transition(rid, RequestStatus.PLANNED, actor="tests")
    code, out, err = invoke("approver", "sign", rid, "--key", str(keys / "dpo.key"), "--reject")
    assert code == 0, err
    signed = parse_token(out.strip())
    assert (signed.request_id, signed.approver, signed.decision) == (rid, "dpo", "rejected")
    assert signed.valid_for(approver_key("dpo").public_key())
    code, _, err = invoke("approver", "sign", rid, "--key", str(keys / "intruder.key"))
    assert code == 2 and "no approver in the policy has this key" in err
    assert "approval.decided" not in kinds(rid)  # signing decides nothing
