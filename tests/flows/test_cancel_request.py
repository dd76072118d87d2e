"""Cancelling a request's Prefect flow runs: from the CLI (with a server) and the UI's flow.

Flow runs are created through the API as they would be left: one scheduled, one paused
for approval; another request's run must not be touched. They have no deployment (no
worker watches them), so they go straight to Cancelled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.states import Cancelled, Paused, Scheduled
from typer.testing import CliRunner

from cli.main import app
from engine.intake import submit
from engine.request_support import request_context
from flows.cancel_request import REFUSED, cancel_request_flow
from flows.subject_request import subject_request
from state.register import RequestStatus
from tests.flows.support import OTHER_EMAIL, REQUESTER, SUBJECT_EMAIL, kinds

Configure = Callable[..., Path]


@pytest.fixture
def requests_with_runs(
    prefect_server: None, configure: Configure
) -> Iterator[tuple[str, list[str], str]]:
    """A request with a scheduled and a paused subject-request run; another request's run."""
    configure()
    ctx = request_context()
    rid = submit(ctx, kind="erasure", identity={"email": SUBJECT_EMAIL}, requested_by=REQUESTER).id
    other = submit(ctx, kind="erasure", identity={"email": OTHER_EMAIL}, requested_by=REQUESTER).id
    with get_client(sync_client=True) as client:
        scheduled = client.create_flow_run(
            subject_request, parameters={"request_id": rid}, state=Scheduled()
        )
        paused = client.create_flow_run(
            subject_request, parameters={"request_id": rid}, state=Scheduled()
        )
        client.set_flow_run_state(paused.id, Paused(), force=True)
        bystander = client.create_flow_run(
            subject_request, parameters={"request_id": other}, state=Scheduled()
        )
    ids = [scheduled.id, paused.id, bystander.id]
    yield rid, [str(scheduled.id), str(paused.id)], str(bystander.id)
    with get_client(sync_client=True) as client:  # leave no paused run for other tests
        for run_id in ids:
            client.set_flow_run_state(run_id, Cancelled(), force=True)


def _state(run_id: str) -> str:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)  # type: ignore[arg-type]
    assert run.state is not None
    return str(run.state.type.value)


def test_cli_cancels_the_request_and_its_open_runs(
    requests_with_runs: tuple[str, list[str], str],
    prefect_api_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rid, runs, bystander = requests_with_runs
    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)

    result = CliRunner().invoke(
        app, ["request", "cancel", rid, "--reason", "the subject withdrew it", "--json"]
    )

    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["request"]["status"] == "cancelled" and payload["warning"] is None
    cancelled = {r["flow_run_id"]: r for r in payload["flow_runs"]}
    assert set(cancelled) == set(runs)
    assert {r["state"] for r in cancelled.values()} == {"SCHEDULED", "PAUSED"}
    assert all(r["cancelled"] for r in cancelled.values())
    assert [_state(r) for r in runs] == ["CANCELLED", "CANCELLED"]
    assert _state(bystander) == "SCHEDULED"
    record = request_context().register.get(rid)
    assert record.status is RequestStatus.CANCELLED and record.identity_destroyed


def test_the_ui_flow_cancels_like_the_cli(requests_with_runs: tuple[str, list[str], str]) -> None:
    rid, runs, bystander = requests_with_runs

    outcome = cancel_request_flow(request_id=rid, reason="duplicate request")

    assert outcome.status == "cancelled" and outcome.identity_destroyed
    assert {r["flow_run_id"] for r in outcome.flow_runs} == set(runs)
    assert [_state(r) for r in runs] == ["CANCELLED", "CANCELLED"]
    assert _state(bystander) == "SCHEDULED"
    assert "request.cancelled" in kinds(rid)


def test_the_ui_flow_refuses_a_reason_with_personal_data_and_forgets_it(
    requests_with_runs: tuple[str, list[str], str],
) -> None:
    rid, runs, _ = requests_with_runs

    state: Any = cancel_request_flow(
        request_id=rid, reason="asked by robin.quill@example.com", return_state=True
    )

    assert state.is_failed()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.parameters == {"request_id": rid, "reason": REFUSED}
    assert request_context().register.get(rid).status is RequestStatus.RECEIVED
    assert [_state(r) for r in runs] == ["SCHEDULED", "PAUSED"]
