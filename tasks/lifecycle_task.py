"""The Prefect task decorator of every lifecycle task: requests, sweeps, transfer checks.

Every task is declared with ``lifecycle_task``: results not persisted, no cache key
(inputs are not hashed), retries only for ``TransientError``. Tasks wrap their work in
``engine.request_support.clean_errors`` so exception chains (a driver's message can quote
row values) never reach Prefect's logs.

Inside ``plain_tasks()`` a lifecycle task called from Python runs as a plain function, with
no task run of its own: a batch of requests (``flows.subject_batch``) carries out each
request's steps inside the one task run of its batch step, since a task run per request,
store and step costs more than the work itself. Everything a step records lives in our own
tables, so a step means the same with or without its task run.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, cast

from prefect import Task
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


_PLAIN: contextvars.ContextVar[bool] = contextvars.ContextVar("lifecycle_plain", default=False)


@contextmanager
def plain_tasks() -> Iterator[None]:
    """Within the block (and threads started with a copy of its context), lifecycle tasks
    called from Python run as plain functions."""
    token = _PLAIN.set(True)
    try:
        yield
    finally:
        _PLAIN.reset(token)


def in_plain_tasks() -> bool:
    """Whether lifecycle tasks run as plain functions here (a batch's step)."""
    return _PLAIN.get()


class LifecycleTask(Task[P, R]):
    """A Prefect task that runs as its plain function inside ``plain_tasks()``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _PLAIN.get() and not kwargs.get("return_state") and "wait_for" not in kwargs:
            return self.fn(*args, **kwargs)
        return super().__call__(*args, **kwargs)


def lifecycle_task(name: str) -> Callable[[Callable[P, R]], Task[P, R]]:
    """The task decorator for every lifecycle task (see the module docstring for why)."""

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        made = LifecycleTask(
            fn,
            name=name,
            retries=RETRIES,
            retry_delay_seconds=RETRY_DELAYS,
            retry_condition_fn=retry_transient,
            persist_result=False,
            cache_policy=NO_CACHE,
            log_prints=False,
        )
        return cast(Task[P, R], made)

    return decorate
