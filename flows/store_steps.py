"""Run one subject-request step for many stores at once, and which stores may run together.

A subject request works store by store (locate, plan, execute, verify, rectify), and the
stores are independent except in one way: locating a store can need identities that
stores before it in the inventory derived (``derives: {column: id, as: customer_id}``),
so it must run after them. ``locate_levels`` orders the stores into levels from the
configuration: a store's level follows every earlier store that derives a name it is
searched by; stores of one level run together, levels one after another. Once every
store is located, nothing else depends on another store, so the other steps run all
stores together.

Which names a store is searched by is its configuration's ``searched_by()``: each store
type says so where its configuration declares them all (a processor's ``identities``, an
S3 store's key-template placeholders). Otherwise (SQL included: a connector may find rows
by a column named like a derived identity) it is None, and the store waits for every
store before it that derives an identity, as when stores ran one after another.

``run_stores`` runs a step for a list of stores, at most ``limit`` at once, each in a
thread with a copy of the caller's context (a Prefect flow run's: each call of a task
becomes a task run of that flow run, as Prefect's own ``ThreadPoolTaskRunner`` does).
After the first failure it starts no further store; those already running finish, since
stopping a store in the middle of its transaction or of a provider's request would only
leave more for the rerun to settle. It returns every store's outcome in the order given;
what to audit and what to raise is the flow's decision (``flows.subject_request._each``).
With ``limit`` 1 the stores run one after another in the calling thread. Each store's task
runs are tagged ``store:<name>``: ``LIFECYCLE_SERVE_STORE_LIMIT`` makes ``make serve`` cap
them per store over every run and worker, so a database is not overrun.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prefect import tags

from config.schema.inventory import Inventory
from ops.serve_env import STORE_TAG_PREFIX

__all__ = ["StoreOutcome", "locate_levels", "run_stores"]


def locate_levels(inventory: Inventory, stores: Sequence[str]) -> list[list[str]]:
    """``stores`` (inventory order) grouped into levels that can be located together.

    A store is placed after every earlier store deriving a name it is searched by (every
    earlier deriving store when that is unknown); each level keeps inventory order.
    """
    configs = {store.name: store for store in inventory.stores}
    level: dict[str, int] = {}
    for i, name in enumerate(stores):
        needs = configs[name].searched_by()
        after = [
            level[earlier]
            for earlier in stores[:i]
            if (derived := configs[earlier].derived_names()) and (needs is None or needs & derived)
        ]
        level[name] = max(after) + 1 if after else 0
    levels: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for name in stores:
        levels[level[name]].append(name)
    return levels


@dataclass(frozen=True)
class StoreOutcome:
    """What one store's step did: its result, the exception it raised, or nothing (never
    started: another store failed first)."""

    store: str
    result: int | None = None
    error: BaseException | None = None

    @property
    def ran(self) -> bool:
        return self.result is not None or self.error is not None


def run_stores(stores: Sequence[str], step: Callable[[str], int], limit: int) -> list[StoreOutcome]:
    """Run ``step(store)`` for every store, at most ``limit`` at once; outcomes in order.

    After a store raises, no store that has not started yet is started.
    """
    stop = threading.Event()

    def one(store: str) -> StoreOutcome:
        if stop.is_set():
            return StoreOutcome(store)
        try:
            with tags(f"{STORE_TAG_PREFIX}{store}"):  # per-store limits (make serve)
                return StoreOutcome(store, result=step(store))
        except BaseException as e:  # handed to the caller, which decides what to raise
            stop.set()
            return StoreOutcome(store, error=e)

    if limit <= 1 or len(stores) <= 1:
        return [one(store) for store in stores]
    with ThreadPoolExecutor(
        max_workers=min(limit, len(stores)), thread_name_prefix="store-step"
    ) as pool:
        # A context copy per store: one context cannot be entered by two threads at once.
        futures = [pool.submit(contextvars.copy_context().run, one, store) for store in stores]
        return [future.result() for future in futures]
