"""The intake service against a real Prefect server: the flow run holds the request id only.

A deployment named as ``prefect.yaml``'s (``subject-request/subject-request``) is created
in the session's test server with no work pool, so the run is created and never executed.
The run, as Prefect stores it, must hold no identity value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from ops.intake.app import IntakeConfig, create_app
from ops.intake.service import DEPLOYMENT, Intake
from tests.ops.intake_support import EMAIL, PAGE_AUTH, SECRET, basic, post_signed, served

Configure = Callable[..., Path]


@pytest.fixture
def deployment(prefect_server: None) -> UUID:
    from prefect.client.orchestration import get_client

    flow_name, name = DEPLOYMENT.split("/")
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(flow_name)
        schema = {"type": "object", "properties": {"request_id": {"type": "string"}}}
        return client.create_deployment(flow_id=flow_id, name=name, parameter_openapi_schema=schema)


def _run(flow_run_id: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
    return dict(json.loads(run.model_dump_json()))


def test_webhook_and_page_create_runs_with_the_request_id_only(
    configure: Configure, deployment: UUID
) -> None:
    configure()
    config = IntakeConfig(page_auth=PAGE_AUTH, webhook_secret=SECRET)
    with (
        served(create_app(config, Intake())) as url,
        httpx.Client(base_url=url, trust_env=False, timeout=120) as http,
    ):
        by_webhook = post_signed(
            http, {"kind": "erasure", "identity": {"email": EMAIL}, "ticket": "ZD-4711"}
        )
        form = {"kind": "erasure", "identity.customer_number": "C-1001", "requested_by": "desk"}
        by_page = http.post("/requests", data=form, headers=basic())
    assert by_webhook.status_code == 201, by_webhook.text
    assert by_page.status_code == 201, by_page.text

    created = by_webhook.json()
    run = _run(created["flow_run_id"])
    assert run["deployment_id"] == str(deployment)
    assert run["parameters"] == {"request_id": created["request_id"]}
    assert run["name"] == created["request_id"]
    assert EMAIL.lower() not in json.dumps(run).lower()
    assert "ZD-4711" not in json.dumps(run)

    [page_run_id] = [
        line.split("<td>")[1].split("<")[0]
        for line in by_page.text.split("<tr>")
        if line.startswith("<th>Flow run")
    ]
    page_run = _run(page_run_id)
    assert list(page_run["parameters"]) == ["request_id"]
    assert "C-1001" not in json.dumps(page_run)
