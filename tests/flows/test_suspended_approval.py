"""Approval without a waiting process: a deployment run suspends, and the worker's next run
of it (here: ``run_flow`` again, as a worker would) carries the decision out exactly once.

A suspended run holds no process and no lease; a refused answer asks again under a new
key; the answer is deleted from Prefect once recorded.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest

from engine import request_lease
from engine.intake import submit
from engine.request_support import request_context
from flows.subject_request import subject_request
from state.register import RequestStatus
from tests.flows.support import (
    APPROVER,
    REQUESTER,
    SUBJECT_EMAIL,
    events,
    kinds,
    signed_token,
    store_rows,
)

Configure = Callable[..., Path]


def _deployment_run(request_id: str) -> UUID:
    """A flow run of a deployment of the flow, as the intake service or the UI creates it."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(subject_request)
        deployment_id = client.create_deployment(flow_id=flow_id, name="suspend-test")
        run = client.create_flow_run_from_deployment(
            deployment_id, parameters={"request_id": request_id}
        )
    return run.id


def _run_as_the_worker(flow_run_id: UUID) -> str:
    """Run the flow run in this process (what the worker's subprocess does); its state."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import Pause
    from prefect.flow_engine import run_flow

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
    # Suspended: the engine raises Pause to end the process (the worker's subprocess exits).
    with contextlib.suppress(Pause):
        run_flow(subject_request, flow_run=run, parameters=run.parameters)
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    assert state is not None
    return str(state.name)


def _answer(request_id: str, reviewer: str = APPROVER, sign: bool = True) -> dict[str, str]:
    token = signed_token(request_id, reviewer) if sign else ""
    return {"decision": "approve", "reviewer": reviewer, "signature": token, "note": ""}


@pytest.fixture
def needs_approval(prefect_server: None, configure: Configure) -> Path:
    return configure(auto_approve=False)


def test_a_suspended_run_frees_its_process_and_carries_out_the_decision_once(
    needs_approval: Path, isolated_settings: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    before = store_rows(isolated_settings, "crm")
    rid = submit(
        request_context(), kind="erasure", identity={"email": SUBJECT_EMAIL}, requested_by=REQUESTER
    ).id
    run_id = _deployment_run(rid)

    assert _run_as_the_worker(run_id) == "Suspended"  # the process returned: nothing waits
    assert request_context().register.get(rid).status is RequestStatus.AWAITING_APPROVAL
    assert request_lease.holder(rid) is None  # the CLI or another run may act meanwhile
    assert store_rows(isolated_settings, "crm") == before

    resume_flow_run(run_id, run_input=_answer(rid))
    assert _run_as_the_worker(run_id) == "Completed"

    assert [c["id"] for c in store_rows(isolated_settings, "crm")["customers"]] == [2]
    seen = Counter(kinds(rid))
    assert seen["approval.decided"] == 1 and seen["request.completed"] == 1
    assert seen["erasure.planned"] == 2 and seen["erasure.executed"] == 2  # once per store
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        assert run.name == rid
        [key] = sorted(run.empirical_policy.pause_keys or set())
        with pytest.raises(Exception, match=r"404|Not Found"):
            client.read_flow_run_input(run_id, f"suspended-{key}-response")  # recorded, deleted


def test_a_refused_answer_suspends_again_under_a_new_key(
    needs_approval: Path, isolated_settings: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    rid = submit(
        request_context(), kind="erasure", identity={"email": SUBJECT_EMAIL}, requested_by=REQUESTER
    ).id
    run_id = _deployment_run(rid)
    assert _run_as_the_worker(run_id) == "Suspended"

    resume_flow_run(run_id, run_input=_answer(rid, sign=False))  # unsigned: refused
    assert _run_as_the_worker(run_id) == "Suspended"
    refused = [e for e in events(rid) if e.kind == "approval.refused"]
    assert len(refused) == 1 and refused[0].detail["source"] == "ui"
    assert request_context().register.get(rid).status is RequestStatus.AWAITING_APPROVAL
    with get_client(sync_client=True) as client:
        assert len(client.read_flow_run(run_id).empirical_policy.pause_keys or ()) == 2

    resume_flow_run(run_id, run_input=_answer(rid))
    assert _run_as_the_worker(run_id) == "Completed"
    assert Counter(kinds(rid))["approval.decided"] == 1
    assert request_context().register.get(rid).status is RequestStatus.COMPLETED
