"""The daily request-register flow: what operators see of the open requests in the UI.

First it reconciles the register with subject-request runs that ended in Prefect without
running our code (cancelled in the UI, or failed at their approval pause timeout:
``tasks.reconcile``), then publishes the open requests as the ``request-register`` table
artifact with a summary line (``tasks.register_artifact``), then emits
``lifecycle.request.deadline-near`` and ``lifecycle.request.overdue`` events for the
automations in ``automations/notify-operators.yaml``, and deletes the access packages kept
past the policy's ``requests.package_retention_days`` (``tasks.package_expiry``).

The deployment runs daily and, through its trigger in ``prefect.yaml``, within seconds of
a subject-request run suspending for approval (its process is gone, so it cannot publish)
or ending Cancelled or Failed, with ``deadline_events`` off so the deadline reminders stay
daily.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import BaseModel, Field

from tasks.package_expiry import expire_access_packages
from tasks.reconcile import reconcile_waiting_runs
from tasks.register_artifact import (
    DEADLINE_NEAR_DAYS,
    RegisterCounts,
    emit_request_deadline_events,
    publish_request_register,
)

__all__ = ["RegisterOutcome", "request_register"]


class RegisterOutcome(BaseModel):
    """What the run changed and published (request ids and counts only)."""

    reconciled: list[str] = Field(default_factory=list)
    counts: RegisterCounts | None = None
    deadline_events: dict[str, list[str]] = Field(default_factory=dict)
    packages_expired: int = 0


@flow(name="request-register", persist_result=False, log_prints=False)
def request_register(
    deadline_events: bool = True,
    deadline_near_days: Annotated[int, Field(ge=1, le=90)] = DEADLINE_NEAR_DAYS,
) -> RegisterOutcome:
    """Reconcile waiting runs, publish the open requests, emit deadline events, delete
    expired access packages.

    ``deadline_events``: emit ``lifecycle.request.deadline-near``/``.overdue`` (the daily
    run does; the run triggered by a subject-request run's state does not).
    ``deadline_near_days``: a deadline at most this many days away is near.
    """
    # A reconciliation that fails (the Prefect API, one request) must not hide the
    # register: publish and emit first, then fail the run so the failure automation notifies.
    reconciling = reconcile_waiting_runs(return_state=True)
    counts = publish_request_register(best_effort=False, within_days=deadline_near_days)
    emitted = emit_request_deadline_events(deadline_near_days) if deadline_events else {}
    expiring = expire_access_packages(return_state=True)
    reconciled = reconciling.result()  # raises the reconciliation's error, if any
    return RegisterOutcome(
        reconciled=reconciled,
        counts=counts,
        deadline_events=emitted,
        packages_expired=expiring.result(),  # raises the expiry's error, if any
    )
