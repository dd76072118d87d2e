"""The Prefect task decorator of every lifecycle task: requests, sweeps, transfer checks.

Every task is declared with ``lifecycle_task``: results not persisted, no cache key
(inputs are not hashed), retries only for ``TransientError``. Tasks wrap their work in
``engine.request_support.clean_errors`` so exception chains (a driver's message can quote
row values) never reach Prefect's logs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from core.errors import TransientError

P = ParamSpec("P")
R = TypeVar("R")

RETRIES = 2
RETRY_DELAYS: list[float] = [2.0, 10.0]


def retry_transient(_task: Task[..., Any], _run: TaskRun, state: State[Any]) -> bool:
    """Retry only failures that may clear (lost connection, lock timeout)."""
    try:
        state.result()
    except TransientError:
        return True
    except BaseException:
        return False
    return False


def lifecycle_task(name: str) -> Callable[[Callable[P, R]], Task[P, R]]:
    """The task decorator for every lifecycle task (see the module docstring for why)."""
    return task(
        name=name,
        retries=RETRIES,
        retry_delay_seconds=RETRY_DELAYS,
        retry_condition_fn=retry_transient,
        persist_result=False,
        cache_policy=NO_CACHE,
        log_prints=False,
    )
