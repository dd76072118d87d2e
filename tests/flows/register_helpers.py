"""Requests put where the operator's console looks: received long ago, awaiting approval,
with a Prefect flow run recorded as the one waiting for the decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from engine.request_support import RequestContext, request_context
from state.register import RequestKind, RequestStatus
from tests.flows.support import REQUESTER, SUBJECT_EMAIL

FLOW_ACTOR = "flow:subject-request"


def register(
    ctx: RequestContext | None = None,
    *,
    kind: str = "erasure",
    days_ago: float = 0,
    email: str = SUBJECT_EMAIL,
    requested_by: str = REQUESTER,
) -> str:
    """An access or erasure request received ``days_ago`` days ago (the deadline counts
    from then)."""
    ctx = ctx or request_context()
    received = datetime.now(UTC) - timedelta(days=days_ago)
    record = ctx.register.register(
        RequestKind(kind),
        {"email": email},
        requested_by=requested_by,
        received_at=received,
    )
    ctx.progress.runs.ensure_run(record.id)
    return record.id


def to_awaiting(request_id: str, ctx: RequestContext | None = None) -> None:
    """received -> planned -> awaiting approval, as the flow moves it."""
    ctx = ctx or request_context()
    for status in (RequestStatus.PLANNED, RequestStatus.AWAITING_APPROVAL):
        ctx.register.transition(request_id, status, actor=FLOW_ACTOR)


def flow_run(request_id: str, *states: Any) -> str:
    """A subject-request flow run of the request (no deployment), moved through ``states``
    by force, as the server would leave it; its id."""
    from prefect.client.orchestration import get_client
    from prefect.states import Pending

    from flows.subject_request import subject_request

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(
            subject_request, parameters={"request_id": request_id}, state=Pending()
        )
        for state in states:
            client.set_flow_run_state(run.id, state, force=True)
    return str(run.id)


def state_of(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    assert state is not None
    return str(state.type.value)


def end_runs(*flow_run_ids: str) -> None:
    """Leave no open run behind for other tests (they look for open runs of requests)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        for run_id in flow_run_ids:
            state = client.read_flow_run(UUID(run_id)).state
            if state is not None and not state.is_final():
                client.set_flow_run_state(UUID(run_id), Cancelled(), force=True)


def latest_artifact(key: str, flow_run_id: str | None = None) -> Any:
    """The newest artifact under ``key`` (of ``flow_run_id``, if given)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    wanted = ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
    if flow_run_id is not None:
        wanted.flow_run_id = ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=wanted, sort=ArtifactSort.CREATED_DESC, limit=1
        )
    assert found, f"no artifact {key}"
    return found[0]


def all_artifact_text() -> str:
    """Every artifact the server holds (data and descriptions), lowercased."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    return "\n".join(f"{a.key} {a.description} {a.data}" for a in artifacts).lower()
