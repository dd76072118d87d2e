"""Overwrite what a flow run was given, when it must not stay in Prefect's database.

Prefect stores a run's parameters in clear. A value typed into the wrong field of a
deployment form (an e-mail address where an id belongs) or free text refused for holding
personal data is replaced by a placeholder through the Prefect API, as
``flows.subject_request`` does for a value that is no request id. Prefect's own database
may keep the old value in free pages until it is vacuumed (see the README).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import TerminalError

REMOVED = "(removed)"
"""What a removed parameter reads afterwards."""


def replace_parameters(parameters: Mapping[str, Any], *, what: str = "a refused value") -> None:
    """Make ``parameters`` this flow run's parameters (all of them: Prefect replaces the
    whole set). Nothing outside a flow run; TerminalError if the API refuses, so the run
    fails saying which flow run still holds ``what``."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    if run_id is None:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(UUID(run_id), parameters=dict(parameters))
    except Exception as e:
        raise TerminalError(
            f"{what} could not be removed from the parameters of flow run {run_id} "
            f"({type(e).__name__}); delete that flow run"
        ) from None
