"""The one builder of ledger events for every job: requests, sweeps, transfer checks.

Every step a job records names the job (its id in ``request_id``, so the ledger filters
by it), who acted, and the Prefect flow and task run it ran in. ``ledger_event`` fills
those in the same way for every caller; ``run_ids`` reads the run ids.

Prefect-free: a process that never imported Prefect cannot be inside a Prefect run, so
``run_ids`` asks Prefect's runtime only when Prefect is already loaded, and otherwise
answers as that runtime would outside a run (the flow run id from
``PREFECT__FLOW_RUN_ID``, if set). A CLI sweep or the intake server records events
without paying for Prefect's import.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from audit.events import EventStatus, NewEvent
from core.pseudonym import Pseudonym


def run_ids() -> dict[str, str | None]:
    """The Prefect flow and task run ids, for ledger events (None outside Prefect)."""
    if "prefect" not in sys.modules:  # no run context without Prefect: as its runtime says
        return {"flow_run_id": os.environ.get("PREFECT__FLOW_RUN_ID"), "task_run_id": None}
    from prefect.runtime import flow_run, task_run

    return {"flow_run_id": flow_run.get_id(), "task_run_id": task_run.get_id()}


def ledger_event(
    kind: str,
    status: EventStatus,
    job_id: str | None,
    *,
    actor: str,
    subject: Pseudonym | None = None,
    connector: str | None = None,
    target: str | None = None,
    counts: Mapping[str, int] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> NewEvent:
    """A ledger event about one job (request, sweep or check id), with the run ids."""
    return NewEvent(
        kind=kind,
        status=status,
        request_id=job_id,
        connector=connector,
        target=target,
        subject=subject,
        counts=counts or {},
        detail=detail or {},
        actor=actor,
        **run_ids(),
    )
