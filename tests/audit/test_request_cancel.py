"""``lifecycle request cancel``: ends an open or failed request, destroying its identity.

Through the real CLI app on the default audit database, without a Prefect server
(``PREFECT_API_URL`` unset: Prefect is not imported, flow runs are only named).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audit.events import EventStatus
from audit.keystore import keyring_from_settings
from audit.ledger import Ledger
from cli.main import app
from config.settings import PROJECT_ROOT, get_settings
from core.errors import TerminalError
from state.progress import RequestProgress
from state.register import RequestKind, RequestRegister, RequestStatus
from state.register_tables import requests

runner = CliRunner()
ENV = {"COLUMNS": "200"}
IDENTITY = {"email": "casey.wren@example.com"}
REASON = "duplicate of an earlier request"
S = RequestStatus


@pytest.fixture
def register(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RequestRegister]:
    """The demo configuration and a register on the audit database the CLI opens."""
    target = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config" / "demo", target)
    monkeypatch.setenv("LIFECYCLE_CONFIG_DIR", str(target))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    get_settings.cache_clear()
    keys = keyring_from_settings()
    ledger = Ledger.open(keys=keys)
    yield RequestRegister(ledger, keys)
    ledger.engine.dispose()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["request", *args], env=ENV)
    return result.exit_code, result.stdout, result.stderr


def _move(register: RequestRegister, request_id: str, *path: RequestStatus) -> None:
    for status in path:
        register.transition(request_id, status, actor="flow:test")


def _sealed(register: RequestRegister, request_id: str) -> tuple[object, object]:
    query = select(requests.c.identity_nonce, requests.c.identity_ciphertext).where(
        requests.c.id == request_id
    )
    with register.ledger.engine.connect() as conn:
        row = conn.execute(query).one()
    return row.identity_nonce, row.identity_ciphertext


def test_cancel_an_open_request_destroys_its_identity(register: RequestRegister) -> None:
    rec = register.register(RequestKind.ERASURE, IDENTITY, requested_by="clerk")
    _move(register, rec.id, S.PLANNED, S.AWAITING_APPROVAL)
    assert all(v is not None for v in _sealed(register, rec.id))

    code, out, err = invoke("cancel", rec.id, "--reason", REASON, "--json")

    assert code == 0, err
    payload = json.loads(out)
    assert payload["request"]["status"] == "cancelled"
    assert payload["request"]["identity_destroyed"] is True
    assert payload["flow_runs"] == [] and payload["warning"] is None
    assert _sealed(register, rec.id) == (None, None)  # ciphertext and nonce nulled
    with pytest.raises(TerminalError, match="destroyed"):
        register.open_identity(rec.id)

    [event] = list(register.ledger.events(request_id=rec.id, kinds=["request.cancelled"]))
    assert event.status is EventStatus.SUCCEEDED and event.actor == get_settings().actor
    digest = hashlib.sha256(REASON.encode()).hexdigest()
    assert event.detail == {
        "from": "awaiting_approval",
        "to": "cancelled",
        "reason": {"chars": len(REASON), "sha256": digest},
    }
    assert register.ledger.verify().ok

    code, out, _ = invoke("status", rec.id, "--json")
    status = json.loads(out)
    assert code == 0 and status["request"]["status"] == "cancelled"
    assert status["history"][-1]["action"] == "cancelled"
    assert status["request"]["identity_destroyed"] is True

    code, out, _ = invoke("list", "--status", "cancelled", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [rec.id]
    code, out, _ = invoke("list")
    assert code == 0 and "cancelled" in out


def test_cancel_a_failed_request_clears_its_progress(register: RequestRegister) -> None:
    rec = register.register(RequestKind.ERASURE, IDENTITY, requested_by="clerk")
    progress = RequestProgress(register.ledger.engine, keyring_from_settings())
    progress.record_located(
        rec.id, "crm", 0, counts={"customers": 1}, findings={"targets": []}, derived={"id": ["7"]}
    )
    _move(register, rec.id, S.PLANNED, S.APPROVED, S.EXECUTING, S.FAILED)

    code, out, err = invoke("cancel", rec.id, "--reason", "the subject withdrew it")

    assert code == 0, err
    assert f"{rec.id} cancelled; identity destroyed" in out
    assert register.get(rec.id).status is S.CANCELLED
    assert register.get(rec.id).closed_at is not None  # the deadline clock stopped
    with pytest.raises(TerminalError, match="destroyed"):
        progress.findings(rec.id, "crm")
    assert progress.derived_identities(rec.id) == {}


@pytest.mark.parametrize("closed", [S.COMPLETED, S.CANCELLED])
def test_cancel_refuses_a_closed_request(register: RequestRegister, closed: RequestStatus) -> None:
    rec = register.register(RequestKind.ERASURE, IDENTITY, requested_by="clerk")
    if closed is S.COMPLETED:
        _move(register, rec.id, S.PLANNED, S.APPROVED, S.EXECUTING, S.VERIFYING, S.COMPLETED)
    else:
        register.cancel(rec.id, reason=REASON, actor="clerk")
    before = register.history(rec.id)

    code, out, err = invoke("cancel", rec.id, "--reason", REASON)

    assert code == 1 and out == ""
    assert f"request {rec.id} is already {closed.value}" in err
    assert "only an open or failed request can be cancelled" in err
    assert register.history(rec.id) == before


def test_cancel_refuses_a_reason_holding_personal_data(register: RequestRegister) -> None:
    rec = register.register(RequestKind.ACCESS, IDENTITY, requested_by="clerk")

    code, out, err = invoke("cancel", rec.id, "--reason", "asked by casey.wren@example.com")

    assert code == 2 and out == ""
    assert "--reason: holds an e-mail address" in err and "casey" not in err
    assert register.get(rec.id).status is S.RECEIVED
    assert not list(register.ledger.events(request_id=rec.id, kinds=["request.cancelled"]))


def test_cancel_without_prefect_names_the_runs_it_could_not_cancel(
    register: RequestRegister,
) -> None:
    rec = register.register(RequestKind.ERASURE, IDENTITY, requested_by="clerk")
    run_id = str(uuid.uuid4())
    register.ledger.append(
        "store.located",
        status=EventStatus.SUCCEEDED,
        request_id=rec.id,
        subject=rec.subject,
        flow_run_id=run_id,
    )

    code, _, err = invoke("cancel", rec.id, "--reason", REASON)

    assert code == 0  # the request is cancelled; the run can do nothing more
    assert "PREFECT_API_URL is not set" in err and run_id in err
